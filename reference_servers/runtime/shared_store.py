"""The store of the forking architectures: one map in shared memory that every
forked worker reads and writes itself, under one lock, with no round trip to
another process. It must never import ``threading`` (stores.py says why).

Layout: one memfd, mapped MAP_SHARED before the fork, so every forked process
sees the same pages (the mapping is large; a page costs memory once touched):

    header     the wilderness pointer, the changing flag, a free-list head
               per block size
    buckets    the hash index: the offset of a bucket's first record, 0 if none
    arena      blocks of a power of two bytes, each a record or free. A record:
               next record in its bucket (8 bytes), hash (8), key length (4),
               value length (4), key, value. A free block: next and previous
               free block of its size, its size class with the top bit set.

A key's hash is Python's ``hash()`` of the bytes. It is keyed by a secret the
interpreter draws at start, and a forked child keeps its parent's, so every
process that can see the mapping (only forks can: the memfd is never passed
on, and closes on exec) hashes alike, while a client cannot choose keys that
all fall in one bucket.

**One lock.** Every operation, GET included, holds a POSIX record lock
(``fcntl.lockf``) on the memfd, which makes each one atomic and linearizable.
The kernel owns that lock per process and drops it when its holder dies, so a
worker killed mid-operation does not wedge the others (a lock in the mapping,
or ``flock``, which a fork shares, would stay held). The price of being owned
per process: threads of one process do not exclude each other through it, so
each process uses the store from one thread (the forking architectures have
no others). Closing any descriptor of the memfd would drop the lock, so the
store keeps its one descriptor open for the life of the process.

**Trying before sleeping.** A process that finds the lock taken first retries
it without waiting, a few times, and only then sleeps in the kernel. Pipelined
requests take and release the lock for each command with a few microseconds of
parsing in between; a sleeper woken at a release is scheduled only after its
holder has taken the lock again, so two workers took turns by whole batches
(two hybrid workers did 72k pipelined SETs/s, one worker alone 80k). Retrying
catches one of the gaps: 122k. The retries are bounded, so a holder that is
slow (or descheduled) is waited for asleep.

**A death mid-operation.** Whatever a process is killed between, the index
stays whole: a record is written in full before one aligned 8-byte store
publishes it (in its bucket, or in place of the record it replaces), and one
such store unlinks a record before its block is freed. The free lists are
another matter (taking a block off a doubly linked list takes several
stores), so a change raises a flag in the header first and lowers it when
done. The next change that finds it raised rebuilds the free lists from the
index: every block no record holds is free. So a death loses no space either.

**Memory: a buddy allocator.** A record takes the smallest power of two that
holds it, from 32 bytes. It comes off the free list of that size, else a
larger free block is halved until it fits, else it is cut from the
wilderness (the arena's untouched end). A freed block merges with its buddy
(the other half of the block they were cut from) while that is free too, so
space freed in small blocks serves large values again.

**When the arena is full.** A SET or INCR for which no block is free, nor
room in the wilderness, raises CommandError OOM and changes nothing:
CloudHash/1 answers ``-ERR OOM the store is full``, RESP2 Redis's ``-OOM
command not allowed when used memory > 'maxmemory'.`` (the reply of a Redis
at its maxmemory with no eviction). An overwrite needs a block beside the old
one, which it frees afterwards. GET and DEL never need space, so a client can
always make room.
"""

from __future__ import annotations

import fcntl
import mmap
import os

from ..core import CommandError
from ..core.commands import incremented, require_canonical_integer

__all__ = ["DEFAULT_SIZE", "SharedMemoryStore"]

DEFAULT_SIZE = 1 << 30  # the arena's bytes, virtual: room for about 500 values of max_frame (1 MiB)

_WORD = 8
_PAGE = 4096
_MASK64 = (1 << 64) - 1
_LOW32 = 0xFFFF_FFFF
_MIN_CLASS = 5  # 32-byte blocks: a record's 24-byte head and a little
_FREE = 1 << 63  # in a free block's third word; a record's value length never reaches it
# Word indices into the header page.
_WILDERNESS_AT, _CHANGING_AT, _FREE_AT = 0, 1, 8
_HEAD = 3 * _WORD  # a record's: next, hash, key length | value length << 32
_BUCKETS_AT = _PAGE // _WORD
_BYTES_PER_BUCKET = 1024  # short chains even for small records
_TRIES_BEFORE_SLEEPING = 20  # non-blocking attempts at the lock: about 30 µs in all


class SharedMemoryStore:
    """A Store for the processes forked after it is made.

    >>> store = SharedMemoryStore(size=1 << 20)
    >>> pid = os.fork()  # the child's SET is the parent's too
    >>> if pid == 0:
    ...     store.set(b"k", b"v")
    ...     os._exit(0)
    >>> os.waitpid(pid, 0)[1], store.get(b"k")
    (0, b'v')
    """

    def __init__(self, *, canonical_integers: bool = False, size: int = DEFAULT_SIZE) -> None:
        """``canonical_integers`` as DictStore's; ``size`` is the arena's bytes,
        a power of two of at least 4 KiB (the header and index come on top)."""
        if size < _PAGE or size & (size - 1):
            raise ValueError(f"the arena's size must be a power of two of at least {_PAGE}, not {size}")
        buckets = max(16, size // _BYTES_PER_BUCKET)
        self._canonical_integers = canonical_integers
        self._base = -(-(_PAGE + buckets * _WORD) // _PAGE) * _PAGE
        self._top_class = size.bit_length() - 1
        self._bucket_mask = buckets - 1
        self._fd = os.memfd_create("sockspec-store", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, self._base + size)
        self._map = mmap.mmap(self._fd, self._base + size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._words = memoryview(self._map).cast("Q")
        self._words[_WILDERNESS_AT] = self._base

    # ---- the Store protocol ------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        hashed = hash(key) & _MASK64
        self._lock()
        try:
            _, record = self._find(key, hashed)
            return self._value(record) if record else None
        finally:
            self._unlock()

    def set(self, key: bytes, value: bytes) -> None:
        hashed = hash(key) & _MASK64
        self._lock()
        try:
            self._put(key, hashed, value)
        finally:
            self._unlock()

    def delete(self, key: bytes) -> bool:
        hashed = hash(key) & _MASK64
        self._lock()
        try:
            link, record = self._find(key, hashed)
            if not record:
                return False
            self._begin_change()
            self._words[link] = self._words[record // _WORD]  # unlinked: the one store that deletes
            self._free(record, self._class_of(record))
            self._end_change()
            return True
        finally:
            self._unlock()

    def incr(self, key: bytes) -> int:
        hashed = hash(key) & _MASK64
        self._lock()
        try:
            _, record = self._find(key, hashed)
            stored = self._value(record) if record else None
            if self._canonical_integers:
                require_canonical_integer(stored)
            result = incremented(stored)
            self._put(key, hashed, str(result).encode("ascii"))
            return result
        finally:
            self._unlock()

    # ---- the lock ----------------------------------------------------------------------

    def _lock(self) -> None:
        for _ in range(_TRIES_BEFORE_SLEEPING):
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
                continue
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)

    # ---- the index: called with the lock held ---------------------------------------------

    def _find(self, key: bytes, hashed: int) -> tuple[int, int]:
        """(the word that links to the key's record, the record's offset); the
        offset is 0 if the key is missing, and the word is then its bucket's."""
        words = self._words
        bucket = _BUCKETS_AT + (hashed & self._bucket_mask)
        link, record = bucket, words[bucket]
        size = len(key)
        while record:
            at = record // _WORD
            if words[at + 1] == hashed and words[at + 2] & _LOW32 == size:
                start = record + _HEAD
                if self._map[start : start + size] == key:
                    return link, record
            link, record = at, words[at]
        return bucket, 0

    def _value(self, record: int) -> bytes:
        lengths = self._words[record // _WORD + 2]
        start = record + _HEAD + (lengths & _LOW32)
        return self._map[start : start + (lengths >> 32)]

    def _put(self, key: bytes, hashed: int, value: bytes) -> None:
        link, old = self._find(key, hashed)
        words = self._words
        self._begin_change()
        try:
            record = self._allocate(_HEAD + len(key) + len(value))
        except CommandError:
            self._end_change()  # refused before any change
            raise
        at = record // _WORD
        words[at] = words[old // _WORD] if old else words[link]
        words[at + 1] = hashed
        words[at + 2] = len(key) | len(value) << 32
        start = record + _HEAD
        self._map[start : start + len(key)] = key
        self._map[start + len(key) : start + len(key) + len(value)] = value
        words[link] = record  # published, in place of the old record if there was one
        if old:
            self._free(old, self._class_of(old))
        self._end_change()

    def _class_of(self, record: int) -> int:
        lengths = self._words[record // _WORD + 2]
        return _size_class(_HEAD + (lengths & _LOW32) + (lengths >> 32))

    # ---- the allocator: called with the lock held --------------------------------------------

    def _begin_change(self) -> None:
        """Raise the changing flag, after repairing what a holder that died
        with it raised left behind."""
        if self._words[_CHANGING_AT]:
            self._rebuild_free_lists()
        self._words[_CHANGING_AT] = 1

    def _end_change(self) -> None:
        self._words[_CHANGING_AT] = 0

    def _allocate(self, size: int) -> int:
        """A block for ``size`` bytes; raises CommandError OOM, changing nothing, if none."""
        wanted = _size_class(size)
        words = self._words
        for sized in range(wanted, self._top_class + 1):
            if block := words[_FREE_AT + sized]:
                self._unlink(block, sized)
                for half in range(sized - 1, wanted - 1, -1):  # halved until it fits: the upper halves are free
                    self._push(block + (1 << half), half)
                return block
        wilderness = words[_WILDERNESS_AT]
        start = self._base + -(-(wilderness - self._base) >> wanted << wanted)  # aligned to its size
        if start + (1 << wanted) > self._base + (1 << self._top_class):
            raise CommandError("OOM", "the store is full")
        words[_WILDERNESS_AT] = start + (1 << wanted)
        self._carve(wilderness, start, merge=True)  # the gap the alignment left
        return start

    def _free(self, block: int, sized: int) -> None:
        """Put a block on its free list, merged with its buddy while that is free."""
        words = self._words
        while sized < self._top_class:
            buddy = self._base + ((block - self._base) ^ (1 << sized))
            if words[buddy // _WORD + 2] != _FREE | sized:
                break
            self._unlink(buddy, sized)
            block = min(block, buddy)
            sized += 1
        self._push(block, sized)

    def _push(self, block: int, sized: int) -> None:
        words = self._words
        at, first = block // _WORD, words[_FREE_AT + sized]
        words[at], words[at + 1], words[at + 2] = first, 0, _FREE | sized
        if first:
            words[first // _WORD + 1] = block
        words[_FREE_AT + sized] = block

    def _unlink(self, block: int, sized: int) -> None:
        words = self._words
        at = block // _WORD
        after, before = words[at], words[at + 1]
        words[at + 2] = 0  # no longer free: only a block on a list carries the mark
        if before:
            words[before // _WORD] = after
        else:
            words[_FREE_AT + sized] = after
        if after:
            words[after // _WORD + 1] = before

    def _carve(self, start: int, end: int, *, merge: bool = False) -> None:
        """Free the bytes from start to end as the fewest aligned blocks."""
        while start < end:
            offset = start - self._base
            aligned = (offset & -offset).bit_length() - 1 if offset else self._top_class
            sized = min(aligned, (end - start).bit_length() - 1)
            if merge:
                self._free(start, sized)
            else:
                self._push(start, sized)
            start += 1 << sized

    def _rebuild_free_lists(self) -> None:
        """Free every block below the wilderness that no record holds: the
        repair after a holder died in the middle of a change."""
        words = self._words
        held: list[tuple[int, int]] = []
        for first in words[_BUCKETS_AT : _BUCKETS_AT + self._bucket_mask + 1].tolist():
            record = first
            while record:
                held.append((record, self._class_of(record)))
                record = words[record // _WORD]
        for sized in range(self._top_class + 1):
            words[_FREE_AT + sized] = 0
        free_from = self._base
        for record, sized in sorted(held):
            self._carve(free_from, record)
            free_from = record + (1 << sized)
        self._carve(free_from, words[_WILDERNESS_AT])


def _size_class(size: int) -> int:
    return max(_MIN_CLASS, (size - 1).bit_length())
