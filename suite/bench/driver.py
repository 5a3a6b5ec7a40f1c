"""The load generator's worker process: it holds its share of a cell's
connections and drives them, closed-loop, as fast as the server answers.

``suite.bench.drivers`` starts several of these (``python -m
suite.bench.driver``, each in its own process group), so that the client
side is not one Python thread racing a server on the other core. Each reads
one operation per line on standard input (JSON) and answers it with one JSON
line on standard output; it ends at the end of its input.

- ``open``: connect ``count`` connections to ``host:port`` (non-blocking
  connects, at most ``window`` in flight; with ``confirm``, a connection counts
  as open only once that exchange was answered, which C10K uses as its PING);
- ``run``: one cell. From the shared clock time ``start`` every connection
  sends ``depth`` requests in one write and sends the next ``depth`` only when
  all their replies are in (pipelining depth 1 is request-reply), until ``end``
  or ``max_requests``. Replies after ``end`` are drained, not counted. A
  connection still waiting after the drain (the server has not served it
  yet: it sits in the accept queue of a server whose workers are all taken,
  or behind a slow fork) stays open and owes its replies: it rejoins the
  loop, in whatever cell, once they have come, each checked against what was
  asked of it. It is never replaced: a replacement would queue behind it;
- ``ask_each``: one exchange on every connection at once, each answered or not;
- ``churn``: ``slots`` connections at a time, each connect, one exchange, close;
- ``close``: close every connection.

Replies are checked, not only counted: a fixed reply (``+PONG``) by comparing
the bytes of a whole run of replies at once, a varying one (INCR's integer)
with a regular expression over the run; when that fails the replies are
split one by one (by line, or by the RESP2 grammar) and every one that is not
the expected reply is an error, the first of them kept as an example.

Latency is the time from the write that carried a request to the read that
completed its reply (with pipelining, a batch's requests share the write).
Standard library only (and suite.profiles.resp, for splitting unexpected
RESP2 replies), so that it starts quickly.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import re
import resource
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..profiles import resp
from .latency import Histogram, bucket

QUIET = 0.1  # seconds without any reply after which a drain stops waiting
RECV_SIZE = 65536
EXAMPLE_LIMIT = 80  # bytes of an unexpected reply kept as the example
DESCRIPTOR_MARGIN = 64  # descriptors a driver needs besides its connections

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class Expectation:
    """The reply every request of a cell must get, and how to count replies fast."""

    def __init__(self, op: dict[str, Any]) -> None:
        self.exact: bytes | None = _decoded(op["reply"]) if op.get("reply") is not None else None
        pattern = _decoded(op["pattern"]) if op.get("pattern") is not None else None
        self.one = re.compile(pattern if pattern is not None else re.escape(self.exact or b""))
        self.many = re.compile(b"(?:" + self.one.pattern + b")+")
        self.lines = int(op.get("lines", 1))  # LFs in one reply
        self.framing = str(op.get("framing", "line"))  # how to split replies that are not the expected ones
        depth = int(op.get("depth", 1))
        self.runs = [self.exact * count for count in range(depth + 1)] if self.exact is not None else []

    def take(self, buffer: bytes) -> tuple[int, int, bytes, bytes | None]:
        """(good replies, bad replies, the bytes left over, an example of a bad reply)."""
        exact = self.exact
        if exact is not None:
            count = len(buffer) // len(exact)
            if count < len(self.runs) and buffer[: count * len(exact)] == self.runs[count]:
                return count, 0, buffer[count * len(exact) :], None
        else:
            last = buffer.rfind(b"\n")
            if last < 0:
                return 0, 0, buffer, None
            if self.many.fullmatch(buffer, 0, last + 1):
                return buffer.count(b"\n", 0, last + 1) // self.lines, 0, buffer[last + 1 :], None
        return self._one_by_one(buffer)

    def _one_by_one(self, buffer: bytes) -> tuple[int, int, bytes, bytes | None]:
        good = bad = offset = 0
        example: bytes | None = None
        while True:
            end = self._reply_end(buffer, offset)
            if end is None:
                return good, bad, buffer[offset:], example
            reply = buffer[offset:end]
            if (self.exact is not None and reply == self.exact) or (self.exact is None and self.one.fullmatch(reply)):
                good += 1
            else:
                bad += 1
                example = example or reply[:EXAMPLE_LIMIT]
            offset = end

    def _reply_end(self, buffer: bytes, offset: int) -> int | None:
        if self.framing == "resp":
            try:
                return resp.parse(buffer, offset)[1]
            except resp.Incomplete:
                return None
            except resp.Malformed:
                pass  # not RESP2 at all: taken a line at a time, as below
        end = buffer.find(b"\n", offset)
        return None if end < 0 else end + 1


class Connection:
    __slots__ = ("answered", "buffer", "expectation", "outstanding", "sent_at", "sock", "unsent")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""  # received, not yet a whole reply
        self.outstanding = 0  # requests sent and not yet answered
        self.expectation: Expectation | None = None  # what those requests must get
        self.sent_at = 0.0
        self.answered = 0  # replies in the current cell's window
        self.unsent = b""  # the rest of a write the socket did not take at once

    def take(self, data: bytes) -> tuple[int, int, bytes | None]:
        """(good replies, bad replies, an example of a bad one) that ``data`` completes."""
        if self.expectation is None:  # nothing was asked: whatever it is, it is wrong
            return 0, 1, data[:EXAMPLE_LIMIT]
        good, bad, self.buffer, example = self.expectation.take(self.buffer + data if self.buffer else data)
        self.outstanding -= good + bad
        return good, bad, example


class Driver:
    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.connections: dict[int, Connection] = {}
        self.host = "127.0.0.1"
        self.port = 0

    # ---- operations ----------------------------------------------------------------

    def open(self, op: dict[str, Any]) -> dict[str, Any]:
        self.host, self.port = str(op["host"]), int(op["port"])
        count = int(op["count"])
        limit = _raise_descriptor_limit(count + len(self.connections) + DESCRIPTOR_MARGIN)
        if limit is not None:
            return {"error": limit}
        confirm = Expectation(op["confirm"]) if op.get("confirm") else None
        request = _decoded(op["confirm"]["request"]) if op.get("confirm") else b""
        opened, failures, histogram = self._connect(
            count, int(op.get("window", 256)), confirm, request, time.monotonic() + float(op["timeout"])
        )
        return {"opened": opened, "failures": failures, "histogram": histogram, "open": len(self.connections)}

    def run(self, op: dict[str, Any]) -> dict[str, Any]:
        expectation = Expectation(op)
        depth = int(op["depth"])
        batch = _decoded(op["request"]) * depth
        start, end = float(op["start"]), float(op["end"])
        budget = int(op["max_requests"])
        histogram: Histogram = {}
        counts = {"sent": 0, "replies": 0, "errors": 0, "late": 0, "closed": 0}
        example: list[bytes] = []
        connections = self.connections
        for each in connections.values():
            each.answered = 0
        _wait_until(start)
        for idle in list(connections.values()):
            if idle.outstanding <= 0 and counts["sent"] + depth <= budget:
                self._send(idle, batch, time.monotonic(), depth, expectation)
                counts["sent"] += depth
        last_reply = start
        counted_out = False  # the count bound was reached before the time bound
        monotonic = time.monotonic
        readings = self._readings
        while (now := monotonic()) < end:
            for _, connection, data in readings(end - now):
                if data is None:
                    counts["closed"] += 1
                    continue
                owed_from_before = connection.expectation is not expectation
                good, bad, wrong = connection.take(data)
                answered = good + bad
                if not answered:
                    continue
                at = monotonic()
                if at >= end or owed_from_before:
                    counts["late"] += answered  # a reply to an earlier cell, or after this one
                else:
                    if wrong is not None and not example:
                        example.append(wrong)
                    key = bucket(at - connection.sent_at)
                    histogram[key] = histogram.get(key, 0) + answered
                    counts["replies"] += good
                    counts["errors"] += bad
                    connection.answered += answered
                    last_reply = at
                if connection.outstanding <= 0 and at < end and counts["sent"] + depth <= budget:
                    self._send(connection, batch, at, depth, expectation)
                    counts["sent"] += depth
            if counts["sent"] + depth > budget and all(c.outstanding <= 0 for c in connections.values()):
                counted_out = True  # every request the count allowed has been answered
                break
        counts["late"] += self._drain(float(op.get("drain", 1.0)))
        return {
            **counts,
            "histogram": histogram,
            "elapsed": (last_reply if counted_out else end) - start,
            "starved": sum(1 for c in connections.values() if c.answered == 0),
            "owing": sum(1 for c in connections.values() if c.outstanding > 0),
            "example": _encoded(example[0]) if example else None,
            "open": len(connections),
        }

    def ask_each(self, op: dict[str, Any]) -> dict[str, Any]:
        """One request on every connection that owes nothing, and each one's reply."""
        expectation = Expectation(op)
        request = _decoded(op["request"])
        deadline = time.monotonic() + float(op["timeout"])
        histogram: Histogram = {}
        counts = {"answered": 0, "errors": 0, "closed": 0}
        example: list[bytes] = []
        waiting = {fd for fd, c in self.connections.items() if c.outstanding <= 0}
        not_asked = len(self.connections) - len(waiting)  # still owing an earlier reply
        now = time.monotonic()
        for fd in waiting:
            self._send(self.connections[fd], request, now, 1, expectation)
        while waiting and (now := time.monotonic()) < deadline:
            for fd, connection, data in self._readings(deadline - now):
                if fd not in waiting:
                    continue
                if data is None:
                    counts["closed"] += 1
                    waiting.discard(fd)
                    continue
                good, bad, wrong = connection.take(data)
                if good + bad:
                    _count(histogram, time.monotonic() - connection.sent_at)
                    counts["answered"] += good
                    counts["errors"] += bad
                    waiting.discard(fd)
                    if wrong is not None and not example:
                        example.append(wrong)
        return {
            **counts,
            "unanswered": len(waiting) + not_asked,
            "histogram": histogram,
            "example": _encoded(example[0]) if example else None,
        }

    def churn(self, op: dict[str, Any]) -> dict[str, Any]:
        """Connect, one exchange, close, and again, ``slots`` at a time."""
        self.host, self.port = str(op["host"]), int(op["port"])
        expectation = Expectation(op)
        request = _decoded(op["request"])
        start, end, budget = float(op["start"]), float(op["end"]), int(op["max_requests"])
        histogram: Histogram = {}
        counts = {"completed": 0, "errors": 0, "refused": 0}
        example: list[bytes] = []
        pending: dict[int, tuple[socket.socket, float, bytes]] = {}  # fd -> socket, connect time, received
        started = 0
        _wait_until(start)
        last = start

        def begin() -> None:
            nonlocal started
            sock = _socket()
            error = sock.connect_ex((self.host, self.port))
            if error not in (0, errno.EINPROGRESS):
                counts["refused"] += 1
                sock.close()
                return
            pending[sock.fileno()] = (sock, time.monotonic(), b"")
            self.epoll.register(sock.fileno(), _OUT)
            started += 1

        for _ in range(int(op["slots"])):
            begin()
        while pending and (now := time.monotonic()) < end:
            for fd, events in self.epoll.poll(end - now):
                if fd not in pending:
                    continue
                sock, began, received = pending[fd]
                done = False
                if events & _OUT:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        counts["refused"] += 1
                        done = True
                    else:
                        with contextlib.suppress(OSError):
                            sock.send(request)
                        self.epoll.modify(fd, _IN)
                elif events:
                    try:
                        data = sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    good, bad, received, wrong = expectation.take(received + data) if data else (0, 1, b"", None)
                    pending[fd] = (sock, began, received)
                    if good + bad:
                        done = True
                        last = time.monotonic()
                        key = bucket(last - began)
                        histogram[key] = histogram.get(key, 0) + 1
                        counts["completed"] += good
                        counts["errors"] += bad
                        if wrong is not None and not example:
                            example.append(wrong)
                if done:
                    self.epoll.unregister(fd)
                    sock.close()
                    del pending[fd]
                    if time.monotonic() < end and started < budget:
                        begin()
        for fd, (sock, _, _) in pending.items():
            self.epoll.unregister(fd)
            sock.close()
        return {
            **counts,
            "histogram": histogram,
            "elapsed": end - start if time.monotonic() >= end else last - start,
            "example": _encoded(example[0]) if example else None,
        }

    def close(self, op: dict[str, Any]) -> dict[str, Any]:
        closed = len(self.connections)
        for fd in list(self.connections):
            self._forget(fd)
        return {"closed": closed}

    # ---- connections ------------------------------------------------------------------

    def _connect(
        self, count: int, window: int, confirm: Expectation | None, request: bytes, deadline: float
    ) -> tuple[int, dict[str, int], Histogram]:
        """Open ``count`` connections, at most ``window`` unfinished at a time."""
        failures: dict[str, int] = {}
        histogram: Histogram = {}
        connecting: dict[int, tuple[socket.socket, float]] = {}  # fd -> socket, when its connect began
        confirming: dict[int, tuple[Connection, float]] = {}
        opened = started = 0

        def fail(reason: str) -> None:
            failures[reason] = failures.get(reason, 0) + 1

        while opened + sum(failures.values()) < count and (now := time.monotonic()) < deadline:
            while started < count and len(connecting) + len(confirming) < window:
                sock = _socket()
                error = sock.connect_ex((self.host, self.port))
                started += 1
                if error not in (0, errno.EINPROGRESS):
                    fail(errno.errorcode.get(error, str(error)))
                    sock.close()
                    continue
                connecting[sock.fileno()] = (sock, time.monotonic())
                self.epoll.register(sock.fileno(), _OUT)
            for fd, _ in self.epoll.poll(max(0.0, deadline - now)):
                if fd in connecting:
                    sock, began = connecting.pop(fd)
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        fail(errno.errorcode.get(error, str(error)))
                        self.epoll.unregister(fd)
                        sock.close()
                        continue
                    self.epoll.modify(fd, _IN)
                    connection = Connection(sock)
                    self.connections[fd] = connection
                    if confirm is None:
                        opened += 1
                        _count(histogram, time.monotonic() - began)
                    else:
                        self._send(connection, request, time.monotonic(), 1, confirm)
                        confirming[fd] = (connection, began)
                elif fd in confirming:
                    connection, began = confirming[fd]
                    assert confirm is not None
                    data = self._receive(connection)
                    if data is None:
                        del confirming[fd]
                        fail("closed by the server before answering")
                        continue
                    good, bad, _ = connection.take(data) if data else (0, 0, None)
                    if good or bad:
                        del confirming[fd]
                        if bad:
                            fail("answered with something else")
                            self._forget(fd)
                        else:
                            opened += 1
                            _count(histogram, time.monotonic() - began)
        for fd, (sock, _) in connecting.items():
            self.epoll.unregister(fd)
            sock.close()
        for fd in confirming:
            self._forget(fd)
        unfinished = len(connecting) + len(confirming) + (count - started)
        if unfinished:
            failures["not open before the deadline"] = unfinished
        return opened, failures, histogram

    def _send(self, connection: Connection, data: bytes, at: float, requests: int, expectation: Expectation) -> None:
        """Write ``requests`` requests at once; what the socket does not take now is written when it can."""
        connection.sent_at = at
        connection.outstanding += requests
        connection.expectation = expectation
        try:
            sent = connection.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the server has gone away from this one: its read will tell
        if sent < len(data):
            connection.unsent = data[sent:]
            self.epoll.modify(connection.sock.fileno(), _IN | _OUT)

    def _flush(self, connection: Connection) -> None:
        try:
            sent = connection.sock.send(connection.unsent)
        except BlockingIOError:
            return
        except OSError:
            connection.unsent = b""
            return
        connection.unsent = connection.unsent[sent:]
        if not connection.unsent:
            self.epoll.modify(connection.sock.fileno(), _IN)

    def _readings(self, timeout: float) -> Iterator[tuple[int, Connection, bytes | None]]:
        """One poll: each open connection that read something, with what it read
        (None: the server closed it, and it is forgotten). Pending writes go out on the way."""
        for fd, events in self.epoll.poll(timeout):
            connection = self.connections.get(fd)
            if connection is None:
                continue
            if events & _OUT and connection.unsent:
                self._flush(connection)
            data = self._receive(connection)
            if data != b"":
                yield fd, connection, data

    def _receive(self, connection: Connection) -> bytes | None:
        """What arrived (b"" for nothing yet), or None when the server closed it (then it is forgotten)."""
        try:
            data = connection.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self._forget(connection.sock.fileno())
            return None
        return data

    def _drain(self, within: float) -> int:
        """Wait for the replies still owed (up to ``within`` s, or QUIET s without
        any); returns how many came. What is still owed then stays owed."""
        late = 0
        deadline = time.monotonic() + within
        quiet_until = time.monotonic() + QUIET
        while (now := time.monotonic()) < min(deadline, quiet_until):
            if not any(c.outstanding > 0 for c in self.connections.values()):
                break
            for _, connection, data in self._readings(min(deadline, quiet_until) - now):
                if data is None:
                    continue
                good, bad, _ = connection.take(data)
                if good + bad:
                    late += good + bad
                    quiet_until = time.monotonic() + QUIET
        return late

    def _forget(self, fd: int) -> None:
        connection = self.connections.pop(fd, None)
        if connection is not None:
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(fd)
            connection.sock.close()


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _count(histogram: Histogram, seconds: float) -> None:
    key = bucket(seconds)
    histogram[key] = histogram.get(key, 0) + 1


def _wait_until(at: float) -> None:
    """The cell's start, on the clock every process shares (CLOCK_MONOTONIC)."""
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)  # a start time, not a wait for another process's state


def _raise_descriptor_limit(needed: int) -> str | None:
    """Lift the soft RLIMIT_NOFILE to ``needed`` (within the hard limit); why not, if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"a driver needs {needed} descriptors and the hard limit (RLIMIT_NOFILE) is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


def _decoded(text: str) -> bytes:
    return base64.b64decode(text)


def _encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()


def main() -> int:
    driver = Driver()
    operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "open": driver.open,
        "run": driver.run,
        "ask_each": driver.ask_each,
        "churn": driver.churn,
        "close": driver.close,
    }
    for line in sys.stdin:
        op = json.loads(line)
        answer = operations[op["op"]](op)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
