"""Our own servers as targets."""

from __future__ import annotations

import sys

from reference_servers.cli import ARCHITECTURES


def resolve_architectures(spec: str) -> list[str]:
    """``all``, one name, or a comma list; ValueError names what is unknown."""
    if spec == "all":
        return list(ARCHITECTURES)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in ARCHITECTURES]
    if unknown or not names:
        choices = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown architecture {', '.join(unknown) or spec!r}; choose from: all, {choices}")
    return names


def reference_command(arch: str, *flags: str) -> list[str]:
    # exec'd directly (no shell), so SIGTERM reaches the server itself.
    return [sys.executable, "-m", "reference_servers", arch, "--port", "0", *flags]
