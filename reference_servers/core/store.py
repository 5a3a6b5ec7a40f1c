"""The store interface that commands run against, and a plain dict store.

Atomicity is the implementation's business: DictStore has none and suits one
thread; the runtime wraps it in a lock or puts it behind a store process.
"""

from __future__ import annotations

from typing import Protocol

from .commands import incremented


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> bool: ...

    def incr(self, key: bytes) -> int:
        """Add one atomically; raises CommandError (TYPE or RANGE) and leaves the value alone."""
        ...


class DictStore:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: bytes) -> bool:
        return self._data.pop(key, None) is not None

    def incr(self, key: bytes) -> int:
        result = incremented(self._data.get(key))
        self._data[key] = str(result).encode("ascii")
        return result
