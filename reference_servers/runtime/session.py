"""One accepted socket: raw bytes <-> optional TLS <-> the protocol core.

A Session never blocks. Its owner watches ``fileno()`` for what
``wants_read``/``wants_write`` say (and always for urgent data), calls the
matching ``on_*`` method, and calls ``on_timer`` once ``deadline()`` passes.
TLS runs through memory BIOs, so the raw socket stays ours: that is what lets
the urgent byte be read beside an encrypted stream.

Replies wait in the session's output buffer until the kernel takes them. Once
that pending output reaches the mark (``max_output``, CH-ROBUST-1), the session
neither runs the connection's next request nor reads from it until the peer
has read enough for the output to drop below the mark again, so a peer that
never reads holds at most the mark plus one reply.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl

from ..core import Close, Send, ServerConnection, StartTLS

LINGER_SECONDS = 0.5
READ_CHUNK = 65536
SHUTDOWN_READS = 16  # at most this many chunks are taken in at the stop (what the kernel holds is bounded)
OUTPUT_HIGH_WATER = 1 << 20  # the default mark; INFO declares it as max_output


class Session:
    def __init__(
        self,
        sock: socket.socket,
        conn: ServerConnection | None,
        now: float,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        max_output: int = OUTPUT_HIGH_WATER,
    ) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.conn = conn
        self.closed = False
        self._fd = sock.fileno()
        self._out = bytearray()
        self._max_output = max_output
        self._tls_context = tls_context
        self._tls: ssl.SSLObject | None = None
        # Made with the TLS object, when a handshake begins: a plaintext
        # connection (and a forked child that serves one) never pays for them.
        self._tls_in: ssl.MemoryBIO
        self._tls_out: ssl.MemoryBIO
        self._handshaking = False
        self._starttls_pending = False
        self._close_by: float | None = None  # set once the core said Close
        self._write_shut = False
        if implicit_tls:
            self._begin_tls()

    @classmethod
    def refuse(cls, sock: socket.socket, message: bytes, now: float) -> Session:
        """A connection over the limit: say ``message`` (maybe nothing) and close."""
        session = cls(sock, None, now)
        session._out += message
        session._close_by = now + LINGER_SECONDS
        session._after_io(now)
        return session

    def fileno(self) -> int:
        return self._fd

    # ---- what to watch -------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        if self.closed or self._starttls_pending:
            return False
        if self._close_by is not None or self._handshaking:
            return True
        assert self.conn is not None
        return self.conn.wants_input and not self.output_full

    @property
    def wants_write(self) -> bool:
        return bool(self._out) and not self.closed

    @property
    def output_full(self) -> bool:
        """Pending output at or over the mark: nothing runs and nothing is read until it drains."""
        return len(self._out) >= self._max_output

    @property
    def pending_output(self) -> int:
        """Bytes of replies written by the core and not yet taken by the kernel."""
        return len(self._out)

    def deadline(self) -> float | None:
        if self.closed:
            return None
        if self._close_by is not None:
            return self._close_by
        if self._handshaking:
            assert self.conn is not None
            return self.conn.idle_deadline()
        if self.output_full:
            # Its replies are still being sent, so the connection is not idle,
            # and a SLEEP that ends meanwhile answers once the output drains.
            return None
        assert self.conn is not None
        return self.conn.deadline()

    # ---- events --------------------------------------------------------------

    def on_urgent(self, now: float) -> None:
        try:
            self.sock.recv(1, socket.MSG_OOB)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno == errno.EINVAL:  # nothing pending (any more)
                return
            self.abort()
            return
        if self.conn is not None and self._close_by is None and not self._handshaking:
            self.conn.receive_urgent(now)
            self._pump(now)

    def on_readable(self, now: float) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
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

    def on_writable(self, now: float) -> None:
        self._after_io(now)
        if self._serving and not self.output_full:
            self._pump(now)  # below the mark (again): run what waited for it

    def on_timer(self, now: float) -> None:
        if self.closed:
            return
        deadline = self.deadline()
        if self._close_by is not None or self._handshaking:
            if deadline is not None and now >= deadline:
                self.abort()  # a handshake that outlives the idle timer ends without a word
            return
        self._pump(now)

    def on_hangup(self) -> None:
        """The peer is gone in both directions (reset): nobody is left to answer."""
        self.abort()

    def begin_shutdown(self, now: float) -> None:
        if self._handshaking:
            self.abort()
        elif self.conn is not None and not self.closed:
            # What the kernel already holds for this connection was received before the
            # signal, even if this process had not been scheduled to read it (a busy
            # machine, a child just forked): it is taken in first, and answered normally.
            for _ in range(SHUTDOWN_READS):
                if not (self._serving and self.wants_read and _readable_now(self.sock)):
                    break
                self.on_readable(now)
            self.conn.begin_shutdown()
            self._pump(now)

    def force_shutdown(self, now: float) -> None:
        if self._handshaking:
            self.abort()
        elif self.conn is not None and not self.closed:
            self.conn.force_shutdown()
            # Past the mark too: the SHUTDOWNs (one small message per request
            # the core holds) and the close must be queued now, or a peer that
            # never reads would keep the server from exiting.
            self._pump(now, bounded=False)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    # ---- internals -----------------------------------------------------------

    @property
    def _serving(self) -> bool:
        """The core may run requests: not closing, not in a handshake, not refused."""
        return self.conn is not None and not self.closed and self._close_by is None and not self._handshaking

    def _pump(self, now: float, *, bounded: bool = True) -> None:
        """Take the core's events while the output is under the mark (each
        Send joins the replies of as many pipelined requests as fit the room
        left under it, plus one); ``bounded=False`` takes them all, one
        request each.

        The mark counts what the kernel has not taken, so the output is handed
        to the kernel before the mark is judged, and judged again after the
        last hand-over: a pump that stops at the mark is resumed only by the
        peer's reading (on_writable), which never comes if the kernel took
        everything meanwhile."""
        conn = self.conn
        assert conn is not None
        while True:
            at_mark = False
            while not self._starttls_pending:
                if bounded and self.output_full:
                    self._flush()
                    if self.closed or self.output_full:
                        at_mark = True
                        break
                # Up to the mark, pipelined requests come as one Send (the core joins their replies).
                event = conn.next_event(now, self._max_output - len(self._out) if bounded else 0)
                if event is None:
                    break
                if isinstance(event, Send):
                    self._write(event.data)
                elif isinstance(event, StartTLS):
                    self._starttls_pending = True
                elif isinstance(event, Close):
                    self._close_by = now + LINGER_SECONDS
            self._after_io(now)
            if not (at_mark and self._serving and not self.output_full):
                return

    def _after_io(self, now: float) -> None:
        held_back = bool(self._out)
        self._flush()
        if self.closed or self._out:
            return
        if held_back and self._serving:
            assert self.conn is not None
            self.conn.replies_sent(now)
        if self._starttls_pending:
            self._starttls_pending = False
            self._begin_tls()
            self._flush()
        elif self._close_by is not None and not self._write_shut:
            self._write_shut = True
            self._close_by = max(self._close_by, now + LINGER_SECONDS)
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.abort()

    def _write(self, data: bytes) -> None:
        if self._tls is None:
            self._out += data
            return
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self.abort()
            return
        self._out += self._tls_out.read()

    def _flush(self) -> None:
        while self._out and not self.closed:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            except OSError:
                self.abort()
                return
            del self._out[:sent]

    def _begin_tls(self) -> None:
        assert self._tls_context is not None
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = self._tls_context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        self._handshaking = True
        self._feed_tls(None)

    def _feed_tls(self, data: bytes | None) -> bool:
        """Run what arrived (None: nothing new, b"": EOF) through TLS to the core.

        False when nothing reached the core: mid-handshake, or the session ended.
        """
        tls, conn = self._tls, self.conn
        assert tls is not None and conn is not None
        if data:
            self._tls_in.write(data)
        elif data is not None:
            self._tls_in.write_eof()
        try:
            if self._handshaking:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    if self._tls_in.eof:
                        self.abort()
                    else:
                        self._out += self._tls_out.read()
                        self._flush()
                    return False
                self._handshaking = False
            plain, eof = bytearray(), False
            while True:
                try:
                    chunk = tls.read(READ_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    eof = True
                    break
                if not chunk:
                    eof = True
                    break
                plain += chunk
        except (ssl.SSLError, OSError):
            # Send the alert (a refused TLS 1.1 hello gets handshake_failure), then go.
            self._out += self._tls_out.read()
            self._flush()
            self.abort()
            return False
        if plain:
            conn.receive_data(bytes(plain))
        if eof:
            conn.receive_data(b"")
        self._out += self._tls_out.read()
        return True


def _readable_now(sock: socket.socket) -> bool:
    poller = select.poll()  # not select(): a C10K server's descriptors go far past FD_SETSIZE
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
