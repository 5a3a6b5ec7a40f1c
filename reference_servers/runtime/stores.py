"""Stores for the runtime: one behind a lock for threads, one in its own
process for architectures whose workers share no memory.

The locks come from ``_thread``, not ``threading``: once ``threading`` is
imported, every fork runs its after-fork hook in the child, which touches
(and so copies) more pages: a process-per-connection child took 415 page
faults to start with it, 350 without. The forking architectures do not
import it."""

from __future__ import annotations

import _thread
import os
import selectors
import signal
import socket

from ..core import DictStore
from ..core import store_wire as wire


class LockedStore:
    """Every operation under one lock: atomic and linearizable across threads."""

    def __init__(self, *, canonical_integers: bool = False) -> None:
        self._store = DictStore(canonical_integers=canonical_integers)
        self._lock = _thread.allocate_lock()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._store.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._store.set(key, value)

    def delete(self, key: bytes) -> bool:
        with self._lock:
            return self._store.delete(key)

    def incr(self, key: bytes) -> int:
        with self._lock:
            return self._store.incr(key)


class StoreProcess:
    """A single-threaded process that owns the data; workers talk to it over a
    Unix socket. One thread applying requests in arrival order is what makes
    every operation atomic and linearizable across processes."""

    def __init__(self, *, canonical_integers: bool = False) -> None:
        self.address = f"\0sockspec-store-{os.getpid()}-{os.urandom(6).hex()}"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(1024)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                _serve_store(listener, parent, DictStore(canonical_integers=canonical_integers))
            finally:
                os._exit(0)
        listener.close()

    def client(self) -> SharedStore:
        return SharedStore(self.address)

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _serve_store(listener: socket.socket, parent: int, store: DictStore) -> None:
    # The master decides when the store goes; a Ctrl-C to the process group
    # must not take the data away while workers drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    buffers: dict[socket.socket, bytearray] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                client, _ = listener.accept()
                buffers[client] = bytearray()
                selector.register(client, selectors.EVENT_READ)
                continue
            data = sock.recv(65536)
            if not data:
                selector.unregister(sock)
                buffers.pop(sock)
                sock.close()
                continue
            buffer = buffers[sock]
            buffer += data
            replies = bytearray()
            while (cut := wire.cut_request(buffer)) is not None:
                op, k, v, used = cut
                del buffer[:used]
                replies += wire.apply(store, op, k, v)
            sock.sendall(replies)


class SharedStore:
    """The worker's side: one blocking round trip per operation.

    The connection is made per process, on first use, so a forked child
    never shares its parent's stream."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._owner = -1
        self._lock = _thread.allocate_lock()

    def get(self, key: bytes) -> bytes | None:
        return self._call(wire.OP_GET, key)

    def set(self, key: bytes, value: bytes) -> None:
        self._call(wire.OP_SET, key, value)

    def delete(self, key: bytes) -> bool:
        return self._call(wire.OP_DEL, key) == b"1"

    def incr(self, key: bytes) -> int:
        return int(self._call(wire.OP_INCR, key) or b"0")

    def _call(self, op: int, key: bytes, value: bytes = b"") -> bytes | None:
        with self._lock:
            sock = self._connection()
            sock.sendall(wire.encode_request(op, key, value))
            header = _receive_exactly(sock, wire.RESPONSE_HEADER.size)
            status, length = wire.RESPONSE_HEADER.unpack(header)
            payload = _receive_exactly(sock, length)
        return wire.decode_response(status, payload)

    def _connection(self) -> socket.socket:
        if self._sock is None or self._owner != os.getpid():
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(self._address)
            self._owner = os.getpid()
        return self._sock


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the store process went away")
        data += chunk
    return bytes(data)
