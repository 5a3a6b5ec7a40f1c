"""A master that keeps N forked workers alive until the stop."""

from __future__ import annotations

from collections.abc import Callable

from .children import Children
from .context import Context
from .listeners import close_listeners
from .stop import StopSignal, wait_for_any


def supervise(context: Context, workers: int, work: Callable[[int, StopSignal], None]) -> None:
    children = Children(context.stop)
    slots: dict[int, int] = {}

    def spawn(slot: int) -> None:
        pid = children.spawn(lambda stop: work(slot, stop))
        slots[pid] = slot

    for slot in range(workers):
        spawn(slot)
    while not context.stop.requested:
        wait_for_any(context.stop, children.wake_fd)
        for pid in children.reap():
            slot = slots.pop(pid)
            if not context.stop.requested:
                spawn(slot)  # a dead worker is replaced; the pool stays at N
    close_listeners(context.listeners)
    children.stop_all()
