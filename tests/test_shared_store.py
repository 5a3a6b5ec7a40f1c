"""The forking architectures' store in shared memory (runtime/shared_store.py):
the same answers as DictStore, a full arena answered OOM and its space reused,
forked processes that lose no INCR, and a process killed holding the lock
that neither wedges the others nor leaves the index broken.

Waits on other processes are polls with deadlines; every child is reaped.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import select
import signal
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from reference_servers.core import RESP, CommandError, DictStore, Send, ServerConnection
from reference_servers.runtime.shared_store import SharedMemoryStore
from tests.core_support import make_info

INT64_MAX = (1 << 63) - 1
SMALL = 64 * 1024  # bytes of arena: 64 records of up to 1 KiB
LARGE = 8 << 20  # room for every sequence the machine draws
DEADLINE = 10.0
FLOCK = struct.Struct("hhqqi4x")  # Linux's struct flock: type, whence, start, length, pid


# ---- helpers -----------------------------------------------------------------


def outcome(call: Callable[[], object]) -> object:
    """What a store call gave: its result, or the code of the CommandError it raised."""
    try:
        return call()
    except CommandError as error:
        return ("error", error.code)


def lock_holder(store: SharedMemoryStore) -> int | None:
    """The pid that holds the store's lock now (asked of the kernel: F_GETLK), or None."""
    asked = FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    kind, _, _, _, pid = FLOCK.unpack(fcntl.fcntl(store._fd, fcntl.F_GETLK, asked))
    return None if kind == fcntl.F_UNLCK else pid


def fork(body: Callable[[], None]) -> int:
    """A child that runs ``body`` and exits 0, or 1 if it raised."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            body()
            status = 0
        finally:
            os._exit(status)
    return pid


def exit_code(pid: int, timeout: float) -> int | None:
    """The child's exit code once it ends, or None (and the child killed) at the deadline."""
    fd = os.pidfd_open(pid)
    try:
        ended = select.select([fd], [], [], timeout)[0]
    finally:
        os.close(fd)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if ended else None


@contextlib.contextmanager
def reaped(pids: list[int]) -> Iterator[list[int]]:
    """Kill and reap whatever children the test left behind, however it ends."""
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)


def filled(byte: int, size: int) -> bytes:
    return bytes([byte]) * size


# ---- the same answers as DictStore ------------------------------------------------

KEYS = [b"a", b"b", b"", b"\x00\xff", b"k" * 300]
integer_texts = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([INT64_MAX, INT64_MAX - 1, -(1 << 63), INT64_MAX + 1]),
).map(lambda n: str(n).encode())
odd_integer_texts = st.sampled_from([b"-0", b"007", b"1.5", b" 1", b"", b"+3"])
sized_values = st.builds(filled, st.integers(0, 255), st.sampled_from([1, 7, 9, 40, 100, 1000, 4000, 20_000, 70_000]))
values = st.one_of(integer_texts, odd_integer_texts, st.binary(max_size=64), sized_values)


class AgainstDictStore(RuleBasedStateMachine):
    """SET/GET/DEL/INCR on a shared-memory store and on DictStore alike. In the
    small arena a write may be refused OOM, and then must change nothing; in
    the large one it never is."""

    @initialize(canonical=st.booleans(), size=st.sampled_from([SMALL, LARGE]))
    def start(self, canonical: bool, size: int) -> None:
        self.canonical = canonical
        self.size = size
        self.store = SharedMemoryStore(canonical_integers=canonical, size=size)
        self.model = DictStore(canonical_integers=canonical)

    def refused(self, got: object) -> bool:
        if got != ("error", "OOM"):
            return False
        assert self.size == SMALL, "OOM in an arena with room for everything the machine stores"
        event("a write refused OOM")
        return True

    @rule(key=st.sampled_from(KEYS), value=values)
    def set(self, key: bytes, value: bytes) -> None:
        if not self.refused(outcome(lambda: self.store.set(key, value))):
            self.model.set(key, value)

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: bytes) -> None:
        assert self.store.get(key) == self.model.get(key), key

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: bytes) -> None:
        assert self.store.delete(key) == self.model.delete(key), key

    @rule(key=st.sampled_from(KEYS))
    def incr(self, key: bytes) -> None:
        got = outcome(lambda: self.store.incr(key))
        if self.refused(got):
            # A refusal for room comes only where the model would have counted on.
            scratch = DictStore(canonical_integers=self.canonical)
            if (stored := self.model.get(key)) is not None:
                scratch.set(key, stored)
            assert isinstance(outcome(lambda: scratch.incr(key)), int), (key, stored)
            return
        expected = outcome(lambda: self.model.incr(key))
        assert got == expected, (key, got, expected)

    @invariant()
    def every_key_as_in_the_model(self) -> None:
        for key in KEYS:
            assert self.store.get(key) == self.model.get(key), key


AgainstDictStore.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestAgainstDictStore = AgainstDictStore.TestCase


def test_keys_that_share_buckets_are_kept_apart() -> None:
    """Two thousand keys in a store of 128 buckets: chains of about 16, with
    records unlinked from their middles and replaced in place."""
    store = SharedMemoryStore(size=SMALL * 2)
    model = DictStore()
    for n in range(2000):
        value = b"%d" % n if n % 3 == 2 else b"v%d" % n
        store.set(b"%d" % n, value)
        model.set(b"%d" % n, value)
    for n in range(0, 2000, 3):
        assert store.delete(b"%d" % n) and model.delete(b"%d" % n)
    for n in range(1, 2000, 3):
        store.set(b"%d" % n, b"w" * (n % 50))
        model.set(b"%d" % n, b"w" * (n % 50))
    for n in range(2, 2000, 3):
        assert store.incr(b"%d" % n) == n + 1
        model.incr(b"%d" % n)
    assert all(store.get(b"%d" % n) == model.get(b"%d" % n) for n in range(2000))
    assert store.get(b"2000") is None


def test_a_value_of_max_frame_bytes_round_trips() -> None:
    store = SharedMemoryStore()
    big = os.urandom(1 << 20)
    store.set(b"big", big)
    store.set(b"big2", big[::-1])
    assert store.get(b"big") == big and store.get(b"big2") == big[::-1]
    assert store.delete(b"big") and store.get(b"big") is None


# ---- a full arena -------------------------------------------------------------------


def fill(store: SharedMemoryStore, size: int) -> int:
    """Distinct keys of ``size``-byte values until OOM; how many fitted."""
    count = 0
    while True:
        try:
            store.set(b"fill%d" % count, filled(count % 256, size))
        except CommandError as error:
            assert error.code == "OOM", error
            return count
        count += 1


def test_a_full_arena_refuses_set_and_incr_with_oom_and_changes_nothing() -> None:
    store = SharedMemoryStore(size=SMALL)
    fitted = fill(store, 900)
    assert fitted == 64, f"{fitted} records of 1 KiB or less in a 64 KiB arena"
    with pytest.raises(CommandError) as refused:
        store.set(b"fill0", b"x" * 900)
    assert refused.value.code == "OOM", "an overwrite needs a block beside the old one"
    assert store.get(b"fill0") == filled(0, 900), "the refused overwrite left the old value"
    with pytest.raises(CommandError):
        store.incr(b"counter")
    assert store.get(b"counter") is None, "the refused INCR stored nothing"
    assert all(store.get(b"fill%d" % n) == filled(n % 256, 900) for n in range(fitted))


def test_del_makes_room_when_the_arena_is_full() -> None:
    store = SharedMemoryStore(size=SMALL)
    fitted = fill(store, 900)
    assert store.delete(b"fill3") and store.delete(b"fill4"), "DEL needs no room"
    store.set(b"late", b"x" * 900)
    assert store.get(b"late") == b"x" * 900
    assert store.incr(b"counter") == 1, "a small block split off a free larger one"
    assert store.incr(b"counter") == 2, "and the rest of it used in turn"
    assert store.get(b"fill%d" % (fitted - 1)) == filled((fitted - 1) % 256, 900)


def test_space_freed_by_del_and_overwrites_is_reused() -> None:
    store = SharedMemoryStore(size=SMALL)
    first = fill(store, 900)
    for n in range(first):
        assert store.delete(b"fill%d" % n)
    assert fill(store, 900) == first, "the arena holds as many again once emptied"
    for n in range(first):
        assert store.delete(b"fill%d" % n)
    for n in range(20_000):  # 20,000 overwrites of two keys in sizes from 0 to 2 KiB
        store.set(b"k%d" % (n % 2), filled(n % 256, (n * 37) % 2048))
        assert store.incr(b"counter") == n + 1
    assert store.get(b"k1") == filled(19_999 % 256, (19_999 * 37) % 2048)


def test_a_record_larger_than_the_arena_is_oom() -> None:
    store = SharedMemoryStore(size=SMALL)
    with pytest.raises(CommandError) as refused:
        store.set(b"k", b"x" * SMALL)
    assert refused.value.code == "OOM"
    store.set(b"k", b"fits")
    assert store.get(b"k") == b"fits"


def test_oom_is_answered_in_each_protocols_words() -> None:
    store = SharedMemoryStore(size=SMALL)
    store.set(b"k", b"x" * 40_000)  # a 64 KiB block: the whole arena
    for info, request, reply in (
        (make_info(), b"SET k2 y\r\n", b"-ERR OOM the store is full\r\n"),
        (
            make_info(protocol=RESP, features=frozenset()),
            b"*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\ny\r\n",
            b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
        ),
    ):
        conn = ServerConnection(info, store, 0.0)
        conn.receive_data(request)
        event = conn.next_event(0.0)
        assert isinstance(event, Send) and event.data == reply, (info.protocol, event)
    assert store.get(b"k2") is None


# ---- processes -------------------------------------------------------------------------


def test_forked_processes_lose_no_incr() -> None:
    store = SharedMemoryStore(size=SMALL)
    workers, each = 4, 2000

    def count() -> None:
        for n in range(each):
            store.incr(b"counter")
            store.set(b"own%d" % os.getpid(), b"x" * (n % 300))  # allocation beside the INCRs

    with reaped([fork(count) for _ in range(workers)]) as pids:
        codes = [exit_code(pid, DEADLINE) for pid in pids]
    assert codes == [0] * workers, codes
    assert store.get(b"counter") == str(workers * each).encode()


def test_a_process_killed_holding_the_lock_does_not_wedge_the_others() -> None:
    store = SharedMemoryStore(size=SMALL)
    store.set(b"k", b"before")
    held_read, held_write = os.pipe()
    hold_read, hold_write = os.pipe()

    def hold() -> None:
        store._lock()
        os.write(held_write, b"x")
        os.read(hold_read, 1)  # holds the lock until killed

    with reaped([fork(hold)]) as pids:
        assert select.select([held_read], [], [], DEADLINE)[0], "the child never took the lock"
        assert lock_holder(store) == pids[0], "the child holds the lock"
        os.kill(pids[0], signal.SIGKILL)
        os.waitpid(pids[0], 0)

        def proceed() -> None:
            assert store.get(b"k") == b"before"
            store.set(b"k", b"after")
            assert store.incr(b"n") == 1

        pids.append(fork(proceed))
        assert exit_code(pids[1], DEADLINE) == 0, "another process went on within the deadline"
    for fd in (held_read, held_write, hold_read, hold_write):
        os.close(fd)
    assert store.get(b"k") == b"after" and lock_holder(store) is None


@pytest.mark.parametrize(
    ("b_deleted", "change", "dies_in"),
    [
        (False, "delete", "_push"),  # a unlinked, its block not yet on a free list
        (True, "delete", "_unlink"),  # a's buddy (b's block) off its list to merge, the two not yet back
        (True, "set", "_push"),  # b's block off its list to halve, the halves not yet on theirs
    ],
)
def test_a_death_in_the_middle_of_a_change_loses_no_space(b_deleted: bool, change: str, dies_in: str) -> None:
    """A child killed inside the allocator leaves the changing flag raised;
    the next change rebuilds the free lists from the index, and the arena
    holds as many records as a fresh one."""
    store = SharedMemoryStore(size=SMALL)
    store.set(b"a", filled(1, 900))
    store.set(b"b", filled(2, 900))
    if b_deleted:
        store.delete(b"b")  # the block beside a's (its buddy) is free

    def die_changing() -> None:
        def killed(*args: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        setattr(store, dies_in, killed)  # in this child only
        if change == "delete":
            store.delete(b"a")
        else:
            store.set(b"small", b"x")

    with reaped([fork(die_changing)]) as pids:
        assert exit_code(pids[0], DEADLINE) == -signal.SIGKILL, "the child died inside the change"
    assert store.get(b"a") == (None if change == "delete" else filled(1, 900))
    assert store.get(b"small") is None, "the record the child was writing was never published"
    for key in (b"a", b"b"):
        store.delete(key)
    assert fill(store, 900) == 64, "the block the child held is free again"


SIZES = [16, 300, 4000, 100_000, 300_000]


def stamped(n: int) -> bytes:
    """The writer's n-th value: n at both ends, so a value written in part shows."""
    stamp = n.to_bytes(8, "big")
    return stamp + filled(n % 251, SIZES[n % len(SIZES)] - 16) + stamp


def whole(value: bytes | None) -> bool:
    return value is None or value == stamped(int.from_bytes(value[:8], "big"))


def test_processes_killed_mid_operation_leave_every_key_whole() -> None:
    """Writers of values up to 300 KB, each stopped until it is caught inside
    an operation (F_GETLK names it) and killed there: twenty deaths, each in a
    different place of the sequence of SETs and DELs. After each the lock is
    free and every key holds nil or a value written whole; at the end no space
    has been lost."""
    store = SharedMemoryStore(size=4 << 20)
    keys = [b"k%d" % n for n in range(4)]
    values = [stamped(n) for n in range(41)]  # made before: the writers' time goes into the store
    progress_read, progress_write = os.pipe()
    os.set_blocking(progress_read, False)
    os.set_blocking(progress_write, False)

    def write(start: int) -> None:
        for n in itertools.count(start):
            key = keys[n % len(keys)]
            store.delete(key) if n % 7 == 0 else store.set(key, values[n % len(values)])
            with contextlib.suppress(BlockingIOError):
                os.write(progress_write, b"x")

    def moved_on() -> None:
        """Wait for the writer to finish one more operation: a stop sent at once
        after SIGCONT would find it where the last one left it."""
        with contextlib.suppress(BlockingIOError):
            while os.read(progress_read, 65536):
                pass
        assert select.select([progress_read], [], [], DEADLINE)[0], "the writer made no progress"

    with reaped([]) as pids:
        for death in range(20):
            pid = fork(lambda start=death * 3: write(start))
            pids.append(pid)
            for _ in range(1000):
                moved_on()
                os.kill(pid, signal.SIGSTOP)
                os.waitid(os.P_PID, pid, os.WSTOPPED)
                if lock_holder(store) == pid:
                    break
                os.kill(pid, signal.SIGCONT)
            assert lock_holder(store) == pid, "the writer was never caught inside an operation"
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            assert lock_holder(store) is None, "the kernel let go of the dead writer's lock"
            for key in keys:
                assert whole(store.get(key)), f"{key!r} torn after a death mid-operation"
    os.close(progress_read)
    os.close(progress_write)
    for key in keys:
        store.delete(key)
    assert fill(store, 900) == (4 << 20) // 1024, "the twenty deaths lost no space"
