"""A minimal CloudHash/1 server: where docs/student-guide.md starts you off.

Standard library only, one thread per connection, blocking sockets. It speaks
line mode (PROTOCOL.md sections 4 to 7, 9 and 10) with one shared store, and
declares no optional feature and no idle timeout. Run it by hand:

    python3 docs/skeleton/server.py --port 4481     # then: nc 127.0.0.1 4481

and check it:

    sockspec run --cmd 'python3 docs/skeleton/server.py --port {port}' --only 'CH-FRAME-*'
"""

import argparse
import os
import re
import select
import signal
import socket
import sys
import threading
import time

MAX_LINE = 8192  # bytes per request line as received, terminator included (section 4)
MAX_CONNECTIONS = 64  # one thread each, so this also bounds the threads (CH-CONC-4)
INFO = (
    b"proto=cloudhash/1 arch=thread-per-connection"
    b" concurrency=%d max_connections=%d overflow=busy"
    b" idle_timeout_ms=0 max_line=%d max_frame=1048576 features=" % (MAX_CONNECTIONS, MAX_CONNECTIONS, MAX_LINE)
)  # idle_timeout_ms=0: this skeleton never times a connection out (section 12 is yours to add)
# ECHO and SET take the raw rest of the line (see execute); the others split it at SP.
NO_ARGUMENTS = (b"PING", b"INFO", b"FRAMED", b"STARTTLS", b"QUIT")
ONE_ARGUMENT = (b"GET", b"DEL", b"INCR", b"SLEEP")
KEY = re.compile(rb"[^ \r\n\x00]{1,250}")  # section 6: 1 to 250 bytes, none of SP CR LF NUL
INTEGER = re.compile(rb"-?[0-9]+")
DRAIN_FOR = 0.5  # section 9: read and discard input for at most 500 ms before closing

store: dict[bytes, bytes] = {}
store_lock = threading.Lock()  # INCR is read-modify-write: without the lock, threads lose updates
slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def execute(payload: bytes) -> bytes:
    """One request's payload in, its reply out (without CRLF).

    The checks run in the order of section 7: UNKNOWN, then SYNTAX, then
    STATE, then the command's own errors."""
    command, space, rest = payload.partition(b" ")
    command = command.upper()  # bytes.upper() folds only a-z, which is exactly CH-CMD-1
    if command == b"ECHO":  # ECHO's argument is the raw rest, spaces and all
        return b"$" + rest if space else b"-ERR SYNTAX ECHO takes data"
    if command == b"SET":  # the key, then everything after its SP is the value, verbatim
        key, value_space, value = rest.partition(b" ")
        if not (space and value_space and KEY.fullmatch(key)):
            return b"-ERR SYNTAX SET takes a key and a value"
        with store_lock:
            store[key] = value
        return b"+OK"
    if command not in NO_ARGUMENTS + ONE_ARGUMENT:
        return b"-ERR UNKNOWN unknown command"
    args = rest.split(b" ") if space else []  # "GET a " splits into [b"a", b""]: an empty argument
    if len(args) != (1 if command in ONE_ARGUMENT else 0) or b"" in args:
        return b"-ERR SYNTAX wrong arguments for " + command
    if command in (b"GET", b"DEL", b"INCR") and not KEY.fullmatch(args[0]):
        return b"-ERR SYNTAX invalid key"
    if command == b"SLEEP" and not args[0].isdigit():  # bytes.isdigit() means ASCII 0-9 only
        return b"-ERR SYNTAX SLEEP takes milliseconds"
    if command == b"PING":
        return b"+PONG"
    if command == b"INFO":
        return b"$" + INFO
    if command == b"QUIT":
        return b"+BYE"
    if command in (b"FRAMED", b"STARTTLS"):  # optional features this server does not declare
        return b"-ERR STATE not supported by this server"
    if command == b"SLEEP":
        digits = args[0].lstrip(b"0")
        if len(digits) > 5 or int(digits or b"0") > 60000:  # 100 digits must be RANGE, not an overflow
            return b"-ERR RANGE SLEEP takes 0 to 60000 ms"
        time.sleep(int(digits or b"0") / 1000)  # fine with a thread per connection; a reactor needs a timer
        return b"+OK"
    with store_lock:
        key = args[0]
        if command == b"GET":
            value = store.get(key)
            if value is None:
                return b"_"
            if b"\n" in value:  # only framed mode can store one; a line reply cannot carry it
                return b"-ERR STATE value contains LF"
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
    # Check the length before int(): a value of 5000 digits must be TYPE, not an exception.
    if not INTEGER.fullmatch(value) or len(value.lstrip(b"-0")) > 19:
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def close_after(conn: socket.socket, final: bytes) -> None:
    """Section 9: write, FIN, drain, close (unread input would send an RST, which can destroy the reply)."""
    try:
        conn.sendall(final)
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_FOR
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv(65536):
                break
    except OSError:
        pass  # a timeout or a reset: either way we are done with this socket
    finally:
        conn.close()


def serve(conn: socket.socket) -> None:
    """One connection: cut the byte stream into lines and answer each in order."""
    buffer = b""
    try:
        while True:
            end = buffer.find(b"\n", 0, MAX_LINE)  # an LF beyond MAX_LINE bytes comes too late
            if end == -1:
                if len(buffer) >= MAX_LINE:  # decide now: never wait for an LF (CH-FRAME-7)
                    return close_after(conn, b"-ERR TOOLONG line too long\r\n")
                data = conn.recv(65536)  # returns whatever has arrived: part of a line, or many lines
                if not data:  # EOF: every complete request was answered; a partial one is dropped
                    return conn.close()
                buffer += data
                continue
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.endswith(b"\r"):  # only the CR right before the LF belongs to the terminator
                line = line[:-1]
            if not line:  # an empty line is not a request: no reply
                continue
            reply = execute(line)
            if reply == b"+BYE":  # QUIT: nothing pipelined after it is executed
                return close_after(conn, b"+BYE\r\n")
            conn.sendall(reply + b"\r\n")
    except OSError:
        conn.close()  # the client reset the connection: nothing left to answer
    finally:
        slots.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4481, help="0 lets the OS choose")
    port = parser.parse_args().port  # a bad command line: argparse prints why and exits 2
    # SIGTERM and SIGINT end the process at once with status 0. (A graceful
    # shutdown, section 16, is yours to add: finish requests, then -ERR SHUTDOWN.)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: sys.exit(0))
    # create_server sets SO_REUSEADDR; a backlog of at least MAX_CONNECTIONS is CH-LIMIT-6.
    try:
        listener = socket.create_server(("127.0.0.1", port), backlog=max(MAX_CONNECTIONS, 128))
    except OSError as error:  # the port is taken, say: one line on stderr, exit 1
        sys.exit(f"server.py: cannot listen on port {port}: {error.strerror}")
    host, port = listener.getsockname()[:2]
    # stdout to a pipe is block-buffered: without flush the suite never sees READY.
    print(f"READY cloudhash/1 {host} {port}", flush=True)
    # A signal that comes just before accept() is handled only once it returns. The C-level
    # handler writes this pipe at once, so wait for either in select, then accept.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_write)
    while True:
        if listener not in select.select([listener, wake_read], [], [])[0]:
            continue  # a signal woke us: its handler has run
        conn, _ = listener.accept()
        if slots.acquire(blocking=False):
            # Python runs signal handlers only in the main thread, but the kernel may
            # hand SIGTERM to any thread that does not block it. A new thread inherits
            # the mask of the thread that starts it, so block them here.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        else:
            # Over the limit: BUSY at once, without reading. The client has sent nothing yet, so
            # closing right after the FIN causes no RST, and accept never waits on a refused client.
            try:
                conn.sendall(b"-ERR BUSY too many connections\r\n")
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # it is already gone
            conn.close()


if __name__ == "__main__":
    main()
