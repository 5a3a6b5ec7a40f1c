"""A server the suite runs in a container on its own bridge network.

The suite reaches it by the container's IP, never through a published port:
the userland proxy behind published ports drops TCP urgent data. It behaves
like ServerProcess (READY from the container's stdout, SIGTERM to the server
as PID 1, kill and remove), and its ``pid`` is the server's pid on the host,
so process-tree checks work on it unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import signal
import threading
from typing import Any

from ..docker.engine import is_remote
from ..escape import escape
from ..probe import Unsupported
from .process import (
    READY,
    READY_SHAPE,
    CappedOutput,
    Endpoint,
    TargetNotReady,
    describe_status,
    last_lines,
    stderr_paragraph,
)

CERTS_MOUNT = "/certs"


class ContainerProcess:
    def __init__(
        self,
        engine: Any,
        image: str,
        command: list[str],
        *,
        network: str,
        labels: dict[str, str],
        mounts: dict[str, str] | None = None,  # host path -> container path, read-only
        name: str | None = None,
        workdir: str | None = None,
    ) -> None:
        self.engine = engine
        self.image = image
        self.command = command
        self.network = network
        self.labels = labels
        self.mounts = mounts or {}
        self.name = name
        self.workdir = workdir
        self.container: Any = None
        self.ready_line: bytes | None = None
        self.stdout_extra = bytearray()
        self._stdout_seen = 0
        self._out = CappedOutput()  # stdout: its first and last 64 KiB
        self._killed_by_suite = False
        self._signals_sent: list[int] = []
        self._last_words: tuple[dict[str, Any], bytes] | None = None  # state and stderr, kept at removal
        self._lock = threading.Lock()
        self._line_or_end = threading.Event()

    @property
    def pid(self) -> int:
        """The server's pid on this machine; a remote engine's processes are not here to watch."""
        remote = is_remote()
        if remote:
            raise Unsupported(
                f"the server runs on a remote Docker engine (DOCKER_HOST={remote}): its processes are on that "
                "machine, so the suite cannot watch its process tree"
            )
        self.container.reload()
        return int(self.container.attrs["State"]["Pid"])

    def ip(self) -> str:
        self.container.reload()
        return str(self.container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    def start(self, *, timeout: float = 30.0, expect_port: tuple[str, int] | None = None) -> Endpoint:
        self.container = self.engine.containers.run(
            self.image,
            self.command,
            detach=True,
            network=self.network,
            labels=self.labels,
            name=self.name,
            volumes={host: {"bind": inside, "mode": "ro"} for host, inside in self.mounts.items()},
            working_dir=self.workdir,
        )
        reader = threading.Thread(target=self._read_stdout, name=f"stdout of {self.image}", daemon=True)
        reader.start()
        if not self._line_or_end.wait(timeout):
            raise TargetNotReady(self._not_ready(f"printed no line on standard output within {timeout:.1f} s"))
        with self._lock:
            first, newline, _ = self._out.value().partition(b"\n")
        match = READY.match(first + b"\n") if newline else None
        if match is None:
            self.stdout_extra += first
            if not newline:
                raise TargetNotReady(self._not_ready("ended before it printed READY"))
            raise TargetNotReady(self._not_ready(f"printed a first line that is not READY: '{escape(first, 200)}'"))
        self.ready_line = first + b"\n"
        self._stdout_seen = len(self.ready_line)
        tls = match.group(3)
        return Endpoint(self.ip(), int(match.group(2)), int(tls) if tls else None)

    def _read_stdout(self) -> None:
        """Follow the container's stdout until it ends (the engine closes the stream)."""
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=False):
                with self._lock:
                    self._out.add(chunk)
                if b"\n" in chunk:  # only the new bytes: the scan stays linear
                    self._line_or_end.set()
        except Exception:  # the container was removed under us: the stream just ends
            pass
        finally:
            self._line_or_end.set()

    def collect_stdout(self) -> bytes:
        """Everything the server printed after READY, as far as it has arrived."""
        with self._lock:
            return bytes(self.stdout_extra) + self._out.value()[self._stdout_seen :]

    def send_signal(self, signum: int) -> None:
        """To the server, PID 1 of the container."""
        self._signals_sent.append(int(signum))
        with contextlib.suppress(Exception):
            self.container.kill(signal=int(signum))

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after ``timeout``."""
        try:
            result = self.container.wait(timeout=max(timeout, 0.001))
        except Exception:
            return None
        return int(result.get("StatusCode", -1))

    def terminate(self, timeout: float) -> int | None:
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.container is not None:
            state = self._state()
            self._killed_by_suite = self._killed_by_suite or bool(state.get("Running", False))
            if state and not self._killed_by_suite and self._last_words is None:
                # It ended on its own: keep how, since removing the container forgets it.
                self._last_words = (state, self.stderr_tail(8000))
            with contextlib.suppress(Exception):
                self.container.remove(force=True)

    def stderr_tail(self, limit: int = 2000) -> bytes:
        with contextlib.suppress(Exception):
            return bytes(self.container.logs(stdout=False, stderr=True))[-limit:]
        return b""

    def _state(self) -> dict[str, Any]:
        try:
            self.container.reload()
            return dict(self.container.attrs["State"])
        except Exception:  # removed already
            return {}

    def exit_report(self) -> str | None:
        """How the server ended, with its last stderr lines; None while it runs and
        when the suite ended it (the removal at the end of a check)."""
        if self.container is None or self._killed_by_suite:
            return None
        state, stderr = self._last_words or (self._state(), b"")
        if not state or state.get("Running") or state.get("Status") == "created":
            return None
        stderr = stderr or self.stderr_tail(8000)
        text = f"the server {describe_status(int(state.get('ExitCode', -1)))}"
        lasted = _seconds_between(state.get("StartedAt", ""), state.get("FinishedAt", ""))
        if lasted is not None:
            text += f" {lasted:.1f} s after it started"
        if self._signals_sent:
            text += f", after the suite sent it {signal.Signals(self._signals_sent[-1]).name}"
        if state.get("OOMKilled"):
            text += " (the kernel killed it for want of memory)"
        return text + "." + stderr_paragraph(last_lines(stderr))

    def _not_ready(self, what: str) -> str:
        state = self._state()
        if state and not state.get("Running") and state.get("Status") != "created":
            what += f"; it {describe_status(int(state.get('ExitCode', -1)))}"
        return (
            f"the container of {self.image} running `{' '.join(self.command)}` {what}. Its first line on standard "
            f"output should be `{READY_SHAPE}`." + stderr_paragraph(last_lines(self.stderr_tail(8000)))
        )

    def __enter__(self) -> ContainerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _seconds_between(started: str, finished: str) -> float | None:
    """Docker's RFC 3339 times (nanoseconds, Z) apart, or None if either is missing."""
    try:
        times = [datetime.datetime.fromisoformat(t[:26].rstrip("Z") + "+00:00") for t in (started, finished)]
    except ValueError:
        return None
    return (times[1] - times[0]).total_seconds()
