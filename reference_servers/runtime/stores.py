"""The store of the architectures that serve from one process: a dict behind
one lock. (The forking ones share a store in shared memory: shared_store.py.)

The locks come from ``_thread``, not ``threading``: once ``threading`` is
imported, every fork runs its after-fork hook in the child, which touches
(and so copies) more pages: a process-per-connection child took 415 page
faults to start with it, 350 without. The forking architectures do not
import it."""

from __future__ import annotations

import _thread

from ..core import DictStore


class LockedStore:
    """Every operation under one lock: atomic and linearizable across threads."""

    def __init__(self, *, canonical_integers: bool = False) -> None:
        self._store = DictStore(canonical_integers=canonical_integers)
        self._lock = _thread.allocate_lock()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._store.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._store.set(key, value)

    def delete(self, key: bytes) -> bool:
        with self._lock:
            return self._store.delete(key)

    def incr(self, key: bytes) -> int:
        with self._lock:
            return self._store.incr(key)
