"""Serial: one connection at a time, each served to its end before the next
is accepted. No shared state, no locks; one slow client holds up everyone,
and waiting clients queue in the kernel's listen backlog."""

from __future__ import annotations

from .runtime.blocking import accept_and_serve
from .runtime.context import Context
from .runtime.settings import Settings

ARCH = "serial"
OVERFLOW = "queue"
SHARES_MEMORY = True
LISTENERS_PER_WORKER = False


def limits(settings: Settings) -> tuple[int, int]:
    return 1, 1


def serve(context: Context) -> None:
    accept_and_serve(context)
