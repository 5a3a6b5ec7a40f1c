"""Shared by the RESP2 tests: Debian's redis-server, the profile's oracle.
Without it a test skips, but in CI (CI=true) it fails, so that CI can never
go green without the oracle (scripts/redis-up.sh installs it)."""

from __future__ import annotations

import os
import shutil

import pytest

# Everything the RESP2 profile sets through placeholders; persistence off, as the
# issue and PROTOCOL-RESP2.md's R2-LIFE-1 expect of a server with nothing to save.
REDIS_TEMPLATE = (
    "redis-server --port {port} --tls-port {tls_port} --tls-cert-file {cert} --tls-key-file {key}"
    " --tls-ca-cert-file {ca} --tls-auth-clients no --save '' --appendonly no"
    " --timeout {idle} --maxclients {maxclients}"
)


def redis_or_skip(program: str = "redis-server") -> str:
    """The program's path; skips (or, with CI=true, fails) when it is missing."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (bash scripts/redis-up.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path
