"""The reference servers' bookkeeping that CH-ROBUST-4 rests on, piece by piece:
the indexed timer heap (against a model), a SessionSet that lets go of a
closed connection at once (real sockets), and reaping that waits once per
ended child, not once per child (real forks, in a process of their own).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from reference_servers.core import DictStore, ServerConnection, ServerInfo
from reference_servers.runtime.session import Session
from reference_servers.runtime.sessions import SessionSet
from reference_servers.runtime.timers import Timers

REPO = Path(__file__).resolve().parents[1]

# ---- Timers against a model --------------------------------------------------------------------

OWNERS = 8
operation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, OWNERS - 1), st.none() | st.integers(0, 50)),
    st.tuples(st.just("discard"), st.integers(0, OWNERS - 1), st.none()),
    st.tuples(st.just("pop_due"), st.none(), st.integers(0, 50)),
)


@settings(max_examples=300, deadline=None)
@given(operations=st.lists(operation, max_size=60))
def test_timers_behave_like_a_dict_of_deadlines(operations: list[tuple[str, int | None, int | None]]) -> None:
    """One entry per owner, whatever the order of sets, moves and discards;
    due owners come out earliest first, ties in the order they were set."""
    timers: Timers[int] = Timers()
    model: dict[int, tuple[int, int]] = {}  # owner -> (deadline, when it was set)
    for step, (kind, owner, value) in enumerate(operations):
        if kind == "set":
            assert owner is not None
            timers.set(owner, value)
            if value is None:
                model.pop(owner, None)
            elif model.get(owner, (None, 0))[0] != value:
                model[owner] = (value, step)
        elif kind == "discard":
            assert owner is not None
            timers.discard(owner)
            model.pop(owner, None)
        else:
            assert value is not None
            due = sorted((entry, o) for o, entry in model.items() if entry[0] <= value)
            assert timers.pop_due(value) == [o for _, o in due], f"after {operations[: step + 1]}"
            for _, o in due:
                del model[o]
        assert len(timers) == len(model), f"one entry per owner with a deadline, after {operations[: step + 1]}"
        assert timers.earliest() == (min(d for d, _ in model.values()) if model else None)
        for o in range(OWNERS):
            assert timers.deadline_of(o) == (model[o][0] if o in model else None)
            assert (o in timers) == (o in model)


def test_a_discarded_owner_is_no_longer_referenced() -> None:
    class Owner:
        pass

    timers: Timers[Owner] = Timers()
    kept, dropped = Owner(), Owner()
    timers.set(kept, 1.0)
    timers.set(dropped, 2.0)
    gone = weakref.ref(dropped)
    timers.discard(dropped)
    del dropped
    assert gone() is None, "the heap still holds an owner it was told to forget"
    assert timers.pop_due(5.0) == [kept]


# ---- a SessionSet lets go of a closed connection at once ---------------------------------------


def make_session(sock: socket.socket, now: float) -> Session:
    info = ServerInfo("evented", 64, 64, "busy", idle_timeout_ms=60_000)
    return Session(sock, ServerConnection(info, DictStore(), now), now)


def test_closed_sessions_leave_the_set_and_the_heap_at_once_beside_an_older_idle_one() -> None:
    """The older idle session's deadline sits at the top of the heap; sessions
    that come and go after it must not stay behind it (CH-ROBUST-4's bug)."""
    sessions = SessionSet()
    listener = socket.create_server(("127.0.0.1", 0))
    idle_server, idle_peer = tcp_pair(listener)
    try:
        sessions.add(make_session(idle_server, time.monotonic()))
        closed: list[weakref.ref[Session]] = []
        for _ in range(200):
            server_end, peer = tcp_pair(listener)
            session = make_session(server_end, time.monotonic())
            sessions.add(session)
            closed.append(weakref.ref(session))
            del session
            with peer:
                peer.sendall(b"PING\r\n")  # and gone, without reading the reply
        deadline = time.monotonic() + 10.0
        while len(sessions) > 1 and time.monotonic() < deadline:
            sessions.run_once(extra_deadline=time.monotonic() + 0.1)
        assert len(sessions) == 1, f"{len(sessions) - 1} closed sessions are still in the set"
        assert sessions.timer_count == 1, f"{sessions.timer_count} timers for 1 open session"
        alive = sum(ref() is not None for ref in closed)
        assert alive == 0, f"{alive} of 200 closed sessions are still referenced"
    finally:
        sessions.close()
        idle_peer.close()
        listener.close()


def tcp_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(the server's end, the peer's end) of a loopback TCP connection."""
    peer = socket.create_connection(listener.getsockname()[:2], timeout=5.0)
    server_end, _ = listener.accept()
    return server_end, peer


# ---- reaping: one wait per ended child -----------------------------------------------------------

REAP_SCRIPT = textwrap.dedent(
    """
    import json, os, select, sys
    from reference_servers.runtime import children as module
    from reference_servers.runtime.stop import StopSignal

    waits = []
    real_waitpid = os.waitpid
    def counting_waitpid(pid, options):
        waits.append(pid)
        return real_waitpid(pid, options)
    module.os.waitpid = counting_waitpid

    stop = StopSignal()
    kids = module.Children(stop)
    pipes = {}
    def wait_on(read_end, write_end):
        def run(child_stop):
            for inherited in [*pipes.values(), write_end]:
                os.close(inherited)  # only the parent may hold a write end, or EOF never comes
            select.select([read_end], [], [], 30)  # until the test closes the other end (30 s at most)
        return run
    for _ in range(100):
        read_end, write_end = os.pipe()
        pid = kids.spawn(wait_on(read_end, write_end))
        os.close(read_end)
        pipes[pid] = write_end

    def wait_for_sigchld():
        poller = select.poll()
        poller.register(kids.wake_fd, select.POLLIN)
        assert poller.poll(10_000), "no SIGCHLD within 10 s"

    ended = list(pipes)[:2]
    for pid in ended:
        os.close(pipes.pop(pid))
    reaped = []
    while len(reaped) < 2:
        wait_for_sigchld()
        reaped += kids.reap()
    first = {"reaped": sorted(reaped), "expected": sorted(ended), "waits": len(waits), "alive": len(kids)}

    # A child that is not ours ends first: ours are still found, and it is left to its owner.
    foreign = os.fork()
    if foreign == 0:
        os._exit(7)
    waits.clear()
    last = list(pipes)[0]
    os.close(pipes.pop(last))
    reaped = []
    while not reaped:
        wait_for_sigchld()
        reaped += kids.reap()
    _, status = real_waitpid(foreign, 0)
    second = {"reaped": reaped, "expected": [last], "foreign_status": os.waitstatus_to_exitcode(status)}
    for write_end in pipes.values():
        os.close(write_end)
    kids.stop_all()
    print(json.dumps({"first": first, "second": second}))
    """
)


def test_reaping_waits_once_per_ended_child_and_leaves_other_owners_children() -> None:
    script = subprocess.Popen(
        [sys.executable, "-c", REAP_SCRIPT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its children too are ended with it, whatever happens
    )
    try:
        out, err = script.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)
        script.wait(5)
    assert script.returncode == 0, err[-3000:]
    seen = json.loads(out)
    first, second = seen["first"], seen["second"]
    assert first["reaped"] == first["expected"], f"reap() returned {first['reaped']}, not the 2 that ended"
    assert first["waits"] == 2, f"{first['waits']} waitpid calls to reap 2 of 100 children (one per child is quadratic)"
    assert first["alive"] == 98
    assert second["reaped"] == second["expected"], "an ended child of another owner hid ours"
    assert second["foreign_status"] == 7, "reap() took a child that was not its own"
