"""The things the suite points at: local processes, running addresses, containers."""
