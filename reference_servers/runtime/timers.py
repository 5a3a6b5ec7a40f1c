"""Deadlines for a reactor's connections: one entry per owner, moved or
removed in place.

A binary heap ordered by deadline, with each owner's position kept in a
dict, so that a connection's deadline can move earlier or later, and a
closed connection's entry can be taken out at once, each in O(log n). A heap
that only drops stale entries when they reach its top keeps every closed
connection behind an older, still open one until its deadline: an idle
connection would then pin the memory of every short connection after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

Owner = TypeVar("Owner", bound=Hashable)


class Timers(Generic[Owner]):
    def __init__(self) -> None:
        # (deadline, tie-breaker, owner): the counter keeps equal deadlines in
        # the order they were set and never compares two owners.
        self._heap: list[tuple[float, int, Owner]] = []
        self._position: dict[Owner, int] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def __contains__(self, owner: Owner) -> bool:
        return owner in self._position

    def deadline_of(self, owner: Owner) -> float | None:
        index = self._position.get(owner)
        return None if index is None else self._heap[index][0]

    def set(self, owner: Owner, deadline: float | None) -> None:
        """Give ``owner`` this deadline (None: no deadline, its entry goes)."""
        if deadline is None:
            self.discard(owner)
            return
        index = self._position.get(owner)
        if index is None:
            self._heap.append((deadline, next(self._sequence), owner))
            self._position[owner] = len(self._heap) - 1
            self._sift_up(len(self._heap) - 1)
            return
        old = self._heap[index][0]
        if deadline == old:
            return
        self._heap[index] = (deadline, next(self._sequence), owner)
        if deadline < old:
            self._sift_up(index)
        else:
            self._sift_down(index)

    def discard(self, owner: Owner) -> None:
        """Forget ``owner`` (nothing happens if it has no entry)."""
        index = self._position.pop(owner, None)
        if index is None:
            return
        last = self._heap.pop()
        if index == len(self._heap):
            return  # it was the last entry
        self._heap[index] = last
        self._position[last[2]] = index
        self._sift_up(index)
        self._sift_down(self._position[last[2]])

    def earliest(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Owner]:
        """Every owner whose deadline is ``now`` or earlier, earliest first; their entries go."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            owner = self._heap[0][2]
            self.discard(owner)
            due.append(owner)
        return due

    # ---- the heap ------------------------------------------------------------------

    def _sift_up(self, index: int) -> None:
        heap = self._heap
        entry = heap[index]
        while index > 0:
            parent = (index - 1) // 2
            if heap[parent] <= entry:
                break
            heap[index] = heap[parent]
            self._position[heap[index][2]] = index
            index = parent
        heap[index] = entry
        self._position[entry[2]] = index

    def _sift_down(self, index: int) -> None:
        heap = self._heap
        size = len(heap)
        entry = heap[index]
        while True:
            child = 2 * index + 1
            if child >= size:
                break
            if child + 1 < size and heap[child + 1] < heap[child]:
                child += 1
            if entry <= heap[child]:
                break
            heap[index] = heap[child]
            self._position[heap[index][2]] = index
            index = child
        heap[index] = entry
        self._position[entry[2]] = index
