"""A threaded server whose SIGINT is taken by a connection's thread: the reference
thread-per-connection server with the stop signals left open in its connection
threads (the usual mistake) and without the reference's wakeup fd (stop.py), and
SIGINT blocked in its main thread so that the kernel must pick another thread,
every time. An unfixed threaded Python server
meets this now and then; here it is certain. Its handler never runs, the main
thread sleeps on, and CH-LIFE-9 must fail and point at the threads."""

import runpy
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from reference_servers.runtime import stop


def _start_open_to_signals(thread: threading.Thread) -> None:
    run = thread.run

    def run_open_to_signals() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        run()

    thread.run = run_open_to_signals  # type: ignore[method-assign]
    thread.start()


def _install_as_a_student_would(self: stop.StopSignal) -> None:
    install(self)
    signal.set_wakeup_fd(-1)  # the reference's C-level wakeup would hide the mistake


install = stop.StopSignal.install
stop.StopSignal.install = _install_as_a_student_would  # type: ignore[method-assign]
stop.start_thread = _start_open_to_signals
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
sys.argv = ["reference_servers", "thread-per-connection", *sys.argv[1:]]
runpy.run_module("reference_servers", run_name="__main__")
