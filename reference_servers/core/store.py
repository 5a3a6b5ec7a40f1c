"""The store interface that commands run against, and a plain dict store.

Atomicity is the implementation's business: DictStore has none and suits one
thread; the runtime wraps it in a lock, or keeps the map in shared memory
for forked workers (runtime/shared_store.py, which implements this Protocol
itself and takes INCR's rules from commands.py as DictStore does).
"""

from __future__ import annotations

from typing import Protocol

from .commands import incremented, require_canonical_integer


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> bool: ...

    def incr(self, key: bytes) -> int:
        """Add one atomically; raises CommandError (TYPE or RANGE) and leaves the value alone."""
        ...


class DictStore:
    def __init__(self, *, canonical_integers: bool = False) -> None:
        """``canonical_integers``: INCR counts on only from an integer in its
        shortest form, as Redis does (a RESP2 server's store)."""
        self._data: dict[bytes, bytes] = {}
        self._canonical_integers = canonical_integers

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: bytes) -> bool:
        return self._data.pop(key, None) is not None

    def incr(self, key: bytes) -> int:
        stored = self._data.get(key)
        if self._canonical_integers:
            require_canonical_integer(stored)
        result = incremented(stored)
        self._data[key] = str(result).encode("ascii")
        return result
