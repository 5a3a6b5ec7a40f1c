"""A server the suite starts itself: own process group, READY line or port,
always reaped.

The child's environment is the suite's own, minus PYTHONUNBUFFERED: an
unbuffered stdout would hide a READY line that is never flushed.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Protocol

READY_GRACE = 1.0  # seconds to wait for READY once the port accepts
READY = re.compile(rb"^READY cloudhash/1 (\S+) (\d+)(?: tls=(\d+))?\r?\n$")


class ServerHandle(Protocol):
    """What checks may do with a server the suite started: a local process
    (ServerProcess) or a container (ContainerProcess)."""

    ready_line: bytes | None
    stdout_extra: bytearray

    @property
    def pid(self) -> int: ...  # on this host, so psutil can see its process tree

    def collect_stdout(self) -> bytes: ...
    def send_signal(self, signum: int) -> None: ...
    def wait(self, timeout: float) -> int | None: ...
    def terminate(self, timeout: float) -> int | None: ...
    def kill(self) -> None: ...


class TargetNotReady(Exception):
    """The target never announced itself or never accepted (a harness ERROR)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls_port: int | None = None


class ServerProcess:
    def __init__(self, argv: list[str] | str, *, cwd: str | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_line: bytes | None = None
        self.exited_early = False  # it ended before it was ready
        self.stdout_extra = bytearray()  # anything printed besides READY
        self._stdout_buffer = bytearray()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(
        self,
        *,
        timeout: float = 10.0,
        expect_port: tuple[str, int] | None = None,
    ) -> Endpoint:
        """Start and wait for READY; failing that, for ``expect_port`` to accept."""
        self.process = subprocess.Popen(
            self.argv,
            shell=isinstance(self.argv, str),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,  # its own process group, so the whole tree can be reaped
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        port_seen_at: float | None = None
        while time.monotonic() < deadline:
            line = self._read_line(min(deadline, time.monotonic() + 0.05))
            if line is not None:
                match = READY.match(line)
                if match:
                    self.ready_line = line
                    host = match.group(1).decode()
                    tls = match.group(3)
                    return Endpoint(host, int(match.group(2)), int(tls) if tls else None)
                self.stdout_extra += line
            if self.process.poll() is not None:
                self.exited_early = True
                raise TargetNotReady(
                    f"the target exited with status {self.process.returncode} before it was ready; "
                    f"stderr: {self.stderr_tail()!r}"
                )
            if expect_port is not None and port_seen_at is None and _accepts(*expect_port):
                port_seen_at = time.monotonic()
            # A server that listens before it prints READY gets a moment to
            # print it; one that never prints it is taken at its port.
            if port_seen_at is not None and time.monotonic() - port_seen_at >= READY_GRACE:
                assert expect_port is not None
                return Endpoint(*expect_port)
        self.kill()
        raise TargetNotReady(f"no READY line and no listening port within {timeout:.1f} s")

    def _read_line(self, until: float) -> bytes | None:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._stdout_buffer:
            left = until - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._stdout_buffer += chunk
        line, _, rest = bytes(self._stdout_buffer).partition(b"\n")
        self._stdout_buffer = bytearray(rest)
        return line + b"\n"

    def collect_stdout(self) -> bytes:
        """Everything the target printed after READY, as far as it has arrived."""
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(BlockingIOError, OSError, ValueError):
                while chunk := os.read(self.process.stdout.fileno(), 65536):
                    self._stdout_buffer += chunk
        return bytes(self.stdout_extra + self._stdout_buffer)

    def send_signal(self, signum: int) -> None:
        """To the process the suite started (not its group)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after ``timeout``."""
        assert self.process is not None
        try:
            return self.process.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then the exit status (None if not exited within ``timeout``)."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """Kill the whole process group and reap the leader. Safe to call twice."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.collect_stdout()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stderr_tail(self, limit: int = 2000) -> bytes:
        self._stderr.seek(0)
        return self._stderr.read()[-limit:]

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._stderr.close()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held at once
    while choosing, so two calls in a row cannot hand out the same one)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
