"""R2-ERR: error replies in Redis's words, the connection still usable after
them; protocol errors answered and followed by a close (PROTOCOL-RESP2.md,
section 4). Each request's reply is read before the next request is sent."""

from __future__ import annotations

from suite.api import Probe, fresh_key, requirement
from suite.checks.resp.model import INT64_MAX
from suite.profiles import resp
from suite.profiles.dialects import Resp2Dialect
from suite.targets.base import Target

RESP2 = Resp2Dialect()
CLOSE_WITHIN = 2.0
INLINE_LIMIT = 64 * 1024  # R2-ERR-6


def _still_usable(c: Probe, after: str) -> None:
    RESP2.ask(c, RESP2.echo(b"still here"), why=f"the connection stays usable after {after}")


@requirement("R2-ERR-1")
def test_an_unknown_command_is_an_error_and_the_connection_stays_usable(target: Target) -> None:
    with target.connect("unknown commands") as c:
        for request, what in (
            (resp.command(b"NOSUCHCOMMAND", b"a", b"b"), "a multibulk NOSUCHCOMMAND"),
            (b"NOSUCH inline words\r\n", "an inline NOSUCH"),
        ):
            c.send(request)
            RESP2.expect_error(c, "unknown", why=what)
            _still_usable(c, what)


@requirement("R2-ERR-2")
def test_wrong_arity_is_an_error_and_the_connection_stays_usable(target: Target) -> None:
    key = fresh_key("arity")
    with target.connect("wrong arity") as c:
        for args, what in (
            ((b"GET",), "GET without a key"),
            ((b"ECHO", b"a", b"b"), "ECHO with two arguments"),
            ((b"SET", key), "SET without a value"),
            ((b"INCR",), "INCR without a key"),
        ):
            c.send(resp.command(*args))
            RESP2.expect_error(c, "arity", why=what)
            _still_usable(c, what)
        RESP2.ask(c, RESP2.get(key, None), why="the SET without a value stored nothing")


@requirement("R2-ERR-3")
def test_incr_of_a_value_that_is_not_an_integer_is_an_error(target: Target) -> None:
    with target.connect("INCR of non-integers") as c:
        for value in (b"abc", b"1.5", b" 1", b"1 ", b"", b"99999999999999999999", b"12abc"):
            key = fresh_key("notint")
            RESP2.ask(c, RESP2.set(key, value))
            c.send(resp.command(b"INCR", key))
            RESP2.expect_error(c, "not-integer", why=f"INCR of {value!r}")
            RESP2.ask(c, RESP2.get(key, value), why=f"the value {value!r} stays as it was")


@requirement("R2-ERR-4")
def test_incr_overflow_is_an_error_and_the_value_stays(target: Target) -> None:
    key = fresh_key("overflow")
    with target.connect("INCR overflow") as c:
        RESP2.ask(c, RESP2.set(key, b"%d" % (INT64_MAX - 1)))
        RESP2.ask(c, RESP2.incr(key, INT64_MAX), why="the last INCR that fits in 64 bits")
        c.send(resp.command(b"INCR", key))
        RESP2.expect_error(c, "overflow", why="INCR of 9223372036854775807")
        RESP2.ask(c, RESP2.get(key, b"%d" % INT64_MAX), why="the value stays 9223372036854775807")


def _protocol_error_then_close(target: Target, request: bytes, what: str) -> None:
    with target.connect(what) as c:
        c.send(request)
        RESP2.expect_error(c, "protocol", why=what, timeout=CLOSE_WITHIN)
        c.expect_end(timeout=CLOSE_WITHIN, allow_reset=True, why=f"after the protocol error for {what}")


@requirement("R2-ERR-5")
def test_a_malformed_multibulk_header_is_a_protocol_error_then_a_close(target: Target) -> None:
    for request, what in (
        (b"*x\r\n", "a multibulk count that is no number"),
        (b"*2\r\n$x\r\n", "a bulk length that is no number"),
        (b"*2\r\n+PING\r\n", "an argument that does not start with $"),
        (b"*1\r\n$-5\r\n", "a negative bulk length"),
    ):
        # What follows the malformed header must never be executed.
        _protocol_error_then_close(target, request + resp.command(b"PING"), what)


@requirement("R2-ERR-6")
def test_an_oversized_inline_request_is_a_protocol_error_then_a_close(target: Target) -> None:
    with target.connect("an inline request over 64 KiB") as c:
        # Sent as one line with no end: the server must decide without waiting for LF.
        c.send(b"ECHO " + b"a" * (INLINE_LIMIT + 1024))
        RESP2.expect_error(c, "protocol", why="an inline request of 65 KiB and no line end", timeout=CLOSE_WITHIN)
        c.expect_end(timeout=CLOSE_WITHIN, allow_reset=True, why="after the protocol error")
    with target.connect("after the oversized request") as c:
        RESP2.ask(c, RESP2.ping(), why="the server keeps serving other connections")


@requirement("R2-ERR-7")
def test_a_bulk_string_not_followed_by_crlf_is_a_protocol_error(target: Target) -> None:
    _protocol_error_then_close(target, b"*1\r\n$4\r\nPINGxx" + resp.command(b"PING"), "PING's data followed by xx")
