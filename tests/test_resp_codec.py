"""The suite's RESP2 codec (suite.profiles.resp), what a RESP2 target declares
(suite.profiles.declaration), and the spec read per profile: pure functions,
checked against the RESP grammar with Hypothesis."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suite import profiles, requirements
from suite.configuration import UsageProblem, parse_declarations, parse_only, parse_profile
from suite.profiles import resp
from suite.profiles.declaration import from_placeholders, parse_info
from suite.profiles.dialects import dialect_for
from suite.wire import Wire

WORDS = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@given(WORDS)
def test_a_command_parses_back_to_its_words(words: list[bytes]) -> None:
    encoded = resp.command(*words)
    assert resp.parse_request(encoded) == (words, len(encoded))
    for cut in range(len(encoded)):
        assert resp.parse_request(encoded[:cut]) is None  # incomplete, never misread


@given(st.binary(max_size=64))
def test_a_bulk_string_reply_is_exactly_its_bytes(data: bytes) -> None:
    reply, size = resp.parse(resp.bulk(data) + b"+PONG\r\n")
    assert (reply.kind, reply.value, size) == ("bulk", data, len(resp.bulk(data)))


def test_replies_of_every_type_parse() -> None:
    for raw, kind, value in (
        (b"+OK\r\n", "simple", b"OK"),
        (b"-ERR x y\r\n", "error", b"ERR x y"),
        (b":-42\r\n", "integer", -42),
        (b"$-1\r\n", "bulk", None),
        (b"*-1\r\n", "array", None),
    ):
        reply, size = resp.parse(raw)
        assert (reply.kind, reply.value, size) == (kind, value, len(raw))
    array, _ = resp.parse(b"*2\r\n$1\r\na\r\n:1\r\n")
    assert isinstance(array.value, tuple) and [item.raw for item in array.value] == [b"$1\r\na\r\n", b":1\r\n"]
    for bad in (b"PONG\r\n", b"$3\r\nabcde\r\n", b":x\r\n", b"+a\n"):
        with pytest.raises(resp.Malformed):
            resp.parse(bad)


def test_inline_requests_refuse_words_that_cannot_be_inline() -> None:
    assert resp.inline(b"SET", b"k", b"v", end=b"\n") == b"SET k v\n"
    assert resp.parse_request(b"  PING  \r\nrest") == ([b"PING"], 10)
    with pytest.raises(ValueError):
        resp.inline(b"SET", b"a b")


def test_read_reply_takes_one_reply_and_leaves_the_next() -> None:
    left, right = socket.socketpair()
    with Wire(left) as wire:
        right.sendall(resp.bulk(b"a\r\nb") + b":7\r\n$4\r\nhal")
        assert resp.read_reply(wire, 1.0) == resp.bulk(b"a\r\nb")
        assert resp.read_reply(wire, 1.0) == b":7\r\n"
        assert resp.read_reply(wire, 0.05) is None  # half a bulk string: incomplete
        assert wire.pending() == b"$4\r\nhal"
        right.sendall(b"f\r\n")
        assert resp.read_reply(wire, 1.0) == resp.bulk(b"half")
    right.close()


def test_info_and_placeholders_declare_what_the_suite_reads() -> None:
    info = b"# Server\r\nredis_version:7.0.15\r\nos:Linux\r\n\r\n# Clients\r\nmaxclients:8\r\nconnected_clients:1\r\n"
    assert parse_info(info) == {"redis_version": "7.0.15", "maxclients": "8"}
    template = "srv --port {port} --timeout {idle} --maxclients {maxclients}"
    assert from_placeholders(template, {"idle": "1", "maxclients": "4"}, 6380) == {
        "proto": "resp2",
        "timeout": "1",
        "maxclients": "4",
        "features": "tls",
    }
    assert "timeout" not in from_placeholders("srv --port {port}", {"idle": "1", "maxclients": "4"}, None)


def test_each_profile_reads_its_own_spec_and_options() -> None:
    assert all(i.startswith("R2-") for i in requirements.load(profile="resp2"))
    assert all(i.startswith("CH-") for i in requirements.load())
    assert requirements.get("R2-TLS-2").features == ("tls",)
    assert requirements.get("CH-TLS-2").features == ("tls",)
    assert parse_profile(None) == profiles.DEFAULT and parse_profile("RESP2") == "resp2"
    with pytest.raises(UsageProblem, match="known: cloudhash, resp2"):
        parse_profile("memcached")
    assert parse_declarations(["timeout=2", "maxclients=8", "features=tls"], "resp2")["maxclients"] == "8"
    for bad, why in (
        ("timeout=-1", "non-negative"),
        ("features=framed", "unknown feature"),
        ("overflow=busy", "unknown key"),
    ):
        with pytest.raises(UsageProblem, match=why):
            parse_declarations([bad], "resp2")
    assert parse_only("r2-frame-*", "resp2")[0] == "R2-FRAME-*"
    with pytest.raises(UsageProblem, match="--profile cloudhash"):
        parse_only("CH-FRAME-1", "resp2")


def test_both_dialects_say_the_same_commands_their_own_way() -> None:
    cloudhash, resp2 = dialect_for("cloudhash"), dialect_for("resp2")
    assert cloudhash.echo(b"hi").request == b"ECHO hi\r\n" and cloudhash.echo(b"hi").reply == b"$hi\r\n"
    assert (
        resp2.echo(b"hi").request == b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n" and resp2.echo(b"hi").reply == b"$2\r\nhi\r\n"
    )
    assert resp2.get(b"k", None).reply == b"$-1\r\n" and cloudhash.get(b"k", None).reply == b"_\r\n"
    assert resp2.blocking(b"k", 2).reply == b"*-1\r\n" and cloudhash.blocking(b"k", 2).request == b"SLEEP 2000\r\n"
