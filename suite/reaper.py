"""Every process group the run starts, written down so that none outlives it.

Each server or client the suite starts leads its own process group. Its
owner kills the group when done with it; this module is the safety net for
when the owner cannot: an xdist worker killed on a cancelled CI job, a
KeyboardInterrupt between two lines. The controller makes a directory for
the run and names it in the environment, so its xdist workers (started
after it) share it; each group leader is recorded there as a file named by
its pid, holding its start time so that a reused pid is never killed. The
controller sweeps the directory when the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ENVIRONMENT = "SOCKSPEC_PROCESS_GROUPS"


def open_run() -> Path:
    """Called once by the process that owns the run (the controller)."""
    directory = Path(tempfile.mkdtemp(prefix="sockspec-groups-"))
    os.environ[ENVIRONMENT] = str(directory)
    return directory


def _directory() -> Path | None:
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value and Path(value).is_dir() else None


def track(pid: int) -> None:
    """Record a group leader the caller has just started."""
    directory = _directory()
    if directory is None:
        return
    with contextlib.suppress(psutil.Error, OSError):
        (directory / str(pid)).write_text(repr(psutil.Process(pid).create_time()))


def untrack(pid: int) -> None:
    """The caller has killed and reaped this group itself."""
    directory = _directory()
    if directory is not None:
        with contextlib.suppress(OSError):
            (directory / str(pid)).unlink()


def sweep(directory: Path, deadline: float = 5.0) -> list[int]:
    """Kill every recorded group still alive, wait (with a deadline) for the
    leaders to be gone, and remove the directory. Returns the pids killed."""
    killed: list[int] = []
    for record in list(directory.glob("*")) if directory.is_dir() else []:
        pid = int(record.name) if record.name.isdigit() else None
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error, ValueError, OSError):
            if repr(psutil.Process(pid).create_time()) == record.read_text():
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
    until = time.monotonic() + deadline
    for pid in killed:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(max(0.0, until - time.monotonic()))
    shutil.rmtree(directory, ignore_errors=True)
    if os.environ.get(ENVIRONMENT) == str(directory):
        del os.environ[ENVIRONMENT]
    return killed


def terminate_as_interrupt() -> Any:
    """Make SIGTERM unwind like Ctrl-C, so that every cleanup on the way out
    runs. Returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def restore_terminate(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
