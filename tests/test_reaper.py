"""The safety net for process groups (suite/reaper.py), with real processes:
what is recorded is killed by the sweep, a pid reused by a stranger is not,
and a group started after the sweep does not outlive the run."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from suite import reaper

# A leader that starts a child in its own group, then waits: the sweep must take both.
WAITER = "import signal; signal.pause()"
FAMILY = f"import signal, subprocess, sys; subprocess.Popen([sys.executable, '-c', {WAITER!r}]); signal.pause()"


@pytest.fixture
def run_directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(reaper.ENVIRONMENT, raising=False)
    monkeypatch.delenv(reaper.HANDED_DOWN, raising=False)
    directory = reaper.open_run()
    yield directory
    reaper.sweep(directory)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait(5)


def _start(started: list[subprocess.Popen[bytes]], code: str = FAMILY) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    started.append(process)
    return process


def _group(pgid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def _wait_for(condition: object, deadline: float, what: str) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)  # polling a condition, with a deadline
    raise AssertionError(f"timed out after {deadline} s waiting for {what}")


def test_the_sweep_kills_every_recorded_group_with_its_children(
    run_directory: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    leader = _start(started)
    reaper.track(leader.pid)
    _wait_for(lambda: len(_group(leader.pid)) == 2, 10, "the leader's child to start")
    assert (run_directory / str(leader.pid)).is_file()

    killed = reaper.sweep(run_directory)

    assert killed == [leader.pid]
    leader.wait(5)  # ours to reap: the sweep kills, the parent reaps
    _wait_for(lambda: not _group(leader.pid), 10, "the leader's child to be gone too")
    assert not run_directory.exists()
    assert reaper.ENVIRONMENT not in os.environ


def test_a_record_whose_pid_now_belongs_to_another_process_is_left_alone(
    run_directory: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    stranger = _start(started, WAITER)
    # A record of an earlier process that had this pid: another start time.
    (run_directory / str(stranger.pid)).write_text(repr(psutil.Process(stranger.pid).create_time() - 100.0))

    assert reaper.sweep(run_directory) == []
    assert stranger.poll() is None, "the sweep killed a process it never started"


def test_an_untracked_group_is_the_owners_business(run_directory: Path, started: list[subprocess.Popen[bytes]]) -> None:
    leader = _start(started, WAITER)
    reaper.track(leader.pid)
    reaper.untrack(leader.pid)

    assert reaper.sweep(run_directory) == []
    assert leader.poll() is None


def test_a_group_started_after_the_run_was_swept_goes_at_once(
    run_directory: Path, started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker still starting a server while its controller has already swept:
    # it still names the run's directory in its environment, and the directory is gone.
    reaper.sweep(run_directory)
    monkeypatch.setenv(reaper.ENVIRONMENT, str(run_directory))
    leader = _start(started)

    reaper.track(leader.pid)

    assert leader.wait(5) == -9
    _wait_for(lambda: not _group(leader.pid), 10, "the whole group to be gone")


def test_without_a_run_tracking_does_nothing(
    started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(reaper.ENVIRONMENT, raising=False)
    leader = _start(started, WAITER)

    reaper.track(leader.pid)

    assert leader.poll() is None


def _land_in_a_gc_callback(signum: signal.Signals, landed: list[str]) -> None:
    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and not landed:
            landed.append("gc callback")
            os.kill(os.getpid(), signum)  # its handler runs here, at the callback's next instruction

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)


def _land_in_a_finalizer(signum: signal.Signals, landed: list[str]) -> None:
    class Finalized:
        def __del__(self) -> None:
            landed.append("finalizer")
            os.kill(os.getpid(), signum)  # its handler runs here, inside __del__

    Finalized()  # dropped at once


@pytest.mark.parametrize("land", [_land_in_a_gc_callback, _land_in_a_finalizer], ids=["gc-callback", "finalizer"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_an_interrupt_that_lands_where_it_cannot_propagate_is_raised_after(
    signum: signal.Signals,
    land: Callable[[signal.Signals, list[str]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Raised inside a finalizer or a garbage collector's callback (Hypothesis keeps one),
    # an interrupt cannot propagate: Python prints "Exception ignored" and it is lost.
    unraisable: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    reaper.interrupts_survive_finalizers()  # over the recorder; monkeypatch puts the hook back
    # The signals this process received, as the reports read them: this one must not make
    # the project's own test run look interrupted (exit 130) once it is over.
    monkeypatch.setattr(reaper, "_received", [])
    landed: list[str] = []
    previous = reaper.interrupts_unwind()
    try:
        with pytest.raises(KeyboardInterrupt):
            land(signum, landed)
            threading.Event().wait(10)  # the interrupt ends this wait, or it was lost
    finally:
        reaper.restore_handlers(previous)
    assert len(landed) == 1, f"the signal was sent {len(landed)} times"
    assert unraisable == [], f"the interrupt was dropped: {unraisable[0].exc_type}"
    assert reaper.interrupted_by() == signum.name
