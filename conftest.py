# The conformance suite is a pytest plugin (entry point ``sockspec`` in
# pyproject.toml); the project's own tests live in tests/. Nothing else here.
