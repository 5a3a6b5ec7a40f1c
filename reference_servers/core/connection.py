"""One CloudHash/1 connection as a state machine: bytes in, events out.

The caller feeds received bytes with ``receive_data`` (``b""`` for EOF), the
urgent byte with ``receive_urgent``, and then pulls events with
``next_event(now)`` until it returns None. It calls ``next_event`` again
when new bytes arrive or when ``deadline()`` passes. Requests are parsed
lazily, one at a time, so bytes that arrive behind a SLEEP wait in the
buffer exactly as they would in the kernel.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .commands import CommandError, Request, parse_request, sleep_ms
from .framing import Cut, NeedData, TooLong, cut_frame, cut_line, encode_frame, encode_line
from .info import ServerInfo
from .store import Store


@dataclass(frozen=True)
class Send:
    """Write these bytes. ``final`` marks the last message before the close."""

    data: bytes
    final: bool = False


@dataclass(frozen=True)
class StartTLS:
    """Once everything sent so far is on the wire, run the server's TLS handshake."""


@dataclass(frozen=True)
class Close:
    """Shut down the write side, drain input for a while, then close."""


Event = Send | StartTLS | Close

TIMEOUT = b"-ERR TIMEOUT idle for too long"
SHUTDOWN = b"-ERR SHUTDOWN server is shutting down"
TOOLONG = b"-ERR TOOLONG request over the size limit"
ABORTED = b"-ERR ABORTED interrupted by urgent data"
BUSY_LINE = encode_line(b"-ERR BUSY too many connections")


class ServerConnection:
    def __init__(
        self,
        info: ServerInfo,
        store: Store,
        now: float,
        *,
        starttls_available: bool = False,
        in_tls: bool = False,
    ) -> None:
        self._info = info
        self._store = store
        self._buffer = bytearray()
        self._events: deque[Event] = deque()
        self._framed = False
        self._in_tls = in_tls
        self._starttls_available = starttls_available
        self._eof = False
        self._sleep_until: float | None = None
        self._idle_since = now
        self._shutting_down = False
        self._forced_shutdown = False
        self._finished = False  # a final message or Close has been queued

    # ---- input -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._finished:
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def receive_urgent(self, now: float) -> None:
        """An urgent byte arrived: it aborts a SLEEP in progress, and does nothing else.

        A SLEEP whose time is up is no longer in progress, even if its +OK
        has not been collected yet."""
        if self._sleep_until is not None and now < self._sleep_until and not self._finished:
            self._sleep_until = None
            self._events.append(self._reply(ABORTED, now))

    def replies_sent(self, now: float) -> None:
        """Every reply so far has left the server (the caller held some back
        for a peer that was slow to read): the idle time counts from ``now``,
        the sending of the last reply (section 12)."""
        if not self._finished:
            self._idle_since = now

    def begin_shutdown(self) -> None:
        """Graceful shutdown: finish what was received, then say SHUTDOWN once idle."""
        self._shutting_down = True

    def force_shutdown(self) -> None:
        """The shutdown deadline: every unanswered request gets its own SHUTDOWN."""
        self._shutting_down = True
        self._forced_shutdown = True

    # ---- what the caller asks ---------------------------------------------

    @property
    def wants_input(self) -> bool:
        """False while a SLEEP holds the connection, or once it is finishing."""
        if self._finished or self._eof or self._sleep_until is not None:
            return False
        # Between STARTTLS's +OK and the handshake, plaintext must not be read as requests.
        return not any(isinstance(event, StartTLS) for event in self._events)

    @property
    def framed(self) -> bool:
        return self._framed

    @property
    def finished(self) -> bool:
        return self._finished and not self._events

    def idle_deadline(self) -> float | None:
        """When the idle timer fires; None while paused or disabled."""
        if self._info.idle_timeout_ms == 0 or self._sleep_until is not None or self._finished:
            return None
        return self._idle_since + self._info.idle_timeout_ms / 1000

    def deadline(self) -> float | None:
        """The next time ``next_event`` has something to do without new input."""
        if self._sleep_until is not None:
            return self._sleep_until
        return self.idle_deadline()

    # ---- output ------------------------------------------------------------

    def next_event(self, now: float) -> Event | None:
        if not self._events and not self._finished:
            self._advance(now)
        return self._events.popleft() if self._events else None

    def _advance(self, now: float) -> None:
        if self._forced_shutdown:
            self._answer_everything_with_shutdown()
            return
        if self._sleep_until is not None:
            if now < self._sleep_until:
                return
            self._sleep_until = None
            self._events.append(self._reply(b"+OK", now))
            return
        while True:
            cut = self._cut()
            if isinstance(cut, TooLong):
                self._finish(TOOLONG)
                return
            if isinstance(cut, NeedData):
                break
            payload, used = cut
            del self._buffer[:used]
            if payload or self._framed:
                self._execute(payload, now)
                if self._sleep_until is not None and now >= self._sleep_until:  # SLEEP 0
                    self._sleep_until = None
                    self._events.append(self._reply(b"+OK", now))
                return
            # An empty line is no request: it neither answers nor resets the timer.
        if self._eof:
            self._finished = True
            self._events.append(Close())
        elif self._shutting_down:
            self._finish(SHUTDOWN)
        else:
            deadline = self.idle_deadline()
            if deadline is not None and now >= deadline:
                self._finish(TIMEOUT)

    def _cut(self) -> Cut:
        if self._framed:
            return cut_frame(self._buffer, self._info.max_frame)
        return cut_line(self._buffer, self._info.max_line)

    def _execute(self, payload: bytes, now: float) -> None:
        try:
            if not payload:
                raise CommandError("SYNTAX", "empty frame")
            request = parse_request(payload)
            self._run(request, now)
        except CommandError as error:
            self._events.append(self._reply(error.reply(), now))

    def _run(self, request: Request, now: float) -> None:
        name, args = request.name, request.args
        if name == "PING":
            self._events.append(self._reply(b"+PONG", now))
        elif name == "ECHO":
            self._events.append(self._reply(b"$" + args[0], now))
        elif name == "SET":
            self._store.set(args[0], args[1])
            self._events.append(self._reply(b"+OK", now))
        elif name == "GET":
            value = self._store.get(args[0])
            if value is None:
                self._events.append(self._reply(b"_", now))
            elif not self._framed and b"\n" in value:
                raise CommandError("STATE", "value contains LF; read it in framed mode")
            else:
                self._events.append(self._reply(b"$" + value, now))
        elif name == "DEL":
            self._events.append(self._reply(b":1" if self._store.delete(args[0]) else b":0", now))
        elif name == "INCR":
            self._events.append(self._reply(b":%d" % self._store.incr(args[0]), now))
        elif name == "SLEEP":
            self._sleep_until = now + sleep_ms(args[0]) / 1000
        elif name == "INFO":
            self._events.append(self._reply(b"$" + self._info.render(), now))
        elif name == "FRAMED":
            if self._framed:
                raise CommandError("STATE", "already in framed mode")
            self._events.append(self._reply(b"+OK", now))
            self._framed = True
        elif name == "STARTTLS":
            self._start_tls(now)
        elif name == "QUIT":
            self._finish(b"+BYE")

    def _start_tls(self, now: float) -> None:
        if self._framed:
            raise CommandError("STATE", "STARTTLS is not allowed in framed mode")
        if self._in_tls:
            raise CommandError("STATE", "already inside TLS")
        if not self._starttls_available:
            raise CommandError("STATE", "no certificate configured")
        self._events.append(self._reply(b"+OK", now))
        # Whatever arrived with the STARTTLS was sent in plaintext before the
        # handshake; executing it inside TLS is the CVE-2011-0411 class of bug.
        self._buffer.clear()
        self._in_tls = True
        self._events.append(StartTLS())

    def _answer_everything_with_shutdown(self) -> None:
        unanswered = 1 if self._sleep_until is not None else 0
        self._sleep_until = None
        while True:
            cut = self._cut()
            if isinstance(cut, (NeedData, TooLong)):
                break
            payload, used = cut
            del self._buffer[:used]
            if payload or self._framed:
                unanswered += 1
        for _ in range(max(unanswered, 1) - 1):
            self._events.append(Send(self._encode(SHUTDOWN)))
        self._finish(SHUTDOWN)

    # ---- helpers -----------------------------------------------------------

    def _reply(self, body: bytes, now: float | None = None) -> Send:
        if now is not None:
            self._idle_since = now
        return Send(self._encode(body))

    def _finish(self, body: bytes) -> None:
        self._finished = True
        self._buffer.clear()
        self._events.append(Send(self._encode(body), final=True))
        self._events.append(Close())

    def _encode(self, body: bytes) -> bytes:
        return encode_frame(body) if self._framed else encode_line(body)
