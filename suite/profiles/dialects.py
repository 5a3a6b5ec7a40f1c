"""How each profile speaks: its codec, its way to say PING, ECHO, SET, GET,
DEL and INCR, its error grammar and its blocking request. A check written
against a Dialect runs under either profile (the ``dialect`` fixture gives
the run's); one that needs a protocol's own corners stays profile-specific.

    dialect = dialect_for("resp2")
    dialect.ask(probe, dialect.echo(b"a\\r\\nb"), why="binary-safe")
    dialect.expect_error(probe, "unknown", why="FOO is no command")

The expected replies are the suite's own, written from each profile's spec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..escape import escape
from ..probe import Probe
from . import CLOUDHASH, RESP2, Profile, resp

__all__ = ["CloudHashDialect", "Dialect", "Exchange", "Resp2Dialect", "dialect_for"]


@dataclass(frozen=True)
class Exchange:
    """One request, as bytes on the wire, and the reply the profile's spec gives for it."""

    request: bytes
    reply: bytes
    what: str  # for messages: "ECHO a\r\nb"


class Dialect(ABC):
    profile: Profile

    # ---- the codec --------------------------------------------------------------

    @abstractmethod
    def encode(self, *args: bytes) -> bytes:
        """One request in the profile's ordinary form."""

    @abstractmethod
    def read_reply(self, probe: Probe, timeout: float | None = None) -> bytes | None:
        """One whole reply, as received; None on the connection's end or the deadline."""

    # ---- the replies ------------------------------------------------------------

    @abstractmethod
    def status(self, word: bytes) -> bytes: ...

    @abstractmethod
    def value(self, data: bytes | None) -> bytes: ...

    @abstractmethod
    def integer(self, number: int) -> bytes: ...

    @abstractmethod
    def error_prefix(self, kind: str) -> bytes:
        """What an error reply of ``kind`` begins with: unknown, arity, not-integer, overflow, protocol."""

    @abstractmethod
    def blocking(self, key: bytes, seconds: int) -> Exchange:
        """A request that holds its connection ``seconds`` and then answers."""

    # ---- commands ---------------------------------------------------------------

    def _exchange(self, reply: bytes, *args: bytes) -> Exchange:
        return Exchange(self.encode(*args), reply, escape(b" ".join(args), 80))

    def ping(self) -> Exchange:
        return self._exchange(self.status(b"PONG"), b"PING")

    def echo(self, data: bytes) -> Exchange:
        return self._exchange(self.value(data), b"ECHO", data)

    def set(self, key: bytes, data: bytes) -> Exchange:
        return self._exchange(self.status(b"OK"), b"SET", key, data)

    def get(self, key: bytes, held: bytes | None) -> Exchange:
        return self._exchange(self.value(held), b"GET", key)

    def delete(self, key: bytes, existed: bool) -> Exchange:
        return self._exchange(self.integer(1 if existed else 0), b"DEL", key)

    def incr(self, key: bytes, result: int) -> Exchange:
        return self._exchange(self.integer(result), b"INCR", key)

    # ---- conversations ----------------------------------------------------------

    def ask(self, probe: Probe, exchange: Exchange, why: str = "", timeout: float | None = None) -> None:
        """Send the request and read its reply before anything else is sent."""
        probe.send(exchange.request)
        self.expect_reply(probe, exchange.reply, why or f"the reply to {exchange.what}", timeout)

    def expect_reply(self, probe: Probe, reply: bytes, why: str, timeout: float | None = None) -> None:
        got = self.read_reply(probe, timeout)
        if got != reply:
            raise self._mismatch(probe, f"expected {escape(reply, 120)} ({why})", got, reply)

    def expect_error(self, probe: Probe, kind: str, why: str, timeout: float | None = None) -> bytes:
        """An error reply of ``kind`` (its beginning as the spec gives it; any text after)."""
        prefix = self.error_prefix(kind)
        got = self.read_reply(probe, timeout)
        if got is None or not got.startswith(prefix) or not got.endswith(b"\r\n"):
            raise self._mismatch(probe, f"expected an error starting {escape(prefix)} ({why})", got, prefix)
        return got

    def _mismatch(self, probe: Probe, summary: str, got: bytes | None, expected: bytes) -> AssertionError:
        if got is None:
            pending = probe.wire.pending()
            what = probe.wire.ending.value if probe.wire.ending.name != "OPEN" else "nothing before the deadline"
            summary += f", got {what}" + (f" after {escape(pending)}" if pending else "")
        return probe.violation(summary, expected=expected, actual=got if got is not None else probe.wire.pending())


class CloudHashDialect(Dialect):
    """CloudHash/1 in line mode (PROTOCOL.md sections 4 to 7)."""

    profile = CLOUDHASH

    def encode(self, *args: bytes) -> bytes:
        return b" ".join(args) + b"\r\n"

    def read_reply(self, probe: Probe, timeout: float | None = None) -> bytes | None:
        return probe.wire.read_line(probe.timeout if timeout is None else timeout)

    def status(self, word: bytes) -> bytes:
        return b"+" + word + b"\r\n"

    def value(self, data: bytes | None) -> bytes:
        return b"_\r\n" if data is None else b"$" + data + b"\r\n"

    def integer(self, number: int) -> bytes:
        return b":%d\r\n" % number

    def error_prefix(self, kind: str) -> bytes:
        codes = {"unknown": "UNKNOWN", "arity": "SYNTAX", "not-integer": "TYPE", "overflow": "RANGE"}
        return b"-ERR " + codes.get(kind, "SYNTAX").encode()

    def blocking(self, key: bytes, seconds: int) -> Exchange:
        return self._exchange(b"+OK\r\n", b"SLEEP", b"%d" % (seconds * 1000))


class Resp2Dialect(Dialect):
    """RESP2 (PROTOCOL-RESP2.md): multibulk requests, typed replies, Redis's error words."""

    profile = RESP2
    ERRORS = {
        "unknown": b"-ERR unknown command",
        "arity": b"-ERR wrong number of arguments",
        "not-integer": b"-ERR value is not an integer or out of range",
        "overflow": b"-ERR increment or decrement would overflow",
        "protocol": b"-ERR Protocol error",
        "maxclients": b"-ERR max number of clients reached",
    }

    def encode(self, *args: bytes) -> bytes:
        return resp.command(*args)

    def read_reply(self, probe: Probe, timeout: float | None = None) -> bytes | None:
        return resp.read_reply(probe.wire, probe.timeout if timeout is None else timeout)

    def status(self, word: bytes) -> bytes:
        return b"+" + word + b"\r\n"

    def value(self, data: bytes | None) -> bytes:
        return resp.NIL_BULK if data is None else resp.bulk(data)

    def integer(self, number: int) -> bytes:
        return resp.integer(number)

    def error_prefix(self, kind: str) -> bytes:
        return self.ERRORS[kind]

    def blocking(self, key: bytes, seconds: int) -> Exchange:
        return self._exchange(resp.NIL_ARRAY, b"BLPOP", key, b"%d" % seconds)


DIALECTS: dict[str, Dialect] = {dialect.profile.name: dialect for dialect in (CloudHashDialect(), Resp2Dialect())}


def dialect_for(profile: str) -> Dialect:
    return DIALECTS[profile]
