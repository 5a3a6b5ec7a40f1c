"""Shared by the core tests: a ServerInfo with test defaults."""

from __future__ import annotations

from reference_servers.core import ServerInfo


def make_info(**overrides: object) -> ServerInfo:
    fields: dict[str, object] = {
        "arch": "serial",
        "concurrency": 1,
        "max_connections": 1,
        "overflow": "queue",
        "idle_timeout_ms": 300_000,
        "features": frozenset({"framed", "urgent"}),
    }
    fields.update(overrides)
    return ServerInfo(**fields)  # type: ignore[arg-type]
