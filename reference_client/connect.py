"""Name resolution and connecting (CH-CLIENT-1 to CH-CLIENT-6).

Every A and AAAA record getaddrinfo returns is tried, in the resolver's order.
Each attempt is a non-blocking ``connect`` watched with ``select``, so its
timeout is exact whatever the kernel would do on its own (SYN retries, ARP);
an overall deadline, which counts the resolution too, bounds the whole phase.
With ``stagger`` set, attempts overlap as in Happy Eyeballs (RFC 8305): the
next address is started when the previous attempt fails or after ``stagger``
seconds, whichever comes first, and the first connection wins.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .status import ClientFailure, Exit

Log = Callable[[str], None]


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    type: socket.SocketKind
    proto: int
    sockaddr: tuple[Any, ...]

    def __str__(self) -> str:
        host, port = self.sockaddr[0], self.sockaddr[1]
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


def resolve(host: str, port: int, deadline: float) -> list[Address]:
    """Every A and AAAA record for ``host``, in the resolver's order.

    getaddrinfo blocks and cannot be interrupted, so it runs in a daemon
    thread and is waited for until ``deadline`` (a time.monotonic() value).
    """
    results: list[list[Address]] = []
    errors: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
            results.append(
                [
                    Address(family, kind, proto, tuple(sockaddr))
                    for family, kind, proto, _, sockaddr in infos
                    if family in (socket.AF_INET, socket.AF_INET6)
                ]
            )
        except (OSError, UnicodeError) as exc:  # gaierror, or a name IDNA cannot encode
            errors.append(exc)

    worker = threading.Thread(target=lookup, name="resolver", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise ClientFailure(Exit.DNS, f"no answer from the resolver for {host!r} within the deadline")
    if errors:
        exc = errors[0]
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ClientFailure(Exit.DNS, f"cannot resolve {host!r}: {reason}")
    addresses: list[Address] = []
    for address in results[0] if results else []:
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ClientFailure(Exit.DNS, f"{host!r} has no A or AAAA record")
    return addresses


@dataclass
class _Attempt:
    address: Address
    sock: socket.socket
    expires: float


def connect(
    addresses: list[Address],
    *,
    attempt_timeout: float,
    deadline: float,
    stagger: float | None = None,
    log: Log = lambda _: None,
) -> socket.socket:
    """The first socket that connects (non-blocking), or exit status 4."""
    waiting = list(addresses)
    running: list[_Attempt] = []
    failures: list[str] = []
    next_start = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                failures.extend(f"{a.address}: overall deadline expired" for a in running)
                raise ClientFailure(Exit.CONNECT, _summary(addresses, failures, deadline_hit=bool(waiting)))
            if waiting and (not running or (stagger is not None and now >= next_start)):
                address = waiting.pop(0)
                log(f"connecting to {address}")
                attempt, connected = _start(address, min(now + attempt_timeout, deadline), failures)
                if connected:
                    assert attempt is not None
                    return _won(attempt, running, log)
                if attempt is not None:
                    running.append(attempt)
                    next_start = now + (stagger or 0.0)
                continue
            if not running:
                raise ClientFailure(Exit.CONNECT, _summary(addresses, failures))
            wake = min(deadline, *(a.expires for a in running))
            if waiting and stagger is not None:
                wake = min(wake, next_start)
            socks = [a.sock for a in running]
            _, writable, broken = select.select([], socks, socks, max(0.0, wake - now))
            now = time.monotonic()
            for attempt in list(running):
                if attempt.sock in writable or attempt.sock in broken:
                    code = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0:
                        running.remove(attempt)
                        return _won(attempt, running, log)
                    _fail(attempt, os.strerror(code), running, failures, log)
                    next_start = now  # RFC 8305: a failure starts the next attempt at once
                elif now >= attempt.expires:
                    reason = "overall deadline expired" if attempt.expires >= deadline else "attempt timed out"
                    _fail(attempt, reason, running, failures, log)
                    next_start = now
    except BaseException:
        for attempt in running:
            attempt.sock.close()
        raise


def _start(address: Address, expires: float, failures: list[str]) -> tuple[_Attempt | None, bool]:
    try:
        sock = socket.socket(address.family, address.type, address.proto)
    except OSError as exc:
        failures.append(f"{address}: {exc.strerror or exc}")
        return None, False
    sock.setblocking(False)
    code = sock.connect_ex(address.sockaddr)
    if code == 0:
        return _Attempt(address, sock, expires), True
    if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
        return _Attempt(address, sock, expires), False
    sock.close()
    failures.append(f"{address}: {os.strerror(code)}")
    return None, False


def _fail(attempt: _Attempt, reason: str, running: list[_Attempt], failures: list[str], log: Log) -> None:
    attempt.sock.close()
    running.remove(attempt)
    failures.append(f"{attempt.address}: {reason}")
    log(f"{attempt.address}: {reason}")


def _won(winner: _Attempt, others: list[_Attempt], log: Log) -> socket.socket:
    for attempt in others:
        attempt.sock.close()
    others.clear()
    log(f"connected to {winner.address}")
    return winner.sock


def _summary(addresses: list[Address], failures: list[str], deadline_hit: bool = False) -> str:
    tried = "; ".join(failures) or "no attempt could be started"
    untried = " (the overall deadline expired before every address was tried)" if deadline_hit else ""
    count = len(addresses)
    return f"no connection to any of {count} address{'es' if count != 1 else ''}{untried}: {tried}"
