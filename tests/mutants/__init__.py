"""Mutant CloudHash/1 servers: the reference design with one realistic bug each.

Each mutant monkeypatches the reference code in-process (``apply()``), before
the server starts, and then runs as the reference server of one architecture:

    python -m tests.mutants NAME [server flags...]     # e.g. --port 0 --idle-timeout 1
    python -m tests.mutants --list

The conformance suite must fail every mutant. ``expected_areas`` names the
requirement areas of PROTOCOL.md in which it must report at least one failing
requirement: every area listed is one the bug breaks for certain, so a
sensitivity test may require each of them (most mutants list one).
``requirements`` names the IDs the bug breaks as PROTOCOL.md stands today; it
is informational, for explaining a miss, and is not meant to be asserted.

A patch is kept as small as the bug: where a real server would get one line
wrong, the mutant replaces one function or method with a copy that has that
line wrong, or wraps it. Nothing here runs unless ``apply()`` is called, and
it must only be called in the process that is about to become the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

AREAS = ("FRAME", "CMD", "STORE", "ERR", "TIMEOUT", "URGENT", "CONC", "LIMIT", "TLS", "LIFE", "ROBUST")


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    arch: str
    expected_areas: tuple[str, ...]
    apply: Callable[[], None]
    requirements: tuple[str, ...] = ()


MUTANTS: dict[str, Mutant] = {}


def _mutant(
    name: str, arch: str, areas: tuple[str, ...], requirements: tuple[str, ...]
) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated patch; its docstring is the description."""

    def register(apply: Callable[[], None]) -> Callable[[], None]:
        if name in MUTANTS:
            raise ValueError(f"duplicate mutant {name}")
        unknown = [area for area in areas if area not in AREAS]
        if unknown or not areas:
            raise ValueError(f"{name}: bad areas {areas}")
        description = " ".join((apply.__doc__ or "").split())
        MUTANTS[name] = Mutant(name, description, arch, areas, apply, requirements)
        return apply

    return register


# ---- FRAME: cutting the stream into requests --------------------------------------------


@_mutant("one-recv-one-request", "serial", ("FRAME",), ("CH-FRAME-17", "CH-FRAME-18"))
def _one_recv_one_request() -> None:
    """Takes each recv() for one whole request: only the first line of a received chunk is used and the
    rest of the chunk is dropped, and a chunk without LF is taken as a complete line."""
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection.receive_data

    def receive_data(self: ServerConnection, data: bytes) -> None:
        if data:
            data = data.split(b"\n", 1)[0].removesuffix(b"\r") + b"\r\n"
        reference(self, data)

    ServerConnection.receive_data = receive_data


@_mutant("drops-pipelined", "thread-pool", ("FRAME",), ("CH-FRAME-17", "CH-FRAME-9"))
def _drops_pipelined() -> None:
    """Answers the first request of a read and then empties the receive buffer, so requests pipelined
    behind it (or behind FRAMED) are lost; one request per round trip still works."""
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection._execute

    def _execute(self: ServerConnection, payload: bytes, now: float) -> None:
        reference(self, payload, now)
        self._buffer.clear()  # "done with that request"

    ServerConnection._execute = _execute


@_mutant("no-bare-lf", "process-per-connection", ("FRAME",), ("CH-FRAME-2",))
def _no_bare_lf() -> None:
    """Line mode ends a request only at CRLF: a request ending in a bare LF is never answered (the
    server keeps waiting for CRLF until the line is too long)."""
    from reference_servers.core import connection
    from reference_servers.core.framing import NEED_DATA, TOO_LONG, Cut

    def cut_line(buffer: bytes | bytearray, max_line: int) -> Cut:
        end = buffer.find(b"\r\n", 0, max_line)
        if end < 0:
            return TOO_LONG if len(buffer) >= max_line else NEED_DATA
        return bytes(buffer[:end]), end + 2

    connection.cut_line = cut_line


@_mutant("native-endian-length", "evented", ("FRAME",), ("CH-FRAME-10",))
def _native_endian_length() -> None:
    """Frame headers in native byte order (the book's pack('i')): little-endian on x86, so a correct
    client's frame reads as a huge length (TOOLONG) and replies carry little-endian headers."""
    import struct

    from reference_servers.core import framing

    framing.HEADER = struct.Struct("I")


@_mutant("no-max-frame-check", "hybrid", ("FRAME",), ("CH-FRAME-12",))
def _no_max_frame_check() -> None:
    """No max_frame check: a frame header of any length is believed, and the server waits for (and
    buffers) the whole body instead of answering TOOLONG at once."""
    from reference_servers.core import connection
    from reference_servers.core.framing import HEADER, NEED_DATA, Cut

    def cut_frame(buffer: bytes | bytearray, max_frame: int) -> Cut:
        if len(buffer) < HEADER.size:
            return NEED_DATA
        (length,) = HEADER.unpack_from(buffer)
        end = HEADER.size + length
        if len(buffer) < end:
            return NEED_DATA
        return bytes(buffer[HEADER.size : end]), end

    connection.cut_frame = cut_frame


@_mutant("max-line-off-by-one", "hybrid", ("FRAME",), ("CH-FRAME-6", "CH-FRAME-7"))
def _max_line_off_by_one() -> None:
    """max_line is applied to the line without its LF, so a line of max_line + 1 bytes (LF included)
    is accepted instead of getting TOOLONG, and max_line bytes without LF still wait for more."""
    from reference_servers.core import connection
    from reference_servers.core.framing import NEED_DATA, TOO_LONG, Cut

    def cut_line(buffer: bytes | bytearray, max_line: int) -> Cut:
        end = buffer.find(b"\n", 0, max_line + 1)
        if end < 0:
            return TOO_LONG if len(buffer) > max_line else NEED_DATA
        stop = end - 1 if end > 0 and buffer[end - 1] == 0x0D else end
        return bytes(buffer[:stop]), end + 1

    connection.cut_line = cut_line


@_mutant("framed-drops-buffer", "preforking", ("FRAME",), ("CH-FRAME-9",))
def _framed_drops_buffer() -> None:
    """Switching to framed mode starts a fresh parser with an empty buffer, so frames that arrived in
    the same segment as FRAMED are lost."""
    from reference_servers.core.commands import Request
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection._run

    def _run(self: ServerConnection, request: Request, now: float) -> None:
        reference(self, request, now)
        if request.name == "FRAMED":
            self._buffer.clear()

    ServerConnection._run = _run


@_mutant("half-close-drops-answers", "evented", ("FRAME",), ("CH-FRAME-19",))
def _half_close_drops_answers() -> None:
    """The reactor keeps reading every connection, busy or not, and closes one as soon as recv()
    returns b"": after a client's half-close, requests still queued behind a SLEEP are never answered."""
    from reference_servers.runtime.session import READ_CHUNK, Session

    reference_wants_read = Session.wants_read.fget
    assert reference_wants_read is not None

    def wants_read(self: Session) -> bool:
        if self.conn is not None and not self.closed and not self._starttls_pending and self._close_by is None:
            return True
        return bool(reference_wants_read(self))

    def on_readable(self: Session, now: float) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self.abort()
            return
        if not data:  # "the client has gone"
            self.abort()
            return
        if self._close_by is not None:
            return
        if self._tls is None:
            assert self.conn is not None
            self.conn.receive_data(data)
        elif not self._feed_tls(data):
            return
        self._pump(now)

    Session.wants_read = property(wants_read)
    Session.on_readable = on_readable


# ---- CMD / ERR / STORE --------------------------------------------------------------------


@_mutant("wrong-error-codes", "process-per-connection", ("ERR",), ("CH-ERR-2",))
def _wrong_error_codes() -> None:
    """Every request that fails to parse gets -ERR SYNTAX, including unknown commands, which should
    get -ERR UNKNOWN."""
    from reference_servers.core import connection
    from reference_servers.core.commands import CommandError, Request

    reference = connection.parse_request

    def parse_request(payload: bytes) -> Request:
        try:
            return reference(payload)
        except CommandError as error:
            raise CommandError("SYNTAX", error.text) from None

    connection.parse_request = parse_request


@_mutant("case-sensitive-commands", "preforking", ("CMD",), ("CH-CMD-1",))
def _case_sensitive_commands() -> None:
    """Command names are looked up exactly as sent, so "ping" or "Ping" is an unknown command."""
    from reference_servers.core import connection
    from reference_servers.core.commands import COMMANDS, CommandError, Request

    reference = connection.parse_request

    def parse_request(payload: bytes) -> Request:
        word = payload.partition(b" ")[0]
        if word not in COMMANDS:
            shown = word[:32].decode("ascii", "backslashreplace")
            raise CommandError("UNKNOWN", f"unknown command '{shown}'")
        return reference(payload)

    connection.parse_request = parse_request


@_mutant("trims-values", "hybrid", ("CMD",), ("CH-CMD-3", "CH-CMD-4", "CH-ERR-3"))
def _trims_values() -> None:
    """Each line-mode request is rstrip()ped before it is parsed (the gets.strip habit): trailing spaces
    of ECHO and SET values vanish, "ECHO " becomes wrong arity and "PING " becomes valid."""
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection._execute

    def _execute(self: ServerConnection, payload: bytes, now: float) -> None:
        if not self._framed:
            payload = payload.rstrip()
        reference(self, payload, now)

    ServerConnection._execute = _execute


@_mutant("get-lf-in-line-mode", "thread-per-connection", ("CMD",), ("CH-CMD-16",))
def _get_lf_in_line_mode() -> None:
    """GET sends any value in line mode, even one that contains LF (stored in framed mode), instead of
    -ERR STATE: the reader sees one reply split into two lines."""
    from reference_servers.core.commands import Request
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection._run

    def _run(self: ServerConnection, request: Request, now: float) -> None:
        if request.name == "GET":
            value = self._store.get(request.args[0])
            self._emit(b"_" if value is None else b"$" + value, now)
            return
        reference(self, request, now)

    ServerConnection._run = _run


@_mutant("incr-no-range-check", "serial", ("CMD",), ("CH-CMD-8", "CH-CMD-9"))
def _incr_no_range_check() -> None:
    """INCR parses the stored value with int() and adds one: Python integers never overflow, so
    9223372036854775807 + 1 is stored instead of -ERR RANGE, and int()'s leniency (" 1", "+1", "1_0")
    passes values that should get -ERR TYPE."""
    from reference_servers.core import store
    from reference_servers.core.commands import CommandError

    def incremented(stored: bytes | None) -> int:
        if stored is None:
            return 1
        try:
            return int(stored) + 1
        except ValueError:
            raise CommandError("TYPE", "value is not an integer") from None

    store.incremented = incremented


@_mutant("incr-without-lock", "thread-per-connection", ("STORE",), ("CH-STORE-3", "CH-STORE-2"))
def _incr_without_lock() -> None:
    """INCR reads the value under the store lock and writes the result under the lock again, but not
    in one critical section: concurrent INCRs on one key from several threads lose updates."""
    import time

    from reference_servers.core.commands import incremented
    from reference_servers.runtime.stores import LockedStore

    def incr(self: LockedStore, key: bytes) -> int:
        with self._lock:
            current = self._store.get(key)
        result = incremented(current)
        # Stands for any blocking call between the read and the write (a log line, a metric):
        # it lets the other threads run, which is what makes the race show on every run.
        time.sleep(0)
        with self._lock:
            self._store.set(key, str(result).encode("ascii"))
        return result

    LockedStore.incr = incr


# ---- TIMEOUT ----------------------------------------------------------------------------


@_mutant("no-idle-timeout", "preforking", ("TIMEOUT",), ("CH-TIMEOUT-1", "CH-TIMEOUT-4", "CH-TIMEOUT-5"))
def _no_idle_timeout() -> None:
    """No idle timer at all (while INFO still declares idle_timeout_ms): an idle connection is kept
    open forever, and so is a TLS handshake that never completes."""
    from reference_servers.core.connection import ServerConnection

    def idle_deadline(self: ServerConnection) -> float | None:
        return None

    ServerConnection.idle_deadline = idle_deadline


@_mutant("trickle-resets-timer", "process-per-connection", ("TIMEOUT",), ("CH-TIMEOUT-4", "CH-TIMEOUT-5"))
def _trickle_resets_timer() -> None:
    """The idle timer measures the time since the last recv() that returned data, so a client trickling
    partial bytes (slowloris) or empty lines keeps its connection alive forever."""
    import time

    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection.receive_data

    def receive_data(self: ServerConnection, data: bytes) -> None:
        if data:
            self._idle_since = time.monotonic()  # "last activity"
        reference(self, data)

    ServerConnection.receive_data = receive_data


# ---- URGENT ----------------------------------------------------------------------------


@_mutant("urgent-inline", "thread-per-connection", ("URGENT",), ("CH-URGENT-1", "CH-URGENT-3"))
def _urgent_inline() -> None:
    """Accepted sockets get SO_OOBINLINE, so the urgent byte lands in the request stream: it corrupts
    the request around it, and there is never an out-of-band byte to abort a SLEEP."""
    import socket

    from reference_servers.runtime.session import Session

    reference = Session.__init__

    def __init__(self: Session, sock: socket.socket, *args: object, **kwargs: object) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        reference(self, sock, *args, **kwargs)

    Session.__init__ = __init__


@_mutant("urgent-never-read", "evented", ("URGENT",), ("CH-URGENT-3",))
def _urgent_never_read() -> None:
    """The reactor registers EPOLLIN/EPOLLOUT only (as the selectors module does), so it never sees
    urgent data: a SLEEP is never aborted. Linux still keeps the byte out of the stream."""
    from reference_servers.runtime import sessions

    sessions._PRI = 0


# ---- CONC / LIMIT -------------------------------------------------------------------------


@_mutant("sleep-blocks-reactor", "evented", ("CONC", "URGENT"), ("CH-CONC-1", "CH-URGENT-3"))
def _sleep_blocks_reactor() -> None:
    """SLEEP calls time.sleep() inside the reactor instead of setting a timer: every other connection
    (and the urgent byte that should abort it) waits until the sleep is over."""
    import time

    from reference_servers.core.commands import Request, sleep_ms
    from reference_servers.core.connection import ServerConnection

    reference = ServerConnection._run

    def _run(self: ServerConnection, request: Request, now: float) -> None:
        if request.name == "SLEEP":
            time.sleep(sleep_ms(request.args[0]) / 1000)
            self._emit(b"+OK", time.monotonic())
            return
        reference(self, request, now)

    ServerConnection._run = _run


@_mutant("hangs-instead-of-busy", "thread-per-connection", ("LIMIT",), ("CH-LIMIT-1", "CH-LIMIT-3"))
def _hangs_instead_of_busy() -> None:
    """Over max_connections the accept loop keeps the new socket "for when a thread frees up" and never
    looks at it again: the client is accepted and then ignored forever, with no BUSY."""
    import socket

    from reference_servers.runtime.admission import Admission
    from reference_servers.runtime.listeners import Listener

    def _acceptor(self: Admission, listener: Listener) -> Callable[[float], None]:
        waiting: list[socket.socket] = []

        def accept(now: float) -> None:
            sock = listener.accept()
            if sock is None:
                return
            if self._at_capacity():
                waiting.append(sock)
            else:
                self._start(sock, listener)

        return accept

    Admission._acceptor = _acceptor


@_mutant("busy-on-tls-port", "hybrid", ("LIMIT",), ("CH-LIMIT-3",))
def _busy_on_tls_port() -> None:
    """Over the limit, the TLS port answers like the plain port: a plaintext "-ERR BUSY" line, which is
    garbage to a TLS client, instead of a close without any byte."""
    import socket

    from reference_servers.core.connection import BUSY_LINE
    from reference_servers.runtime.context import Context
    from reference_servers.runtime.listeners import Listener
    from reference_servers.runtime.session import Session

    def refusal(sock: socket.socket, listener: Listener, now: float) -> Session:
        return Session.refuse(sock, BUSY_LINE, now)

    Context.refusal = staticmethod(refusal)


# ---- TLS ----------------------------------------------------------------------------------


@_mutant("starttls-keeps-plaintext", "serial", ("TLS",), ("CH-TLS-5",))
def _starttls_keeps_plaintext() -> None:
    """STARTTLS does not discard the bytes received with it: plaintext pipelined after STARTTLS is
    executed inside TLS as if it were protected (CVE-2011-0411)."""
    from reference_servers.core.commands import CommandError
    from reference_servers.core.connection import ServerConnection, StartTLS

    def _start_tls(self: ServerConnection, now: float) -> None:
        if self._framed:
            raise CommandError("STATE", "STARTTLS is not allowed in framed mode")
        if self._in_tls:
            raise CommandError("STATE", "already inside TLS")
        if not self._starttls_available:
            raise CommandError("STATE", "no certificate configured")
        self._emit(b"+OK", now)
        self._in_tls = True
        self._queue(StartTLS())

    ServerConnection._start_tls = _start_tls


@_mutant("tls-legacy-versions", "thread-pool", ("TLS",), ("CH-TLS-2",))
def _tls_legacy_versions() -> None:
    """The TLS context is opened up "for old clients": minimum version TLS 1.0 and ciphers at
    SECLEVEL=0, so TLS 1.0 and 1.1 handshakes succeed."""
    import ssl
    import warnings

    from reference_servers.runtime.settings import Settings

    def tls_context(self: Settings) -> ssl.SSLContext | None:
        if self.cert is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.load_cert_chain(self.cert, self.key)
        return context

    Settings.tls_context = tls_context


# ---- LIFE ---------------------------------------------------------------------------------


@_mutant("no-graceful-shutdown", "serial", ("LIFE",), ("CH-LIFE-5", "CH-LIFE-7"))
def _no_graceful_shutdown() -> None:
    """SIGTERM and SIGINT just sys.exit(0): the server exits at once, closing connections without
    -ERR SHUTDOWN and without finishing the requests it had received."""
    import signal
    import sys

    from reference_servers.runtime.stop import StopSignal

    def leave(signum: int, frame: object) -> None:
        sys.exit(0)

    def install(self: StopSignal) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, leave)

    StopSignal.install = install


@_mutant("children-keep-the-listener", "process-per-connection", ("LIFE",), ("CH-LIFE-4",))
def _children_keep_the_listener() -> None:
    """A forked child never closes the listening sockets it inherited: while it serves a request, the
    port stays open after the stop signal, and a new client is queued instead of refused."""
    from reference_servers.runtime.admission import Admission

    def close_inherited(self: Admission) -> None:
        self.refusals.close()
        self._context.listeners = []  # forgotten, not closed: they live as long as the child

    Admission.close_inherited = close_inherited


@_mutant("ready-not-flushed", "thread-pool", ("LIFE",), ("CH-LIFE-1",))
def _ready_not_flushed() -> None:
    """The READY line is print()ed without a flush: on a pipe, stdout is block-buffered, so the
    supervisor sees it only when the server exits."""
    from reference_servers.runtime import launch
    from reference_servers.runtime.listeners import Listener

    def announce_ready(listeners: list[Listener]) -> None:
        plain = listeners[0].sock.getsockname()
        line = f"READY cloudhash/1 {plain[0]} {plain[1]}"
        for listener in listeners[1:]:
            line += f" tls={listener.sock.getsockname()[1]}"
        print(line)

    launch.announce_ready = announce_ready


@_mutant("stdout-logging", "process-per-connection", ("LIFE",), ("CH-LIFE-3",))
def _stdout_logging() -> None:
    """Logs every accepted connection with print() to stdout, the supervisor's control channel, where
    nothing but the READY line may appear."""
    import socket

    from reference_servers.runtime.context import Context
    from reference_servers.runtime.listeners import Listener
    from reference_servers.runtime.session import Session

    reference = Context.session

    def session(self: Context, sock: socket.socket, listener: Listener, now: float) -> Session:
        host, port = sock.getpeername()[:2]
        print(f"connection from {host}:{port}", flush=True)
        return reference(self, sock, listener, now)

    Context.session = session


# ---- ROBUST -------------------------------------------------------------------------------


@_mutant("unbounded-output", "thread-pool", ("ROBUST",), ("CH-ROBUST-1",))
def _unbounded_output() -> None:
    """Runs every complete request it has read, however much output already waits: its 1 MiB mark
    only stops further reads (the reference servers' own bug before CH-ROBUST-1), so 64 pipelined
    GETs of a 1 MB value, 576 bytes of requests, buffer 64 MB for a client that never reads."""
    from reference_servers.core import Close, Send, StartTLS
    from reference_servers.runtime.session import LINGER_SECONDS, Session

    def _pump(self: Session, now: float, *, bounded: bool = True) -> None:
        conn = self.conn
        assert conn is not None
        while not self._starttls_pending and (event := conn.next_event(now)) is not None:
            if isinstance(event, Send):
                self._write(event.data)
            elif isinstance(event, StartTLS):
                self._starttls_pending = True
            elif isinstance(event, Close):
                self._close_by = now + LINGER_SECONDS
        self._after_io(now)

    Session._pump = _pump


@_mutant("mark-never-resumes", "preforking", ("ROBUST",), ("CH-ROBUST-1",))
def _mark_never_resumes() -> None:
    """Stops at the output mark before its writes are flushed, and counts on the socket's writability
    to resume: when the kernel takes the whole output at once, no writability event ever comes, and a
    client that pipelined replies past the mark waits for them forever (the reference servers' first
    fix of CH-ROBUST-1 had it)."""
    from reference_servers.core import Close, Send, StartTLS
    from reference_servers.runtime.session import LINGER_SECONDS, Session

    def _pump(self: Session, now: float, *, bounded: bool = True) -> None:
        conn = self.conn
        assert conn is not None
        while (
            not self._starttls_pending
            and not (bounded and self.output_full)  # the mark, judged before the kernel took anything
            and (event := conn.next_event(now)) is not None
        ):
            if isinstance(event, Send):
                self._write(event.data)
            elif isinstance(event, StartTLS):
                self._starttls_pending = True
            elif isinstance(event, Close):
                self._close_by = now + LINGER_SECONDS
        self._after_io(now)

    Session._pump = _pump


@_mutant("timers-keep-closed-connections", "evented", ("ROBUST",), ("CH-ROBUST-4",))
def _timers_keep_closed_connections() -> None:
    """A closed connection's timer stays in the heap until it comes due, as in a heap that drops
    entries only from its top: with an older connection open, every short connection after it is
    kept in memory until its idle deadline (the reference evented server's bug before CH-ROBUST-4)."""
    from reference_servers.runtime.session import Session
    from reference_servers.runtime.sessions import SessionSet

    def _refresh(self: SessionSet, session: Session) -> None:
        fd = session.fileno()
        if session.closed:
            # (no self._timers.discard(session) here)
            if self._sessions.get(fd) is session:
                del self._sessions[fd]
                del self._masks[fd]
                if self._on_closed is not None:
                    self._on_closed(session)
            return
        mask = self._mask(session)
        if mask != self._masks[fd]:
            self._masks[fd] = mask
            self._epoll.modify(fd, mask)
        self._schedule(session)

    SessionSet._refresh = _refresh


@_mutant("descriptor-leak-on-reset", "hybrid", ("ROBUST",), ("CH-ROBUST-4",))
def _descriptor_leak_on_reset() -> None:
    """When a peer resets its connection, the session takes the socket out of its event loop and
    forgets it without closing the descriptor, as a C server whose error path lacks its close():
    every RST leaks one descriptor, until accept() fails with EMFILE."""
    import contextlib

    from reference_servers.runtime.session import READ_CHUNK, Session
    from reference_servers.runtime.sessions import SessionSet

    reference_refresh = SessionSet._refresh
    leaked: set[int] = set()

    def forget(self: Session) -> None:
        if not self.closed:
            self.closed = True
            leaked.add(self.sock.detach())  # the descriptor stays open, and nothing will close it

    def on_readable(self: Session, now: float) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except ConnectionResetError:
            forget(self)  # the reference: self.abort()
            return
        except OSError:
            self.abort()
            return
        if self._close_by is not None:
            if not data:
                self.abort()
            return
        if self._tls is None:
            assert self.conn is not None
            self.conn.receive_data(data)
        elif not self._feed_tls(data):
            return
        self._pump(now)

    def _refresh(self: SessionSet, session: Session) -> None:
        if session.fileno() in leaked and self._sessions.get(session.fileno()) is session:
            with contextlib.suppress(OSError):
                self._epoll.unregister(session.fileno())  # an open descriptor stays in the epoll set
            leaked.discard(session.fileno())
        reference_refresh(self, session)

    Session.on_readable = on_readable
    Session.on_hangup = forget
    SessionSet._refresh = _refresh


@_mutant("claim-sized-buffer", "serial", ("ROBUST",), ("CH-ROBUST-2", "CH-FRAME-12"))
def _claim_sized_buffer() -> None:
    """Believes a frame header up to its own sanity cap of 256 MiB: reserves a buffer of the claimed
    size as soon as the header is in, and checks max_frame only once the whole frame has arrived,
    so a header claiming 64 MiB costs 64 MiB while the body never comes."""
    from reference_servers.core.connection import ServerConnection
    from reference_servers.core.framing import HEADER, NEED_DATA, TOO_LONG, Cut

    sanity_cap = 256 << 20
    reference = ServerConnection._cut

    def _cut(self: ServerConnection) -> Cut:
        if not self._framed:
            return reference(self)
        if len(self._buffer) < HEADER.size:
            return NEED_DATA
        (length,) = HEADER.unpack_from(self._buffer)
        if length > sanity_cap:
            return TOO_LONG
        body: bytearray | None = getattr(self, "_body", None)
        if body is None or len(body) != length:
            self._body = bytearray(length)  # room for the frame, before it is known to fit
        if len(self._buffer) < HEADER.size + length:
            return NEED_DATA
        self._body = None
        if length > self._info.max_frame:
            return TOO_LONG
        return bytes(self._buffer[HEADER.size : HEADER.size + length]), HEADER.size + length

    ServerConnection._cut = _cut


@_mutant("crash-on-bad-utf8", "evented", ("ROBUST",), ("CH-ROBUST-3", "CH-ERR-2"))
def _crash_on_bad_utf8() -> None:
    """Builds the UNKNOWN error text with a strict UTF-8 decode of the command name: a name that is
    not valid UTF-8 (one byte above 0x7F will do) raises UnicodeDecodeError, which escapes the event
    loop and ends the server with every connection it serves."""
    from reference_servers.core import commands

    def _printable(data: bytes) -> str:
        return data.decode()

    commands._printable = _printable
