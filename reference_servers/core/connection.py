"""One connection as a state machine, in either protocol: bytes in, events out.

The caller feeds received bytes with ``receive_data`` (``b""`` for EOF), the
urgent byte with ``receive_urgent``, and then pulls events with
``next_event(now, room)`` until it returns None. It calls ``next_event`` again
when new bytes arrive or when ``deadline()`` passes. Requests are parsed
lazily, so bytes that arrive behind a SLEEP (or a BLPOP) wait in the buffer
exactly as they would in the kernel. Pipelined requests run one after
another into one Send, up to the ``room`` the caller has for replies: a
peer that pipelines pays one event, and one write, per batch.

The protocol is the ServerInfo's: CloudHash/1 or RESP2. Where a request ends
is the connection's current framing (``_cut``: CloudHash/1's lines, its frames
after FRAMED, or RESP2's arrays and inline lines); what a command does is one
handler per command, the same in both; how a reply and an error are worded
is the protocol's Dialect (dialects.py).
"""

from __future__ import annotations

import fnmatch
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .commands import CommandError, Request, parse_request, request_from_words, sleep_ms, timeout_seconds
from .dialects import ABORTED, BUSY_LINE, DIALECTS, Framing
from .framing import Cut, NeedData, TooLong, cut_frame, cut_line, encode_frame, encode_line
from .info import ServerInfo
from .replies import Array, Bulk, Integer, Nil, NilArray, Reply, Status
from .resp import Malformed, RequestReader, RespCut, Words
from .store import Store

__all__ = ["BUSY_LINE", "Close", "Event", "Send", "ServerConnection", "StartTLS"]

_OK, _PONG = Status(b"OK"), Status(b"PONG")


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


@dataclass(frozen=True)
class _Wait:
    """A request that answers later: SLEEP (CloudHash/1) or BLPOP (RESP2)."""

    until: float  # math.inf: no limit
    reply: Reply  # the answer once the time is up
    urgent_aborts: bool  # SLEEP: the urgent byte aborts it; BLPOP: the byte changes nothing
    ends_at_shutdown: bool  # BLPOP: a shutdown closes the connection at once, as Redis does


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
        self._dialect = DIALECTS[info.protocol]
        self._framing = self._dialect.framing
        self._reader = RequestReader(info.max_frame) if self._framing is Framing.RESP else None
        self._buffer = bytearray()
        self._events: deque[Event] = deque()
        self._output = bytearray()  # replies not handed out yet; they follow every event queued
        self._in_tls = in_tls
        self._starttls_available = starttls_available
        self._eof = False
        self._wait: _Wait | None = None
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
        wait = self._wait
        if wait is not None and wait.urgent_aborts and now < wait.until and not self._finished:
            self._wait = None
            self._emit(ABORTED, now)

    def replies_sent(self, now: float) -> None:
        """Every reply so far has left the server (the caller held some back
        for a peer that was slow to read): the idle time counts from ``now``,
        the sending of the last reply (section 12)."""
        if not self._finished:
            self._idle_since = now

    def begin_shutdown(self) -> None:
        """Graceful shutdown: finish what was received, then close once idle
        (CloudHash/1 says SHUTDOWN first). A BLPOP ends at once."""
        self._shutting_down = True

    def force_shutdown(self) -> None:
        """The shutdown deadline: every unanswered request gets its own SHUTDOWN
        (CloudHash/1), or the connection just closes (RESP2)."""
        self._shutting_down = True
        self._forced_shutdown = True

    # ---- what the caller asks ---------------------------------------------

    @property
    def wants_input(self) -> bool:
        """False while a SLEEP or BLPOP holds the connection, or once it is finishing."""
        if self._finished or self._eof or self._wait is not None:
            return False
        # Between STARTTLS's +OK and the handshake, plaintext must not be read as requests.
        return not (self._events and any(isinstance(event, StartTLS) for event in self._events))

    @property
    def framed(self) -> bool:
        return self._framing is Framing.FRAMES

    @property
    def _framed(self) -> bool:
        return self._framing is Framing.FRAMES

    @property
    def finished(self) -> bool:
        return self._finished and not self._events and not self._output

    def idle_deadline(self) -> float | None:
        """When the idle timer fires; None while paused or disabled."""
        if self._info.idle_timeout_ms == 0 or self._wait is not None or self._finished:
            return None
        return self._idle_since + self._info.idle_timeout_ms / 1000

    def deadline(self) -> float | None:
        """The next time ``next_event`` has something to do without new input."""
        if self._wait is not None:
            return None if self._wait.until == math.inf else self._wait.until
        return self.idle_deadline()

    # ---- output ------------------------------------------------------------

    def next_event(self, now: float, room: int = 0) -> Event | None:
        """The next thing to do, or None until new input or the deadline.

        ``room``: how many bytes of replies the caller takes in one Send.
        Requests run one after another, their replies joined, until that much
        is ready or a request does more than answer (waits, closes, starts
        TLS); with 0, each request is its own event. So a caller that stops
        taking events once its output reaches a mark holds at most the mark
        plus one reply."""
        if not self._events and not self._output and not self._finished:
            self._advance(now, room)
        if self._events:
            return self._events.popleft()
        if self._output:
            data = bytes(self._output)
            self._output.clear()
            return Send(data)
        return None

    def _advance(self, now: float, room: int) -> None:
        if self._forced_shutdown:
            self._answer_everything_with_shutdown()
            return
        wait = self._wait
        if wait is not None:
            if self._shutting_down and wait.ends_at_shutdown:
                self._wait = None
                self._finish(self._dialect.shutdown_notice)
                return
            if now < wait.until:
                return
            self._wait = None
            self._say(wait.reply, now)
            if len(self._output) >= room:
                return
        while self._buffer:  # an empty buffer holds no request in any framing
            cut = self._cut()
            if isinstance(cut, (TooLong, Malformed)):
                self._finish(self._dialect.unreadable(cut))
                return
            if isinstance(cut, NeedData):
                break
            payload, used = cut
            del self._buffer[:used]
            if payload or self._framed:
                self._execute(payload, now)
                wait = self._wait
                if wait is not None and now >= wait.until:  # SLEEP 0
                    self._wait = None
                    self._say(wait.reply, now)
                if self._wait is not None or self._finished or self._events or len(self._output) >= room:
                    return
            # An empty line (or an empty array) is no request: it neither answers nor resets the timer.
        if self._eof:
            self._finished = True
            self._queue(Close())
        elif self._shutting_down:
            self._finish(self._dialect.shutdown_notice)
        else:
            deadline = self.idle_deadline()
            if deadline is not None and now >= deadline:
                self._finish(self._dialect.idle_notice)

    def _cut(self) -> Cut | RespCut:
        """The next request, as the current framing cuts it."""
        if self._framing is Framing.FRAMES:
            return cut_frame(self._buffer, self._info.max_frame)
        if self._framing is Framing.LINES:
            return cut_line(self._buffer, self._info.max_line)
        assert self._reader is not None
        return self._reader.cut(self._buffer)

    def _execute(self, payload: bytes | Words, now: float) -> None:
        try:
            if not payload:
                raise CommandError("SYNTAX", "empty frame")
            request = self._parse(payload)
            self._run(request, now)
        except CommandError as error:
            self._emit(self._dialect.error(error), now)

    @staticmethod
    def _parse(payload: bytes | Words) -> Request:
        if isinstance(payload, Words):
            return request_from_words(payload.kept, payload.count)
        return parse_request(payload)

    def _run(self, request: Request, now: float) -> None:
        _HANDLERS[request.name](self, request.args, now)

    # ---- the commands, one handler each --------------------------------------

    def _ping(self, args: tuple[bytes, ...], now: float) -> None:
        self._say(_PONG, now)

    def _echo(self, args: tuple[bytes, ...], now: float) -> None:
        self._say(Bulk(args[0]), now)

    def _set(self, args: tuple[bytes, ...], now: float) -> None:
        self._store.set(args[0], args[1])
        self._say(_OK, now)

    def _get(self, args: tuple[bytes, ...], now: float) -> None:
        value = self._store.get(args[0])
        if value is not None and self._framing is Framing.LINES and b"\n" in value:
            raise CommandError("STATE", "value contains LF; read it in framed mode")
        self._say(Nil() if value is None else Bulk(value), now)

    def _del(self, args: tuple[bytes, ...], now: float) -> None:
        self._say(Integer(1 if self._store.delete(args[0]) else 0), now)

    def _incr(self, args: tuple[bytes, ...], now: float) -> None:
        self._say(Integer(self._store.incr(args[0])), now)

    def _info_command(self, args: tuple[bytes, ...], now: float) -> None:
        self._say(Bulk(self._dialect.info(self._info)), now)

    def _quit(self, args: tuple[bytes, ...], now: float) -> None:
        self._finish(self._dialect.farewell)

    def _sleep(self, args: tuple[bytes, ...], now: float) -> None:
        self._wait = _Wait(now + sleep_ms(args[0]) / 1000, _OK, urgent_aborts=True, ends_at_shutdown=False)

    def _enter_framed_mode(self, args: tuple[bytes, ...], now: float) -> None:
        if self._framed:
            raise CommandError("STATE", "already in framed mode")
        self._say(_OK, now)  # the last reply as a line
        self._framing = Framing.FRAMES

    def _starttls(self, args: tuple[bytes, ...], now: float) -> None:
        self._start_tls(now)

    def _start_tls(self, now: float) -> None:
        if self._framed:
            raise CommandError("STATE", "STARTTLS is not allowed in framed mode")
        if self._in_tls:
            raise CommandError("STATE", "already inside TLS")
        if not self._starttls_available:
            raise CommandError("STATE", "no certificate configured")
        self._say(_OK, now)
        # Whatever arrived with the STARTTLS was sent in plaintext before the
        # handshake; executing it inside TLS is the CVE-2011-0411 class of bug.
        self._buffer.clear()
        self._in_tls = True
        self._queue(StartTLS())

    def _blpop(self, args: tuple[bytes, ...], now: float) -> None:
        key, timeout = args
        seconds = timeout_seconds(timeout)
        if self._store.get(key) is not None:  # a string: no command here ever makes a list
            raise CommandError("WRONGTYPE", "Operation against a key holding the wrong kind of value")
        until = now + seconds if seconds > 0 else math.inf
        self._wait = _Wait(until, NilArray(), urgent_aborts=False, ends_at_shutdown=True)

    def _config(self, args: tuple[bytes, ...], now: float) -> None:
        subcommand, pattern = args
        if subcommand.upper() != b"GET":
            raise CommandError("SYNTAX", "unknown subcommand; this server answers CONFIG GET only")
        wanted = pattern.decode("latin-1").lower()  # Redis matches names without regard to case
        pairs: list[Reply] = []
        for name, value in self._info.config().items():
            if fnmatch.fnmatchcase(name, wanted):
                pairs += [Bulk(name.encode("ascii")), Bulk(value.encode("ascii"))]
        self._say(Array(tuple(pairs)), now)

    def _answer_everything_with_shutdown(self) -> None:
        if self._dialect.shutdown_notice is None:
            self._wait = None
            self._finish(None)
            return
        unanswered = 1 if self._wait is not None else 0
        self._wait = None
        while True:
            cut = self._cut()
            if isinstance(cut, (NeedData, TooLong, Malformed)):
                break
            payload, used = cut
            del self._buffer[:used]
            if payload or self._framed:
                unanswered += 1
        for _ in range(max(unanswered, 1) - 1):
            self._queue(Send(self._encode(self._dialect.shutdown_notice)))
        self._finish(self._dialect.shutdown_notice)

    # ---- helpers -----------------------------------------------------------

    def _say(self, reply: Reply, now: float) -> None:
        self._emit(self._dialect.body(reply), now)

    def _emit(self, body: bytes, now: float | None = None) -> None:
        """Reply ``body`` (in the protocol's words), framed as the connection frames replies now."""
        if now is not None:
            self._idle_since = now
        self._output += self._encode(body)

    def _queue(self, event: Event) -> None:
        """An event after every reply so far."""
        if self._output:
            self._events.append(Send(bytes(self._output)))
            self._output.clear()
        self._events.append(event)

    def _finish(self, body: bytes | None) -> None:
        """Say ``body`` (if anything) and close."""
        self._finished = True
        self._buffer.clear()
        if body is not None:
            self._queue(Send(self._encode(body), final=True))
        self._queue(Close())

    def _encode(self, body: bytes) -> bytes:
        if self._framing is Framing.FRAMES:
            return encode_frame(body)
        if self._framing is Framing.LINES:
            return encode_line(body)
        return body  # a RESP2 reply carries its own framing


Handler = Callable[[ServerConnection, tuple[bytes, ...], float], None]

# One handler per command of commands.COMMANDS, whichever protocol it came in.
_HANDLERS: dict[str, Handler] = {
    "PING": ServerConnection._ping,
    "ECHO": ServerConnection._echo,
    "SET": ServerConnection._set,
    "GET": ServerConnection._get,
    "DEL": ServerConnection._del,
    "INCR": ServerConnection._incr,
    "INFO": ServerConnection._info_command,
    "QUIT": ServerConnection._quit,
    "SLEEP": ServerConnection._sleep,
    "FRAMED": ServerConnection._enter_framed_mode,
    "STARTTLS": ServerConnection._starttls,
    "BLPOP": ServerConnection._blpop,
    "CONFIG": ServerConnection._config,
}
