"""CloudHash/1 store semantics in the sans-IO core: INCR's integer rules, the store
interface, and a model-checked store.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reference_servers.core import CommandError, DictStore, Send, ServerConnection, ServerInfo, incremented

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
T0 = 7.0


# ---- helpers -----------------------------------------------------------------


def connect(store: DictStore | None = None) -> ServerConnection:
    info = ServerInfo(arch="serial", concurrency=1, max_connections=1, overflow="queue", idle_timeout_ms=300_000)
    return ServerConnection(info, DictStore() if store is None else store, T0)


def ask(conn: ServerConnection, request: bytes) -> bytes:
    conn.receive_data(request)
    event = conn.next_event(T0)
    assert isinstance(event, Send) and not event.final, f"expected one reply to {request!r}, got {event!r}"
    extra = conn.next_event(T0)
    assert extra is None, f"expected exactly one reply to {request!r}, got also {extra!r}"
    return event.data


def assert_error_line(data: bytes, code: str, context: object = "") -> None:
    pattern = rb"-ERR " + code.encode() + rb"(?: [^\n]*)?\r\n"
    assert re.fullmatch(pattern, data), f"{context!r}: expected '-ERR {code} ...\\r\\n', got {data!r}"


def stored(value: bytes) -> tuple[ServerConnection, DictStore]:
    store = DictStore()
    store.set(b"n", value)
    return connect(store), store


# ---- INCR --------------------------------------------------------------------


def test_incr_of_a_missing_key_counts_from_zero() -> None:
    conn = connect()
    assert ask(conn, b"INCR n\r\n") == b":1\r\n", "expected a missing key to count as 0"
    assert ask(conn, b"INCR n\r\n") == b":2\r\n", "expected the stored 1 to become 2"
    assert ask(conn, b"GET n\r\n") == b"$2\r\n", "expected INCR to store the decimal result"


@pytest.mark.parametrize(
    ("value", "reply", "after"),
    [
        (b"0", b":1", b"1"),
        (b"-0", b":1", b"1"),
        (b"007", b":8", b"8"),
        (b"-007", b":-6", b"-6"),
        (b"-1", b":0", b"0"),
        (b"-5", b":-4", b"-4"),
        (b"0" * 40 + b"42", b":43", b"43"),
        (b"-" + b"0" * 30 + b"9223372036854775808", b":-9223372036854775807", b"-9223372036854775807"),
        (str(INT64_MAX - 1).encode(), b":%d" % INT64_MAX, str(INT64_MAX).encode()),
        (str(INT64_MIN).encode(), b":%d" % (INT64_MIN + 1), str(INT64_MIN + 1).encode()),
    ],
)
def test_incr_accepts_any_decimal_in_int64_leading_zeros_included(value: bytes, reply: bytes, after: bytes) -> None:
    conn, _ = stored(value)
    got = ask(conn, b"INCR n\r\n")
    assert got == reply + b"\r\n", f"INCR on {value!r}: expected {reply!r}, got {got!r}"
    got = ask(conn, b"GET n\r\n")
    assert got == b"$" + after + b"\r\n", f"INCR on {value!r}: expected the canonical {after!r} stored, got {got!r}"


def test_incr_at_int64_max_is_range_and_leaves_the_value_unchanged() -> None:
    for value in (str(INT64_MAX).encode(), b"00" + str(INT64_MAX).encode()):
        conn, store = stored(value)
        assert_error_line(ask(conn, b"INCR n\r\n"), "RANGE", value)
        assert store.get(b"n") == value, f"expected {value!r} unchanged after RANGE, got {store.get(b'n')!r}"


@pytest.mark.parametrize(
    "value",
    [
        b"abc",
        b"1.5",
        b" 1",
        b"1 ",
        b"1\r",
        b"",
        b"-",
        b"+1",
        b"--1",
        b"1-",
        b"0x10",
        b"1e3",
        b"\xd9\xa1",  # a non-ASCII digit
        b"9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"99999999999999999999999999",
        b"-" + b"9" * 400,
    ],
)
def test_incr_on_a_value_that_is_not_an_int64_is_type_and_leaves_it_unchanged(value: bytes) -> None:
    conn, store = stored(value)
    assert_error_line(ask(conn, b"INCR n\r\n"), "TYPE", value)
    assert store.get(b"n") == value, f"expected {value!r} unchanged after TYPE, got {store.get(b'n')!r}"


def test_incr_on_a_value_with_lf_is_type() -> None:
    conn, _ = stored(b"1\n")
    assert_error_line(ask(conn, b"INCR n\r\n"), "TYPE", b"1\n")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=INT64_MIN, max_value=INT64_MAX - 1), zeros=st.integers(min_value=0, max_value=5))
def test_incremented_adds_one_to_every_int64_but_the_max(n: int, zeros: int) -> None:
    text = ("-" if n < 0 else "") + "0" * zeros + str(abs(n))
    result = incremented(text.encode())
    assert result == n + 1, f"expected incremented({text!r}) == {n + 1}, got {result}"


@settings(max_examples=100, deadline=None)
@given(n=st.one_of(st.integers(min_value=INT64_MAX + 1), st.integers(max_value=INT64_MIN - 1)))
def test_incremented_refuses_every_integer_outside_int64_as_type(n: int) -> None:
    with pytest.raises(CommandError) as raised:
        incremented(str(n).encode())
    assert raised.value.code == "TYPE", f"expected TYPE for {n}, got {raised.value.code}"


# ---- the store is shared ---------------------------------------------------------


def test_all_connections_of_one_server_share_one_store() -> None:
    store = DictStore()
    first, second = connect(store), connect(store)
    assert ask(first, b"SET shared 41\r\n") == b"+OK\r\n"
    assert ask(second, b"GET shared\r\n") == b"$41\r\n", "expected a SET on one connection visible on another"
    assert ask(second, b"INCR shared\r\n") == b":42\r\n"
    assert ask(first, b"INCR shared\r\n") == b":43\r\n", "expected INCRs from two connections not to lose updates"
    assert ask(first, b"DEL shared\r\n") == b":1\r\n"
    assert ask(second, b"GET shared\r\n") == b"_\r\n", "expected a DEL on one connection visible on another"


# ---- a model-checked store through one connection ----------------------------

KEYS = [b"a", b"b", b"c\xff", b"K" * 250]
integer_texts = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MAX + 1, INT64_MIN - 1]),
).map(lambda n: str(n).encode())
odd_integer_texts = st.sampled_from([b"-0", b"007", b"-00", b"1.5", b" 1", b"", b"+3", b"0" * 25 + b"9"])
line_values = st.one_of(
    integer_texts,
    odd_integer_texts,
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
)


class StoreMachine(RuleBasedStateMachine):
    """SET/GET/DEL/INCR through one ServerConnection, checked against a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.store = DictStore()
        self.conn = connect(self.store)
        self.model: dict[bytes, bytes] = {}

    def send(self, request: bytes) -> bytes:
        return ask(self.conn, request + b"\r\n")

    @rule(key=st.sampled_from(KEYS), value=line_values)
    def set(self, key: bytes, value: bytes) -> None:
        reply = self.send(b"SET " + key + b" " + value)
        assert reply == b"+OK\r\n", f"SET {key!r} {value!r}: expected +OK, got {reply!r}"
        self.model[key] = value

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: bytes) -> None:
        reply = self.send(b"GET " + key)
        expected = b"_\r\n" if key not in self.model else b"$" + self.model[key] + b"\r\n"
        assert reply == expected, f"GET {key!r}: expected {expected!r}, got {reply!r}"

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: bytes) -> None:
        reply = self.send(b"DEL " + key)
        expected = b":1\r\n" if self.model.pop(key, None) is not None else b":0\r\n"
        assert reply == expected, f"DEL {key!r}: expected {expected!r}, got {reply!r}"

    @rule(key=st.sampled_from(KEYS))
    def incr(self, key: bytes) -> None:
        reply = self.send(b"INCR " + key)
        current = self.model.get(key, b"0")
        if not re.fullmatch(rb"-?[0-9]+", current) or not INT64_MIN <= int(current) <= INT64_MAX:
            assert_error_line(reply, "TYPE", (b"INCR", key, current))
        elif int(current) == INT64_MAX:
            assert_error_line(reply, "RANGE", (b"INCR", key, current))
        else:
            result = int(current) + 1
            assert reply == b":%d\r\n" % result, f"INCR {key!r} on {current!r}: expected :{result}, got {reply!r}"
            self.model[key] = str(result).encode()

    @invariant()
    def store_matches_the_model(self) -> None:
        for key in KEYS:
            got = self.store.get(key)
            assert got == self.model.get(key), f"key {key!r}: expected {self.model.get(key)!r}, store has {got!r}"


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestStoreAgainstADictModel = StoreMachine.TestCase
