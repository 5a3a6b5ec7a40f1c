"""Shared by the client tests: client processes, small adversarial servers and test certificates.

An Adversary is a server on a loopback address that runs a handler on each
connection, one at a time, in a thread. Every socket operation has a timeout;
nothing here sleeps to synchronise (the one pause, in answer(), is pacing).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

IO_TIMEOUT = 10.0  # every socket operation of an adversary
RUN_TIMEOUT = 20.0  # every client process
QUICK = 2.0  # "at once": well under the 5 s default read timeout, interpreter start included
OK, ERROR_REPLY, USAGE, DNS, CONNECT, TIMEOUT, TLS, PROTOCOL = range(8)  # PROTOCOL.md section 17

Handler = Callable[[socket.socket], None]


# ---- running a client ------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    status: int
    stdout: bytes
    stderr: str
    elapsed: float


class Client:
    """One client process, in its own session; killed and reaped on leaving the ``with``."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=RUN_TIMEOUT)  # reaps it and closes the pipes

    def running_after(self, seconds: float) -> bool:
        """Whether it is still running ``seconds`` after it started (waits until then, or its exit)."""
        try:
            self.process.wait(timeout=max(0.0, self.start + seconds - time.monotonic()))
        except subprocess.TimeoutExpired:
            return True
        return False

    def finish(self) -> Run:
        stdout, stderr = self.process.communicate(timeout=RUN_TIMEOUT)
        run = Run(self.process.returncode, stdout, stderr.decode(errors="replace"), time.monotonic() - self.start)
        assert "Traceback" not in run.stderr, (self.argv, run.stderr)
        if run.status >= USAGE:
            assert len(run.stderr.strip().splitlines()) == 1, f"want one line of diagnostics: {run}"
        return run


# ---- adversaries ---------------------------------------------------------------------------


class Adversary:
    """A server on ``host`` (127.0.0.1 unless told) that runs ``handler`` on
    each connection, one at a time, in a thread; optionally TLS (the handshake
    happens before the handler)."""

    def __init__(self, handler: Handler, context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.context = context
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family)
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.errors: list[BaseException] = []
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="adversary", daemon=True)

    def __enter__(self) -> Adversary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake_writer.send(b"x")
        self._thread.join(IO_TIMEOUT + 5)
        alive = self._thread.is_alive()
        for sock in (self.listener, self._wake_reader, self._wake_writer):
            sock.close()
        assert not alive, "the adversary's thread did not finish"

    def _serve(self) -> None:
        while True:
            readable, _, _ = select.select([self.listener, self._wake_reader], [], [], 30)
            if self._wake_reader in readable or not readable:
                return
            conn, _ = self.listener.accept()
            self.connections += 1
            conn.settimeout(IO_TIMEOUT)
            try:
                if self.context is None:
                    self.handler(conn)
                else:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        self.handler(tls)
            except OSError as exc:  # ssl.SSLError too: a refused handshake is expected in some tests
                self.errors.append(exc)
            finally:
                conn.close()


def read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


def read_exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_for_close(conn: socket.socket) -> None:
    """Until the client closes its end (it has exited), reading what it sends."""
    with contextlib.suppress(OSError):
        while conn.recv(4096):
            pass


def answer(reply: bytes, *, requests: int = 1, close: bool = True, one_byte_segments: bool = False) -> Handler:
    """Read ``requests`` lines, send ``reply``, then close (FIN) or wait for the client to go."""

    def handle(conn: socket.socket) -> None:
        for _ in range(requests):
            read_line(conn)
        if one_byte_segments:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for index in range(len(reply)):
                conn.sendall(reply[index : index + 1])
                # Pacing, not synchronisation: a gap so that each byte travels
                # in its own segment and reaches the client on its own.
                time.sleep(0.003)
        else:
            conn.sendall(reply)
        if close:
            conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn)

    return handle


def framed_answer(reply: bytes, *, one_byte_segments: bool = False) -> Handler:
    """Accept FRAMED with +OK, read one frame, send ``reply`` raw, close."""

    def handle(conn: socket.socket) -> None:
        assert read_line(conn) == b"FRAMED\r\n"
        conn.sendall(b"+OK\r\n")
        length = int.from_bytes(read_exactly(conn, 4), "big")
        read_exactly(conn, length)
        answer(reply, requests=0, one_byte_segments=one_byte_segments)(conn)

    return handle


def silent(conn: socket.socket) -> None:
    """Accept, read the request, never answer."""
    read_line(conn)
    wait_for_close(conn)


@contextlib.contextmanager
def blackhole_port() -> Iterator[int]:
    """A loopback port that never answers a SYN: a listener whose accept queue
    (backlog 0: one connection) is full, so the kernel drops new SYNs, as a
    firewall or an unassigned address would."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.settimeout(IO_TIMEOUT)
        filler.connect(listener.getsockname())
        with socket.socket() as probe:
            probe.settimeout(0.2)
            try:
                probe.connect(listener.getsockname())
            except TimeoutError:
                pass
            else:
                raise AssertionError("a listener with a full accept queue still answered a SYN")
        yield int(listener.getsockname()[1])


# ---- certificates for the adversaries ----------------------------------------------


@dataclass(frozen=True)
class Trust:
    ca: trustme.CA
    ca_file: str  # what the client is given with --ca
    good: trustme.LeafCert  # localhost and 127.0.0.1, from the trusted CA


def make_trust(directory: Path) -> Trust:
    ca = trustme.CA(organization_name="reference client test CA")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Trust(ca, str(ca_file), ca.issue_cert("localhost", "127.0.0.1"))


def server_context(leaf: trustme.LeafCert, *, tls11_only: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls11_only:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    leaf.configure_cert(context)
    return context
