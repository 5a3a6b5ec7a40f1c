"""A CloudHash/1 server on asyncio, written as a student would write it from
PROTOCOL.md: the suite's test that a server built without our core reaches
conformance `core` (tests/test_guide.py).

It implements the core protocol and the `framed` feature. It cannot offer
`urgent`: asyncio and selectors never watch for POLLPRI, so an urgent byte is
invisible to it (Linux keeps the byte out of the stream by itself, which is
all CH-URGENT-1 and 2 ask of a server without the feature). No TLS either.

    python tests/servers/asyncio_student.py --port 4481 --idle 300 [--max-connections 32]

Standard library only. Each connection has two tasks: a reader that cuts the
byte stream into requests as they arrive, and an executor that answers them
one at a time. Keeping the reader apart lets the idle timer, half-close and
the shutdown deadline see every request that has arrived, even while a SLEEP
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import struct
import sys
import time

MAX_LINE = 8192
MAX_FRAME = 1 << 20
DRAIN_FOR = 0.5  # section 9: discard input for at most 500 ms after the FIN
SHUTDOWN_GRACE = 4.0  # section 16: requests in progress get 4 s after the signal
PENDING_LIMIT = 1024  # parsed requests held per connection before the reader waits
KEY = re.compile(rb"[^ \r\n\x00]{1,250}")
INTEGER = re.compile(rb"-?[0-9]+")
NO_ARGUMENTS = (b"PING", b"INFO", b"FRAMED", b"STARTTLS", b"QUIT")
ONE_ARGUMENT = (b"GET", b"DEL", b"INCR", b"SLEEP")

FRAMED_SWITCH = b"FRAMED"  # in line mode, this payload (any case) switches both directions to frames
# What the reader queues after the last request it could read when a line or frame is too long.
TOOLONG = object()


class Request:
    """A complete request, with the framing mode it arrived in."""

    __slots__ = ("framed", "payload")

    def __init__(self, payload: bytes, framed: bool) -> None:
        self.payload = payload
        self.framed = framed


class Server:
    def __init__(self, idle: float, max_connections: int) -> None:
        self.idle = idle  # seconds; 0 disables the timer
        self.max_connections = max_connections
        self.store: dict[bytes, bytes] = {}  # one event loop, one thread: every operation is atomic
        self.connections: set[Connection] = set()
        self.stopping = False
        self.deadline_passed = asyncio.Event()  # 4 s after the shutdown signal
        self.info = (
            b"proto=cloudhash/1 arch=asyncio concurrency=%d max_connections=%d overflow=busy"
            b" idle_timeout_ms=%d max_line=%d max_frame=%d features=framed impl=asyncio-student"
            % (max_connections, max_connections, round(idle * 1000), MAX_LINE, MAX_FRAME)
        )

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.max_connections:
            # BUSY is always a line, sent at once without reading the client's bytes.
            await final_close(reader, writer, b"-ERR BUSY too many connections\r\n")
            return
        connection = Connection(self, reader, writer)
        self.connections.add(connection)  # counted from the accept until the socket is closed
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    def begin_shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        asyncio.get_running_loop().call_later(SHUTDOWN_GRACE, self.deadline_passed.set)
        for connection in self.connections:
            connection.wake.set()  # idle ones send SHUTDOWN now


class Connection:
    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.pending: collections.deque[Request | object] = collections.deque()
        self.eof = False  # the client half-closed: answer what is complete, then close
        self.framed = False  # the executor's mode: replies are frames from FRAMED's +OK on
        self.wake = asyncio.Event()  # set when the reader adds something or shutdown begins
        self.room = asyncio.Event()  # set when the executor has taken requests off the queue
        self.last_activity = time.monotonic()  # accept, last complete request or last reply

    async def run(self) -> None:
        reading = asyncio.create_task(self.read_requests())
        try:
            final = await self.execute_requests()
        except OSError:  # the client reset the connection: nobody is left to answer
            final = None
        finally:
            reading.cancel()
            try:
                await reading
            except (asyncio.CancelledError, OSError):
                pass
        if final is None:  # the client half-closed and has had every answer
            self.writer.close()
        else:
            await final_close(self.reader, self.writer, final)

    # ---- the reader: bytes in, requests out --------------------------------

    async def read_requests(self) -> None:
        buffer = bytearray()
        framed = False  # the parser's mode, which switches at the exact byte after FRAMED's line
        while True:
            while True:  # take every complete request out of the buffer
                item, framed = take_request(buffer, framed)
                if item is None:
                    break
                self.pending.append(item)
                self.last_activity = time.monotonic()  # a complete request restarts the idle time
                self.wake.set()
                if item is TOOLONG:
                    return  # nothing after an oversized request is read or executed
                while len(self.pending) >= PENDING_LIMIT:  # a client that pipelines without reading
                    self.room.clear()
                    await self.room.wait()
            try:
                data = await self.reader.read(65536)  # whatever has arrived: any part of any request
            except OSError:  # a reset: treat it as the end of the input
                data = b""
            if not data:  # EOF: a partial request left in the buffer is dropped (CH-FRAME-20)
                self.eof = True
                self.wake.set()
                return
            buffer += data

    # ---- the executor: one request at a time, in order -----------------------

    async def execute_requests(self) -> bytes | None:
        """Answer requests until a final message is due; return it (None: just close)."""
        while True:
            if self.server.deadline_passed.is_set():
                return self.shutdown_replies()
            if not self.pending:
                if self.eof:
                    return None
                if self.server.stopping:
                    return self.encode(b"-ERR SHUTDOWN server is shutting down")
                if not await self.wait_for_request():
                    return self.encode(b"-ERR TIMEOUT idle for too long")
                continue
            item = self.pending.popleft()
            self.room.set()
            if item is TOOLONG:
                return self.encode(b"-ERR TOOLONG request too long")
            assert isinstance(item, Request)
            reply = await self.execute(item)
            if reply is None:  # the shutdown deadline came during a SLEEP
                self.pending.appendleft(item)
                return self.shutdown_replies()
            if reply == b"+BYE":
                return self.encode(reply)  # nothing pipelined after QUIT is executed
            self.writer.write(self.encode(reply))
            if not item.framed and item.payload.upper() == FRAMED_SWITCH:
                self.framed = True  # the +OK went out as a line; every later reply is a frame
            await self.writer.drain()
            self.last_activity = time.monotonic()  # every reply restarts the idle time

    async def wait_for_request(self) -> bool:
        """Wait for a request, EOF or the shutdown; False if the idle time ran out first."""
        while True:
            self.wake.clear()
            if self.pending or self.eof or self.server.stopping:
                return True
            if not self.server.idle:
                await self.wake.wait()
                continue
            left = self.last_activity + self.server.idle - time.monotonic()
            if left <= 0:  # never early: the timeout is sent only once it has fully elapsed
                return False
            try:
                await asyncio.wait_for(self.wake.wait(), left)
            except TimeoutError:
                pass  # loop round: check the clock again rather than trust the timer

    def shutdown_replies(self) -> bytes:
        """At the deadline: one SHUTDOWN per request still unanswered, in order."""
        count = sum(1 for item in self.pending if isinstance(item, Request)) or 1
        return self.encode(b"-ERR SHUTDOWN server is shutting down") * count

    def encode(self, reply: bytes) -> bytes:
        return struct.pack("!I", len(reply)) + reply if self.framed else reply + b"\r\n"

    async def execute(self, request: Request) -> bytes | None:
        reply = answer(request.payload, request.framed, self.server)
        if not isinstance(reply, float):
            return reply
        # A SLEEP: a timer, so the loop keeps serving every other connection.
        end = time.monotonic() + reply
        while (left := end - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self.server.deadline_passed.wait(), left)
                return None
            except TimeoutError:
                pass
        return b"+OK"


def take_request(buffer: bytearray, framed: bool) -> tuple[Request | object | None, bool]:
    """The next complete request cut off the front of ``buffer`` (None: need
    more bytes), and the parser's mode after it."""
    if framed:
        if len(buffer) < 4:
            return None, framed
        (size,) = struct.unpack("!I", buffer[:4])
        if size > MAX_FRAME:  # decided from the header alone: never wait for the body
            return TOOLONG, framed
        if len(buffer) < 4 + size:
            return None, framed
        payload = bytes(buffer[4 : 4 + size])
        del buffer[: 4 + size]
        return Request(payload, True), framed
    while True:
        end = buffer.find(b"\n", 0, MAX_LINE)
        if end == -1:
            return (TOOLONG if len(buffer) >= MAX_LINE else None), framed
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:  # an empty line is not a request: skip it without a trace
            # FRAMED without arguments switches the parse at the very next byte.
            return Request(line, False), line.upper() == FRAMED_SWITCH


def answer(payload: bytes, framed: bool, server: Server) -> bytes | float:
    """The reply to one payload (without framing), or the seconds a SLEEP lasts.

    Checks in the order of section 7: UNKNOWN, SYNTAX, STATE, then the command's own errors."""
    command, space, rest = payload.partition(b" ")
    command = command.upper()  # folds only a-z
    store = server.store
    if command == b"ECHO":
        return b"$" + rest if space else b"-ERR SYNTAX ECHO takes data"
    if command == b"SET":
        key, value_space, value = rest.partition(b" ")
        if not (space and value_space and KEY.fullmatch(key)):
            return b"-ERR SYNTAX SET takes a key and a value"
        store[key] = value
        return b"+OK"
    if command not in NO_ARGUMENTS + ONE_ARGUMENT:
        if not payload:
            return b"-ERR SYNTAX empty frame"  # only a zero-length frame has no payload
        return b"-ERR UNKNOWN unknown command"
    args = rest.split(b" ") if space else []
    if len(args) != (1 if command in ONE_ARGUMENT else 0) or b"" in args:
        return b"-ERR SYNTAX wrong arguments for " + command
    if command in (b"GET", b"DEL", b"INCR") and not KEY.fullmatch(args[0]):
        return b"-ERR SYNTAX invalid key"
    if command == b"SLEEP" and not args[0].isdigit():
        return b"-ERR SYNTAX SLEEP takes milliseconds"
    if command == b"PING":
        return b"+PONG"
    if command == b"INFO":
        return b"$" + server.info
    if command == b"QUIT":
        return b"+BYE"
    if command == b"FRAMED":
        return b"-ERR STATE already framed" if framed else b"+OK"
    if command == b"STARTTLS":
        return b"-ERR STATE no TLS here"
    if command == b"SLEEP":
        digits = args[0].lstrip(b"0")
        if len(digits) > 5 or int(digits or b"0") > 60000:
            return b"-ERR RANGE SLEEP takes 0 to 60000 ms"
        return int(digits or b"0") / 1000
    key = args[0]
    if command == b"GET":
        value = store.get(key)
        if value is None:
            return b"_"
        if b"\n" in value and not framed:
            return b"-ERR STATE value contains LF; read it in framed mode"
        return b"$" + value
    if command == b"DEL":
        return b":1" if store.pop(key, None) is not None else b":0"
    number = parse_int64(store.get(key, b"0"))  # INCR
    if number is None:
        return b"-ERR TYPE value is not a 64-bit integer"
    if number == 2**63 - 1:
        return b"-ERR RANGE INCR would overflow"
    store[key] = b"%d" % (number + 1)
    return b":%d" % (number + 1)


def parse_int64(value: bytes) -> int | None:
    if not INTEGER.fullmatch(value) or len(value.lstrip(b"-0")) > 19:  # before int(): no huge numbers
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


async def final_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, final: bytes) -> None:
    """Section 9: the final message, FIN, then discard input until EOF or 500 ms, then close."""
    try:
        writer.write(final)
        await asyncio.wait_for(writer.drain(), DRAIN_FOR)
        writer.write_eof()
        end = time.monotonic() + DRAIN_FOR
        while (left := end - time.monotonic()) > 0 and await asyncio.wait_for(reader.read(65536), left):
            pass
    except (OSError, TimeoutError):
        pass  # reset by the client, or the drain ran out of time
    finally:
        writer.close()


async def serve(port: int, idle: float, max_connections: int, host: str = "127.0.0.1") -> None:
    server = Server(idle, max_connections)
    listener = await asyncio.start_server(
        server.accept, host, port, backlog=max(max_connections, 1024), reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, bound_port = listener.sockets[0].getsockname()[:2]
    print(f"READY cloudhash/1 {host} {bound_port}", flush=True)  # a pipe is block-buffered: flush
    await stop.wait()
    listener.close()  # new connections are refused from now on
    server.begin_shutdown()
    # Every connection ends by the 4 s deadline plus its 500 ms drain; exit 0 within 5 s regardless.
    end = time.monotonic() + SHUTDOWN_GRACE + DRAIN_FOR + 0.2
    while server.connections and time.monotonic() < end:
        await asyncio.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description="A CloudHash/1 server on asyncio (core and framed).")
    parser.add_argument("--port", type=int, required=True, help="0 lets the OS choose")
    parser.add_argument("--idle", type=float, default=300.0, help="idle timeout in seconds; 0 disables it")
    parser.add_argument("--max-connections", type=int, default=32)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0 in a container)")
    args = parser.parse_args()
    if args.idle < 0 or args.max_connections < 1:
        parser.error("--idle must be >= 0 and --max-connections >= 1")
    try:
        asyncio.run(serve(args.port, args.idle, args.max_connections, args.host))
    except OSError as error:  # the port is taken, say
        print(f"asyncio_student: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
