"""A server the suite starts itself: own process group, READY line or port,
its output drained and capped, its end described, always reaped.

The child's environment is the suite's own, minus PYTHONUNBUFFERED: an
unbuffered stdout would hide a READY line that is never flushed.

One thread per process drains stdout and stderr in a single select loop from
start to kill, so a child that prints a lot never blocks on a full pipe, and
watches a pidfd so the moment of its exit is known without reaping it (the
suite's own ``poll``/``wait`` stay the only reapers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from .. import reaper
from ..escape import escape

READY_GRACE = 1.0  # seconds to wait for READY once the port accepts
READY = re.compile(rb"^READY cloudhash/1 (\S+) (\d+)(?: tls=(\d+))?\r?\n$")
READY_SHAPE = "READY cloudhash/1 <host> <port>[ tls=<port>]"
KEEP = 64 * 1024  # of each output stream: the first and the last this many bytes
# An exited target's last stderr lines may still be in the pipe; a grandchild may hold it open.
STDERR_GRACE = 1.0
READY_LINE_MAX = 512  # a READY line is far shorter; a longer line is only kept as output
STDERR_LINES = 10  # shown when a target dies or never gets ready
DRAIN_AFTER_KILL = 0.5  # seconds to collect what a killed group still had in its pipes
ADDRESS_IN_USE = (b"Address already in use", b"EADDRINUSE", b"Errno 98")


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
    def exit_report(self) -> str | None: ...


class TargetNotReady(Exception):
    """The target never announced itself or never accepted (a harness ERROR)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls_port: int | None = None


class CappedOutput:
    """What a stream carried: its first and last KEEP bytes, and how many
    between them were dropped. Appending costs time linear in the chunk."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        # Trim only once the tail is twice its size, so the copying stays linear overall.
        if len(self.tail) > 2 * self.keep:
            cut = len(self.tail) - self.keep
            self.dropped += cut
            del self.tail[:cut]

    def value(self) -> bytes:
        if not self.dropped:
            return bytes(self.head + self.tail)
        return bytes(self.head) + f"[... {self.dropped} bytes not kept ...]".encode() + bytes(self.tail)

    def last_lines(self, count: int = STDERR_LINES) -> list[str]:
        return last_lines(bytes(self.tail if self.tail else self.head), count)


def last_lines(data: bytes, count: int = STDERR_LINES) -> list[str]:
    """The last ``count`` non-empty lines, decoded for a person to read."""
    text = data.decode("utf-8", "replace")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-count:]


class _ReadyScanner:
    """Cuts stdout into lines until the READY line, looking at each byte once.
    Lines before READY go to ``before``; everything after it to ``after``."""

    def __init__(self) -> None:
        self.line = bytearray()  # the line in progress, up to READY_LINE_MAX bytes
        self.line_too_long = False
        self.ready: bytes | None = None
        self.before = CappedOutput()
        self.after = CappedOutput()

    def feed(self, chunk: bytes) -> None:
        start = 0
        while self.ready is None and start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            piece, start = chunk[start:stop], stop
            if self.line_too_long:
                self.before.add(piece)
            else:
                self.line += piece
                if len(self.line) > READY_LINE_MAX:  # not READY: kept only as output
                    self.before.add(bytes(self.line))
                    self.line.clear()
                    self.line_too_long = True
            if end < 0:
                continue
            if self.line_too_long:
                self.line_too_long = False
            elif READY.match(self.line):
                self.ready = bytes(self.line)
            else:
                self.before.add(bytes(self.line))
            self.line.clear()
        if self.ready is not None and start < len(chunk):
            self.after.add(chunk[start:])

    def unfinished(self) -> bytes:
        """Stdout printed before READY (or instead of it), including a line not yet ended."""
        return self.before.value() + bytes(self.line)

    def printed(self) -> int:
        """How many bytes came before READY (or instead of it)."""
        return self.before.total + len(self.line)


class ServerProcess:
    def __init__(self, argv: list[str] | str, *, cwd: str | None = None, announces_ready: bool = True) -> None:
        self.argv = argv
        self.cwd = cwd
        # False for a protocol without a READY line (RESP2): readiness is its port accepting.
        self.announces_ready = announces_ready
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_line: bytes | None = None
        self.exited_early = False  # it ended before it was ready
        self.stdout_extra = bytearray()  # anything printed before READY (capped)
        self._scanner = _ReadyScanner()
        self._stderr = CappedOutput()
        self._lock = threading.Lock()
        self._news = threading.Condition(self._lock)  # READY, or stdout's end
        self._stdout_ended = False
        self._stderr_ended = False
        self._drainer: threading.Thread | None = None
        self._stop_draining_at: float | None = None
        self._started_at = 0.0
        self._exited_at: float | None = None  # when the pidfd said so (the drainer's clock)
        self._killed_by_suite = False
        self._signals_sent: list[tuple[int, float]] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def command(self) -> str:
        return self.argv if isinstance(self.argv, str) else shlex.join(self.argv)

    def start(
        self,
        *,
        timeout: float = 10.0,
        expect_port: tuple[str, int] | None = None,
    ) -> Endpoint:
        """Start and wait for READY; failing that, for ``expect_port`` to accept."""
        self._started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.argv,
            shell=isinstance(self.argv, str),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so the whole tree can be reaped
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        )
        reaper.track(self.process.pid)  # the safety net, should this process die before kill()
        self._drainer = threading.Thread(target=self._drain, name=f"output of pid {self.process.pid}", daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + timeout
        port_seen_at: float | None = None
        while True:
            with self._news:  # woken by READY or by the exit; else a look at the port every 50 ms
                self._news.wait_for(lambda: self._scanner.ready is not None or self._exited_at is not None, 0.05)
                ready = self._scanner.ready
            if ready is not None:
                return self._announced(ready)
            if self.process.poll() is not None:
                self.exited_early = True
                self._await_stdout_end(0.5)  # what it printed just before it ended
                if self._scanner.ready is not None:
                    return self._announced(self._scanner.ready)
                raise TargetNotReady(self._not_ready(timeout, expect_port, port_seen_at))
            now = time.monotonic()
            if expect_port is not None and port_seen_at is None and _accepts(*expect_port):
                port_seen_at = now
            # A server that listens before it prints READY gets a moment to
            # print it; one that never prints it is taken at its port.
            if port_seen_at is not None and now - port_seen_at >= READY_GRACE:
                assert expect_port is not None
                self._keep_stdout_before_ready()
                return Endpoint(*expect_port)
            if now >= deadline:
                break
        reason = self._not_ready(timeout, expect_port, port_seen_at)
        self.kill()
        raise TargetNotReady(reason)

    def _announced(self, line: bytes) -> Endpoint:
        match = READY.match(line)
        assert match is not None
        self.ready_line = line
        self._keep_stdout_before_ready()
        tls = match.group(3)
        return Endpoint(match.group(1).decode(), int(match.group(2)), int(tls) if tls else None)

    def _keep_stdout_before_ready(self) -> None:
        with self._lock:
            scanner = self._scanner
            self.stdout_extra = bytearray(scanner.before.value() if self.ready_line else scanner.unfinished())

    def _await_stdout_end(self, timeout: float) -> None:
        with self._news:
            self._news.wait_for(lambda: self._scanner.ready is not None or self._stdout_ended, timeout)

    # ---- the drainer ---------------------------------------------------------------

    def _drain(self) -> None:
        """Read stdout and stderr until both end (or a while after kill), noting the exit."""
        assert self.process is not None and self.process.stdout and self.process.stderr
        streams = {self.process.stdout.fileno(): "stdout", self.process.stderr.fileno(): "stderr"}
        # poll, not select: a check may hold a thousand sockets, and select cannot watch fds above 1023.
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        pidfd: int | None = None
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(self.process.pid)
            poller.register(pidfd, select.POLLIN)
        try:
            while streams:
                stop_at = self._stop_draining_at
                if stop_at is not None and time.monotonic() >= stop_at:
                    break
                for fd, _ in poller.poll(50):
                    if fd == pidfd:
                        with self._news:
                            self._note_exit()
                            self._news.notify_all()
                        poller.unregister(pidfd)
                        os.close(pidfd)
                        pidfd = None
                        continue
                    chunk = os.read(fd, 65536)
                    self._take(streams[fd], chunk)
                    if not chunk:
                        poller.unregister(fd)
                        del streams[fd]
        finally:
            if pidfd is not None:
                os.close(pidfd)
            self._take("stdout", b"")
            self.process.stdout.close()
            self.process.stderr.close()

    def _take(self, stream: str, chunk: bytes) -> None:
        with self._news:
            if stream == "stderr":
                self._stderr.add(chunk)
                self._stderr_ended = self._stderr_ended or not chunk
            elif chunk:
                self._scanner.feed(chunk)
            else:
                self._stdout_ended = True
            self._news.notify_all()

    # ---- what checks use -----------------------------------------------------------

    def collect_stdout(self) -> bytes:
        """Everything the target printed besides READY, as far as it has arrived
        (what came before READY first; the first and last 64 KiB of each part).
        What is already in the pipe counts as arrived: the drainer is given a
        moment to take it, so a line printed just before the call is never missed."""
        self._catch_up()
        with self._lock:
            if self.ready_line is not None:
                return bytes(self.stdout_extra) + self._scanner.after.value()
            text = self._scanner.unfinished()
            if self._scanner.ready is not None:  # READY came after the suite took the port
                text += self._scanner.ready + self._scanner.after.value()
            return text

    def _catch_up(self, deadline: float = STDERR_GRACE) -> None:
        """Wait (with a deadline) until the drainer has read what the pipe holds now."""
        if self.process is None or self.process.stdout is None:
            return
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            try:
                pending = struct.unpack("i", fcntl.ioctl(self.process.stdout.fileno(), termios.FIONREAD, b"\0" * 4))[0]
            except (OSError, ValueError):  # closed: the drainer has finished
                return
            if not pending:
                return
            with self._news:
                self._news.wait(0.02)

    def send_signal(self, signum: int) -> None:
        """To the process the suite started (not its group)."""
        assert self.process is not None
        if self.process.poll() is None:
            self._signals_sent.append((signum, time.monotonic()))
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
        """Kill the whole process group, reap the leader and stop draining. Safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._killed_by_suite = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        reaper.untrack(self.process.pid)
        if self._drainer is not None:
            # The pipes end when the group is gone; a descendant that left the group may
            # hold them open, so the drainer stops after a short while regardless.
            self._stop_draining_at = time.monotonic() + DRAIN_AFTER_KILL
            self._drainer.join(DRAIN_AFTER_KILL + 1.0)

    def stderr_tail(self, limit: int = 2000) -> bytes:
        with self._lock:
            return self._stderr.value()[-limit:]

    def stderr_lines(self, count: int = STDERR_LINES) -> list[str]:
        """The last lines of standard error, decoded for a person."""
        with self._lock:
            return self._stderr.last_lines(count)

    def exit_report(self) -> str | None:
        """How the target ended, with its last stderr lines; None while it runs
        and when the suite ended it (the kill at the end of a check)."""
        if self.process is None or self.process.poll() is None or self._killed_by_suite:
            return None
        with self._news:  # its last words may still be in the pipe: wait for the end of stderr, briefly
            ended = self._note_exit()
            self._news.wait_for(lambda: self._stderr_ended, timeout=STDERR_GRACE)
        status = describe_status(self.process.returncode)
        text = f"the server {status} {ended - self._started_at:.1f} s after it started"
        caused = [(signum, at) for signum, at in self._signals_sent if at <= ended]
        if caused:
            signum, at = caused[-1]
            text += f", {max(0.0, ended - at):.1f} s after the suite sent it {signal.Signals(signum).name}"
        return text + "." + stderr_paragraph(self.stderr_lines())

    def _note_exit(self) -> float:
        """When the target ended, fixed by whoever sees it first (the drainer's
        pidfd, or a report that reaped it before): every later report gives the
        same time, so the explanations of one exit group as one. Hold _news."""
        if self._exited_at is None:
            self._exited_at = time.monotonic()
        return self._exited_at

    # ---- why it is not ready ---------------------------------------------------------

    def _not_ready(self, timeout: float, expect_port: tuple[str, int] | None, port_seen_at: float | None) -> str:
        assert self.process is not None
        status = self.process.poll()
        port = f"accepted on port {expect_port[1]}" if expect_port else "accepted connections"
        if status is None:
            never = f" and never {port}" if expect_port and port_seen_at is None else ""
            what = f"is still running after {timeout:.1f} s, never printed READY{never}"
            if not self.announces_ready:
                what = f"is still running after {timeout:.1f} s and never {port}"
        else:
            with self._news:
                ended = self._note_exit() - self._started_at
            before = "printed READY" if self.announces_ready else port
            what = f"{describe_status(status)} {ended:.1f} s after it started, before it {before}"
        with self._lock:
            printed, total = self._scanner.unfinished(), self._scanner.printed()
        if printed:
            stdout = f"; its standard output instead was {total} bytes: {_beginning_and_end(printed)}"
        else:
            stdout = "; it printed nothing on standard output"
        if not self.announces_ready:
            return f"the target `{self.command}` {what}{stdout}." + stderr_paragraph(self.stderr_lines())
        return (
            f"the target `{self.command}` {what}. It should print `{READY_SHAPE}` and LF on standard output "
            f"once it accepts connections{stdout}." + stderr_paragraph(self.stderr_lines())
        )

    def failed_on_a_taken_port(self) -> bool:
        """Whether it ended before READY saying its address was in use (another program
        may have taken a port between the suite choosing it and the target binding it)."""
        tail = self.stderr_tail(4000)
        return self.exited_early and any(sign in tail for sign in ADDRESS_IN_USE)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


STATUS_MEANINGS = {
    2: "usually a command-line error: does the server accept every flag in the command?",
    126: "the shell found the command but could not execute it",
    127: "the shell did not find the command",
}


def describe_status(status: int) -> str:
    """'exited with status 3', 'was killed by signal 11 (SIGSEGV)', with what a status usually means."""
    if status < 0:
        return f"was killed by signal {-status} ({_signal_name(-status)})"
    text = f"exited with status {status}"
    if status in STATUS_MEANINGS:
        text += f" ({STATUS_MEANINGS[status]})"
    elif 128 < status < 128 + 65 and _signal_name(status - 128) != "unknown signal":
        text += f" (128 + {status - 128}, the code a shell or container gives for signal {_signal_name(status - 128)})"
    return text


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def stderr_paragraph(lines: list[str]) -> str:
    """The target's last stderr lines, on lines of their own (the first line of a
    report stays one sentence, fit for a summary)."""
    if not lines:
        return "\nIt wrote nothing on standard error."
    return "\nIts standard error ended with:\n" + "\n".join(f"  | {line}" for line in lines)


def _beginning_and_end(data: bytes, each: int = 150) -> str:
    """Escaped, and only the beginning and the end of a long output (where a banner and an error would be)."""
    if len(data) <= 3 * each:
        return f"'{escape(data, 3 * each)}'"
    return f"'{escape(data[:each], each)}' … '{escape(data[-each:], each)}'"


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
