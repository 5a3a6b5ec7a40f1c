"""Start a reference server: declare, listen, announce, serve, exit."""

from __future__ import annotations

import os
import ssl
import sys
from typing import Protocol

from ..core import CLOUDHASH, RESP, ServerInfo, Store
from .context import Context
from .listeners import announce_ready, close_listeners, open_listeners
from .settings import Settings
from .shared_store import SharedMemoryStore
from .stop import StopSignal
from .stores import LockedStore


class Architecture(Protocol):
    ARCH: str
    OVERFLOW: str
    SHARES_MEMORY: bool
    LISTENERS_PER_WORKER: bool  # each forked worker its own listeners on the same ports (SO_REUSEPORT)

    def limits(self, settings: Settings) -> tuple[int, int]:
        """(concurrency, max_connections) as INFO will declare them."""
        ...

    def serve(self, context: Context) -> None: ...


def features(settings: Settings) -> frozenset[str]:
    """The optional features INFO declares: CloudHash/1's framed mode and urgent
    abort always, STARTTLS with a certificate, implicit TLS with a TLS port;
    RESP2's only optional feature is the TLS port."""
    found = set()
    if settings.protocol == CLOUDHASH:
        found |= {"framed", "urgent", "starttls"} if settings.cert is not None else {"framed", "urgent"}
    if settings.cert is not None and settings.tls_port is not None:
        found.add("tls")
    return frozenset(found)


def run(architecture: Architecture, settings: Settings) -> int:
    concurrency, max_connections = architecture.limits(settings)
    info = ServerInfo(
        arch=architecture.ARCH,
        concurrency=concurrency,
        max_connections=max_connections,
        overflow=architecture.OVERFLOW,
        idle_timeout_ms=settings.idle_timeout_ms,
        max_line=settings.max_line,
        max_frame=settings.max_frame,
        features=features(settings),
        max_output=settings.max_output,
        protocol=settings.protocol,
    )
    try:
        tls_context = settings.tls_context()
    except (OSError, ssl.SSLError) as error:
        print(f"{settings.protocol}: cannot start: {error}", file=sys.stderr)
        return 1
    # Redis counts on only from an integer's shortest form; CloudHash/1 also from 007.
    canonical = settings.protocol == RESP
    try:
        listeners = open_listeners(settings, per_worker=architecture.LISTENERS_PER_WORKER)
    except OSError as error:
        print(f"{settings.protocol}: cannot start: {error}", file=sys.stderr)
        return 1
    stop = StopSignal()
    stop.install()
    # Threads share the process's memory; forked workers share the store's mapping.
    store: Store = (
        LockedStore(canonical_integers=canonical)
        if architecture.SHARES_MEMORY
        else SharedMemoryStore(canonical_integers=canonical)
    )
    context = Context(settings, info, listeners, tls_context, store, stop)
    master = os.getpid()
    announce_ready(listeners)
    try:
        architecture.serve(context)
    finally:
        if os.getpid() == master:
            close_listeners(listeners)
    return 0
