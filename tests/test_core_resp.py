"""RESP2 in the sans-IO core: the second codec (multibulk arrays and inline
lines in, RESP2 replies out), Redis's error words, BLPOP as a timer, and the
closes RESP2 makes without a word. The same connection and command table as
CloudHash/1 (tests/test_core_commands.py); here only what RESP2 changes.

Time is passed in explicitly; nothing here sleeps.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_servers.core import Close, DictStore, Send, ServerConnection, ServerInfo
from reference_servers.core.commands import COMMANDS
from reference_servers.core.connection import Event
from reference_servers.core.dialects import BUSY_LINE, DIALECTS
from reference_servers.core.framing import NEED_DATA
from reference_servers.core.resp import KEPT_WORDS, MAX_INLINE, MAX_MULTIBULK, RequestReader, Words
from tests.core_support import make_info

T0 = 10.0
IDLE = 5.0
INT64_MAX = (1 << 63) - 1


# ---- helpers -----------------------------------------------------------------------------


def resp_info(**overrides: object) -> ServerInfo:
    fields: dict[str, object] = {
        "protocol": "resp",
        "arch": "evented",
        "concurrency": 16,
        "max_connections": 16,
        "overflow": "busy",
        "idle_timeout_ms": round(IDLE * 1000),
        "features": frozenset(),
    }
    fields.update(overrides)
    return make_info(**fields)


def connect(store: DictStore | None = None, now: float = T0, **info: object) -> ServerConnection:
    store = DictStore(canonical_integers=True) if store is None else store
    return ServerConnection(resp_info(**info), store, now)


def pull(conn: ServerConnection, now: float = T0) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event(now)) is not None:
        events.append(event)
    return events


def feed(conn: ServerConnection, data: bytes, now: float = T0) -> list[Event]:
    conn.receive_data(data)
    return pull(conn, now)


def sent(events: list[Event]) -> bytes:
    """The bytes of every Send, in order; fails on anything but a Send."""
    assert all(isinstance(event, Send) and not event.final for event in events), events
    return b"".join(event.data for event in events if isinstance(event, Send))


def ask(conn: ServerConnection, request: bytes, now: float = T0) -> bytes:
    events = feed(conn, request, now)
    assert len(events) == 1, f"expected one reply to {request!r}, got {events!r}"
    return sent(events)


def command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def assert_protocol_error_then_close(events: list[Event], reason: str) -> None:
    assert len(events) == 2 and isinstance(events[1], Close), f"expected a protocol error, then Close: {events!r}"
    error = events[0]
    assert isinstance(error, Send) and error.final, events
    assert error.data == b"-ERR Protocol error: " + reason.encode() + b"\r\n", error.data


# ---- the command table -----------------------------------------------------------------


def test_every_command_of_the_table_is_known_to_one_protocol_or_both() -> None:
    protocols = {name: command.protocols for name, command in COMMANDS.items()}
    shared = {b"PING", b"ECHO", b"SET", b"GET", b"DEL", b"INCR", b"INFO", b"QUIT"}
    assert {name for name, known in protocols.items() if known == {"cloudhash", "resp"}} == shared
    assert {name for name, known in protocols.items() if known == {"cloudhash"}} == {b"SLEEP", b"FRAMED", b"STARTTLS"}
    assert {name for name, known in protocols.items() if known == {"resp"}} == {b"BLPOP", b"CONFIG"}


@pytest.mark.parametrize("name", [b"SLEEP", b"FRAMED", b"STARTTLS"])
def test_cloudhash_only_commands_are_unknown_in_resp(name: bytes) -> None:
    reply = ask(connect(), command(name))
    assert reply.startswith(b"-ERR unknown command '" + name + b"'"), reply


@pytest.mark.parametrize("request_line", [b"BLPOP k 1\r\n", b"CONFIG GET save\r\n"])
def test_resp_only_commands_are_unknown_in_cloudhash(request_line: bytes) -> None:
    conn = ServerConnection(make_info(), DictStore(), T0)
    assert sent(feed(conn, request_line)).startswith(b"-ERR UNKNOWN "), "expected CloudHash/1 not to know it"


def cloudhash_value(reply: bytes) -> object:
    """A CloudHash/1 reply line as a value, to compare with RESP2's."""
    body = reply.removesuffix(b"\r\n")
    kinds = {b"+": "status", b"$": "bulk", b":": "integer", b"-": "error"}
    if body == b"_":
        return ("nil",)
    kind = kinds[body[:1]]
    return (kind,) if kind == "error" else (kind, body[1:])


def resp_value(reply: bytes) -> object:
    if reply == b"$-1\r\n":
        return ("nil",)
    kinds = {b"+": "status", b"$": "bulk", b":": "integer", b"-": "error"}
    kind = kinds[reply[:1]]
    if kind == "error":
        return (kind,)
    if kind == "bulk":
        header, _, rest = reply.partition(b"\r\n")
        assert len(rest) == int(header[1:]) + 2
        return (kind, rest[:-2])
    return (kind, reply[1:-2])


STORE_COMMANDS = st.tuples(
    st.sampled_from([b"SET", b"GET", b"DEL", b"INCR", b"ECHO", b"PING"]),
    st.sampled_from([b"a", b"b"]),
    st.sampled_from([b"0", b"41", b"-7", b"x", str(INT64_MAX).encode(), b"hello world"]),
)


@settings(max_examples=100, deadline=None)
@given(script=st.lists(STORE_COMMANDS, max_size=20))
def test_both_protocols_run_the_same_commands_to_the_same_values(script: list[tuple[bytes, bytes, bytes]]) -> None:
    """One command table, two codecs: the same script gives the same values
    (and errors in the same places) in CloudHash/1 and in RESP2."""
    cloudhash = ServerConnection(make_info(), DictStore(), T0)
    resp = connect()
    for name, key, value in script:
        words = {b"SET": (name, key, value), b"ECHO": (name, value), b"PING": (name,)}.get(name, (name, key))
        line = b" ".join(words) + b"\r\n"
        assert cloudhash_value(ask(cloudhash, line)) == resp_value(ask(resp, command(*words))), words


# ---- framing: multibulk and inline -------------------------------------------------------


def test_multibulk_and_inline_requests_are_answered_alike() -> None:
    conn = connect()
    assert ask(conn, command(b"PING")) == b"+PONG\r\n"
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n"
    assert ask(conn, b"ping\n") == b"+PONG\r\n", "a bare LF ends an inline request, and names are any case"
    assert ask(conn, command(b"SET", b"k", b"v 1")) == b"+OK\r\n"
    assert ask(conn, b"  GET \t k  \r\n") == bulk(b"v 1"), "inline words are split on any run of whitespace"
    assert ask(conn, command(b"eChO", b"")) == bulk(b""), "an empty bulk string is a value"


def test_bulk_strings_are_binary_safe() -> None:
    conn = connect()
    data = b"a\r\nb\nc\rd\x00\xff$3\r\n*1\r\n"
    assert ask(conn, command(b"SET", b"k\r\n\x00 ", data)) == b"+OK\r\n"
    assert ask(conn, command(b"GET", b"k\r\n\x00 ")) == bulk(data), "CR, LF, NUL and spaces are data, key and value"
    assert ask(conn, command(b"ECHO", data)) == bulk(data)


def test_empty_lines_and_empty_arrays_are_no_requests() -> None:
    conn = connect()
    assert feed(conn, b"\r\n\n   \r\n*0\r\n*-1\r\n") == [], "nothing to answer"
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n"


REQUESTS = st.sampled_from(
    [
        command(b"PING"),
        b"PING\r\n",
        b"ECHO a\n",
        command(b"ECHO", b"\r\n*1\r\n$4\r\n"),
        command(b"SET", b"k", b"12"),
        command(b"INCR", b"k"),
        b"GET k\r\n",
        command(b"DEL", b"k"),
        command(b"NOPE", b"x"),
        command(b"GET"),
        b"\r\n",
        b"*0\r\n",
    ]
)


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(REQUESTS, min_size=1, max_size=10), data=st.data())
def test_any_segmentation_of_a_pipelined_stream_gives_the_same_replies(
    requests: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(requests)
    whole = sent(feed(connect(), stream))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12))))
    conn, got = connect(), b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += sent(feed(conn, stream[start:end]))
    assert got == whole, f"cut at {cuts}: {got!r} != {whole!r}"


def test_a_request_arriving_one_byte_at_a_time_is_answered_once_whole() -> None:
    conn, request = connect(), command(b"SET", b"key", b"x" * 300)
    for byte in request[:-1]:
        assert feed(conn, bytes([byte])) == [], "nothing before the request is whole"
    assert sent(feed(conn, request[-1:])) == b"+OK\r\n"
    assert ask(conn, command(b"GET", b"key")) == bulk(b"x" * 300)


def test_an_array_in_pieces_is_read_on_from_where_the_reader_stopped() -> None:
    """Words already read are not read again when the rest arrives (a request
    trickled in a byte at a time costs one pass, not one pass per byte)."""
    reader = RequestReader(max_bulk=100)
    buffer = bytearray(b"*3\r\n$4\r\nECHO\r\n$1\r\nA\r\n$1\r\n")
    assert reader.cut(buffer) is NEED_DATA
    buffer[buffer.index(b"A")] = ord("B")  # a byte the reader has already taken
    buffer += b"C\r\nrest"
    assert reader.cut(buffer) == (Words((b"ECHO", b"A", b"C"), 3), len(buffer) - len(b"rest"))


def test_an_array_longer_than_any_command_is_wrong_arity_and_the_connection_goes_on() -> None:
    conn = connect()
    words = [b"GET", *(b"k%d" % n for n in range(3 * KEPT_WORDS))]
    assert ask(conn, command(*words)) == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert ask(conn, command(b"PING")) == b"+PONG\r\n"


# ---- protocol errors: the reply, then the close --------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"*x\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*%d\r\n" % (MAX_MULTIBULK + 1), "invalid multibulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*2\r\n+PING\r\n", "expected '$', got '+'"),
        (b"*1\r\n\x01", "expected '$', got '\\x01'"),
        (b"*1\r\n$4\r\nPINGxx", "expected CR LF after a bulk string's data"),
    ],
)
def test_a_malformed_array_is_a_protocol_error_and_nothing_after_it_runs(request_bytes: bytes, reason: str) -> None:
    store = DictStore(canonical_integers=True)
    conn = connect(store)
    events = feed(conn, b"PING\r\n" + request_bytes + command(b"SET", b"after", b"1"))
    assert events[0] == Send(b"+PONG\r\n"), "the request before it is answered first"
    assert_protocol_error_then_close(events[1:], reason)
    assert store.get(b"after") is None, "nothing after the malformed header runs"


def test_a_bulk_length_over_the_limit_is_refused_from_its_header_alone() -> None:
    events = feed(connect(max_frame=1000), b"*2\r\n$3\r\nSET\r\n$1001\r\n")
    assert_protocol_error_then_close(events, "invalid bulk length")


def test_a_bulk_length_at_the_limit_is_read() -> None:
    assert ask(connect(max_frame=1000), command(b"ECHO", b"z" * 1000)) == bulk(b"z" * 1000)


def test_an_inline_request_waits_up_to_64_kib_without_a_line_end_and_no_longer() -> None:
    conn = connect()
    assert feed(conn, b"ECHO " + b"a" * (MAX_INLINE - 5)) == [], f"{MAX_INLINE} bytes without LF: still waiting"
    assert_protocol_error_then_close(feed(conn, b"a"), "too big inline request")


def test_an_inline_request_of_64_kib_is_answered() -> None:
    reply = ask(connect(), b"ECHO " + b"a" * (MAX_INLINE - 5) + b"\n")
    assert reply == bulk(b"a" * (MAX_INLINE - 5))


@pytest.mark.parametrize(
    ("start", "reason"), [(b"*", "too big mbulk count string"), (b"*1\r\n$", "too big bulk count string")]
)
def test_a_header_line_without_its_end_is_refused_past_64_kib(start: bytes, reason: str) -> None:
    conn = connect()
    assert feed(conn, start + b"1" * (MAX_INLINE - len(start))) == []
    assert_protocol_error_then_close(feed(conn, b"1" * (len(start) + 1)), reason)


# ---- errors in Redis's words, the connection still usable ----------------------------------


@pytest.mark.parametrize(
    ("words", "reply"),
    [
        ((b"NOSUCH",), b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n"),
        ((b"nosuch", b"a", b"b c"), b"-ERR unknown command 'nosuch', with args beginning with: 'a' 'b c' \r\n"),
        ((b"x\r\ny", b"\x00"), b"-ERR unknown command 'x\\x0d\\x0ay', with args beginning with: '\\x00' \r\n"),
        ((b"GET",), b"-ERR wrong number of arguments for 'get' command\r\n"),
        ((b"ECHO", b"a", b"b"), b"-ERR wrong number of arguments for 'echo' command\r\n"),
        ((b"PING", b"x"), b"-ERR wrong number of arguments for 'ping' command\r\n"),
        ((b"BLPOP", b"k", b"soon"), b"-ERR timeout is not a float or out of range\r\n"),
        ((b"BLPOP", b"k", b"inf"), b"-ERR timeout is not a float or out of range\r\n"),
        ((b"BLPOP", b"k", b"-1"), b"-ERR timeout is negative\r\n"),
        ((b"CONFIG", b"SET", b"x"), b"-ERR unknown subcommand; this server answers CONFIG GET only\r\n"),
    ],
)
def test_errors_are_in_redis_words_and_the_connection_stays_usable(words: tuple[bytes, ...], reply: bytes) -> None:
    conn = connect()
    assert ask(conn, command(*words)) == reply
    assert ask(conn, command(b"PING")) == b"+PONG\r\n"


def test_an_unknown_commands_quoted_args_stop_near_128_characters() -> None:
    reply = ask(connect(), command(b"NOPE", *([b"x" * 50] * 10)))
    assert len(reply) < 250 and reply.count(b"'x") == 3, reply


@pytest.mark.parametrize("value", [b"abc", b"1.5", b" 1", b"", b"+1", b"007", b"-0", b"99999999999999999999"])
def test_incr_of_anything_but_a_canonical_int64_is_redis_not_an_integer(value: bytes) -> None:
    store = DictStore(canonical_integers=True)
    store.set(b"n", value)
    reply = ask(connect(store), command(b"INCR", b"n"))
    assert reply == b"-ERR value is not an integer or out of range\r\n"
    assert store.get(b"n") == value, "the value stays as it was"


def test_incr_overflow_is_redis_overflow_and_the_value_stays() -> None:
    store = DictStore(canonical_integers=True)
    store.set(b"n", str(INT64_MAX - 1).encode())
    conn = connect(store)
    assert ask(conn, command(b"INCR", b"n")) == b":%d\r\n" % INT64_MAX
    assert ask(conn, command(b"INCR", b"n")) == b"-ERR increment or decrement would overflow\r\n"
    assert store.get(b"n") == str(INT64_MAX).encode()


def test_get_of_a_missing_key_is_the_null_bulk_string_and_del_counts() -> None:
    conn = connect()
    assert ask(conn, command(b"GET", b"nope")) == b"$-1\r\n"
    assert ask(conn, command(b"DEL", b"nope")) == b":0\r\n"
    assert ask(conn, command(b"SET", b"k", b"v")) == b"+OK\r\n"
    assert ask(conn, command(b"DEL", b"k")) == b":1\r\n"


# ---- BLPOP: a timer, never a blocking call ---------------------------------------------------


def test_blpop_on_a_key_without_a_list_answers_the_null_array_when_its_timeout_passes() -> None:
    conn = connect()
    assert feed(conn, command(b"BLPOP", b"nolist", b"1.5") + b"PING\r\n") == []
    assert conn.deadline() == pytest.approx(T0 + 1.5)
    assert not conn.wants_input, "the requests behind it wait in the buffer"
    assert conn.idle_deadline() is None, "a blocked client is not idle"
    assert pull(conn, T0 + 1.499) == []
    assert sent(pull(conn, T0 + 1.5)) == b"*-1\r\n+PONG\r\n", "then the PING pipelined behind it"


def test_blpop_is_not_aborted_by_urgent_data() -> None:
    conn = connect()
    feed(conn, command(b"BLPOP", b"nolist", b"1"))
    conn.receive_urgent(T0 + 0.5)
    assert pull(conn, T0 + 0.5) == [], "the urgent byte is no data and no signal in RESP2"
    assert sent(pull(conn, T0 + 1)) == b"*-1\r\n"


def test_blpop_with_timeout_zero_waits_without_a_deadline() -> None:
    conn = connect()
    assert feed(conn, command(b"BLPOP", b"nolist", b"0")) == []
    assert conn.deadline() is None
    assert pull(conn, T0 + 10_000) == []


def test_blpop_on_a_string_is_wrongtype() -> None:
    conn = connect()
    ask(conn, command(b"SET", b"k", b"v"))
    reply = ask(conn, command(b"BLPOP", b"k", b"1"))
    assert reply == b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"


def test_a_shutdown_closes_a_blocked_client_at_once_without_a_word() -> None:
    conn = connect()
    feed(conn, command(b"BLPOP", b"nolist", b"0"))
    conn.begin_shutdown()
    assert pull(conn, T0 + 0.1) == [Close()]


# ---- the closes RESP2 makes without a word -----------------------------------------------


def test_an_idle_client_is_closed_without_a_word_at_the_timeout() -> None:
    conn = connect()
    assert ask(conn, command(b"PING"), T0 + 1) == b"+PONG\r\n"
    assert conn.idle_deadline() == pytest.approx(T0 + 1 + IDLE), "a reply restarts the idle timer"
    assert pull(conn, T0 + 1 + IDLE - 0.001) == []
    assert pull(conn, T0 + 1 + IDLE) == [Close()]


def test_a_graceful_shutdown_answers_what_arrived_then_closes_without_a_word() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\nECHO bye\r\n")
    conn.begin_shutdown()
    events = pull(conn)
    assert sent(events[:-1]) == b"+PONG\r\n" + bulk(b"bye") and events[-1] == Close()


def test_a_forced_shutdown_closes_without_a_word() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\nPING\r\n")
    conn.force_shutdown()
    assert pull(conn) == [Close()]


def test_quit_answers_ok_then_closes() -> None:
    events = feed(connect(), b"QUIT\r\nPING\r\n")
    assert events == [Send(b"+OK\r\n", final=True), Close()]


def test_the_refusal_over_the_limit_is_redis_words() -> None:
    assert DIALECTS["resp"].over_limit == b"-ERR max number of clients reached\r\n"
    assert DIALECTS["cloudhash"].over_limit == BUSY_LINE


# ---- INFO and CONFIG GET: what the server declares ----------------------------------------


def info_pairs(reply: bytes) -> dict[str, str]:
    header, _, body = reply.partition(b"\r\n")
    assert header == b"$%d" % (len(body) - 2), "INFO is one bulk string"
    lines = body[:-2].decode().split("\r\n")
    assert all(re.fullmatch(r"(# \w+|[a-z_]+:[^\r\n]*|)", line) for line in lines), lines
    return dict(line.split(":", 1) for line in lines if ":" in line)


def test_info_declares_maxclients_timeout_concurrency_and_features() -> None:
    pairs = info_pairs(ask(connect(max_connections=7, concurrency=7, features=frozenset({"tls"})), b"INFO\r\n"))
    assert pairs["maxclients"] == "7" and pairs["concurrency"] == "7" and pairs["timeout"] == "5"
    assert pairs["features"] == "tls" and pairs["proto"] == "resp2" and pairs["server_name"]


def test_a_server_that_queues_declares_no_maxclients() -> None:
    pairs = info_pairs(ask(connect(arch="serial", concurrency=1, max_connections=1, overflow="queue"), b"INFO\r\n"))
    assert "maxclients" not in pairs and pairs["concurrency"] == "1", pairs


def test_config_get_answers_name_value_pairs_and_nothing_for_unknown_names() -> None:
    conn = connect(max_connections=9)
    assert ask(conn, command(b"CONFIG", b"GET", b"save")) == b"*2\r\n" + bulk(b"save") + bulk(b"")
    assert ask(conn, command(b"config", b"get", b"APPENDONLY")) == b"*2\r\n" + bulk(b"appendonly") + bulk(b"no")
    assert ask(conn, command(b"CONFIG", b"GET", b"max*")) == b"*2\r\n" + bulk(b"maxclients") + bulk(b"9")
    assert ask(conn, command(b"CONFIG", b"GET", b"nosuch")) == b"*0\r\n"


def test_a_resp_server_offers_no_cloudhash_feature() -> None:
    with pytest.raises(ValueError, match="RESP2"):
        resp_info(features=frozenset({"framed"}))
