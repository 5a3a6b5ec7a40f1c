"""CloudHash/1 commands and error codes, as the sans-IO core answers them.

Each test feeds request bytes to one ServerConnection and checks the exact reply
bytes. Error replies are matched on their code only: the text after it is free.
"""

from __future__ import annotations

import re
import struct

import pytest

from reference_servers.core import Close, DictStore, Send, ServerConnection, StartTLS
from reference_servers.core.connection import Event
from tests.core_support import make_info

T0 = 50.0
REQUIRED_INFO_KEYS = (
    "proto",
    "arch",
    "concurrency",
    "max_connections",
    "overflow",
    "idle_timeout_ms",
    "max_line",
    "max_frame",
    "features",
)


# ---- helpers -----------------------------------------------------------------


def connect(
    store: DictStore | None = None, *, starttls_available: bool = False, in_tls: bool = False, **info: object
) -> ServerConnection:
    return ServerConnection(
        make_info(**info),
        DictStore() if store is None else store,
        T0,
        starttls_available=starttls_available,
        in_tls=in_tls,
    )


def feed(conn: ServerConnection, data: bytes, now: float = T0) -> list[Event]:
    conn.receive_data(data)
    events: list[Event] = []
    while (event := conn.next_event(now)) is not None:
        events.append(event)
    return events


def ask(conn: ServerConnection, request: bytes, now: float = T0) -> bytes:
    """The one reply to one request; anything else fails."""
    events = feed(conn, request, now)
    assert len(events) == 1, f"expected exactly one reply to {request!r}, got {events!r}"
    (event,) = events
    assert isinstance(event, Send) and not event.final, f"expected a non-final Send for {request!r}, got {event!r}"
    return event.data


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def framed(conn: ServerConnection) -> ServerConnection:
    reply = ask(conn, b"FRAMED\r\n")
    assert reply == b"+OK\r\n", f"expected FRAMED to answer +OK as a line, got {reply!r}"
    return conn


def assert_error_line(data: bytes, code: str, request: bytes = b"") -> None:
    pattern = rb"-ERR " + code.encode() + rb"(?: [^\n]*)?\r\n"
    assert re.fullmatch(pattern, data), f"{request!r}: expected one line '-ERR {code} ...\\r\\n', got {data!r}"


def assert_error_frame(data: bytes, code: str, request: bytes = b"") -> None:
    assert len(data) >= 4, f"{request!r}: expected a frame, got {data!r}"
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4, f"{request!r}: expected exactly one frame, got {data!r}"
    pattern = rb"-ERR " + code.encode() + rb"(?: .*)?"
    assert re.fullmatch(pattern, data[4:], re.DOTALL), f"{request!r}: expected a '-ERR {code}' frame, got {data!r}"


# ---- PING, ECHO, line syntax --------------------------------------------------


def test_ping_answers_pong() -> None:
    reply = ask(connect(), b"PING\r\n")
    assert reply == b"+PONG\r\n", f"expected +PONG, got {reply!r}"


def test_bare_lf_ends_a_request() -> None:
    reply = ask(connect(), b"PING\n")
    assert reply == b"+PONG\r\n", f"expected PING<LF> to answer +PONG, got {reply!r}"


@pytest.mark.parametrize("spelling", [b"ping", b"PiNg", b"pING", b"Ping"])
def test_command_names_are_ascii_case_insensitive(spelling: bytes) -> None:
    reply = ask(connect(), spelling + b"\r\n")
    assert reply == b"+PONG\r\n", f"expected {spelling!r} to answer +PONG, got {reply!r}"


def test_case_insensitivity_applies_to_every_command() -> None:
    conn = connect()
    transcript = [
        (b"set k v\r\n", b"+OK\r\n"),
        (b"Get k\r\n", b"$v\r\n"),
        (b"echo hi\r\n", b"$hi\r\n"),
        (b"incr n\r\n", b":1\r\n"),
        (b"dEl k\r\n", b":1\r\n"),
        (b"framed\r\n", b"+OK\r\n"),
    ]
    for request, expected in transcript:
        reply = ask(conn, request)
        assert reply == expected, f"expected {request!r} to answer {expected!r}, got {reply!r}"


def test_echo_returns_the_rest_of_the_line_verbatim_spaces_included() -> None:
    reply = ask(connect(), b"ECHO  two  spaces \r\n")
    assert reply == b"$ two  spaces \r\n", f"expected the spaces kept verbatim, got {reply!r}"


def test_echo_with_a_single_space_echoes_the_empty_string() -> None:
    reply = ask(connect(), b"ECHO \r\n")
    assert reply == b"$\r\n", f"expected '$' and nothing else, got {reply!r}"


def test_echo_without_space_is_wrong_arity() -> None:
    assert_error_line(ask(connect(), b"ECHO\r\n"), "SYNTAX", b"ECHO")


@pytest.mark.parametrize("terminator", [b"\r\n", b"\n"], ids=["CRLF", "LF"])
def test_cr_in_the_middle_of_a_line_is_data(terminator: bytes) -> None:
    reply = ask(connect(), b"ECHO a\rb" + terminator)
    assert reply == b"$a\rb\r\n", f"expected the CR echoed as data, got {reply!r}"


def test_only_the_cr_just_before_lf_is_dropped() -> None:
    reply = ask(connect(), b"ECHO a\r\r\n")
    assert reply == b"$a\r\r\n", f"expected one CR kept as data, got {reply!r}"


def test_echo_keeps_every_byte_but_lf() -> None:
    data = bytes(b for b in range(256) if b != 0x0A)
    reply = ask(connect(), b"ECHO " + data + b"\r\n")
    assert reply == b"$" + data + b"\r\n", f"expected every byte but LF echoed, got {reply!r}"


def test_empty_lines_are_not_requests() -> None:
    events = feed(connect(), b"\r\n\n\r\n\nPING\r\n\n")
    assert events == [Send(b"+PONG\r\n")], f"expected one +PONG and nothing for empty lines, got {events!r}"


def test_a_line_of_just_a_cr_before_crlf_is_an_unknown_command() -> None:
    assert_error_line(ask(connect(), b"\r\r\n"), "UNKNOWN", b"\r\r\n")


def test_pipelined_requests_are_answered_in_order() -> None:
    events = feed(connect(), b"SET a 1\r\nINCR a\nGET a\r\nPING\nDEL a\r\nGET a\r\n")
    expected = [Send(b"+OK\r\n"), Send(b":2\r\n"), Send(b"$2\r\n"), Send(b"+PONG\r\n"), Send(b":1\r\n"), Send(b"_\r\n")]
    assert events == expected, f"expected {expected!r}, got {events!r}"


# ---- SET, GET, DEL -----------------------------------------------------------


def test_set_then_get_returns_the_value() -> None:
    conn = connect()
    assert ask(conn, b"SET k hello world\r\n") == b"+OK\r\n"
    reply = ask(conn, b"GET k\r\n")
    assert reply == b"$hello world\r\n", f"expected the stored value, got {reply!r}"


def test_set_with_a_trailing_space_stores_the_empty_value() -> None:
    conn = connect()
    assert ask(conn, b"SET k \r\n") == b"+OK\r\n"
    reply = ask(conn, b"GET k\r\n")
    assert reply == b"$\r\n", f"expected the empty value (not nil), got {reply!r}"


def test_set_value_keeps_spaces_verbatim() -> None:
    conn = connect()
    assert ask(conn, b"SET k  a  b \r\n") == b"+OK\r\n"
    reply = ask(conn, b"GET k\r\n")
    assert reply == b"$ a  b \r\n", f"expected ' a  b ' verbatim, got {reply!r}"


def test_set_overwrites() -> None:
    conn = connect()
    feed(conn, b"SET k one\r\nSET k two\r\n")
    reply = ask(conn, b"GET k\r\n")
    assert reply == b"$two\r\n", f"expected the later value, got {reply!r}"


def test_get_of_a_missing_key_is_nil() -> None:
    reply = ask(connect(), b"GET nothing\r\n")
    assert reply == b"_\r\n", f"expected _, got {reply!r}"


def test_del_answers_one_for_a_present_key_and_zero_after() -> None:
    conn = connect()
    feed(conn, b"SET k v\r\n")
    assert ask(conn, b"DEL k\r\n") == b":1\r\n", "expected :1 for a present key"
    assert ask(conn, b"DEL k\r\n") == b":0\r\n", "expected :0 once deleted"
    assert ask(conn, b"GET k\r\n") == b"_\r\n", "expected the deleted key to be nil"


def test_del_of_a_key_holding_the_empty_value_answers_one() -> None:
    conn = connect()
    feed(conn, b"SET k \r\n")
    reply = ask(conn, b"DEL k\r\n")
    assert reply == b":1\r\n", f"expected :1 for a key holding the empty value, got {reply!r}"


@pytest.mark.parametrize("command", [b"GET", b"DEL", b"INCR"])
def test_key_of_250_bytes_is_accepted(command: bytes) -> None:
    conn = connect()
    key = b"k" * 250
    expected = {b"GET": b"_\r\n", b"DEL": b":0\r\n", b"INCR": b":1\r\n"}[command]
    reply = ask(conn, command + b" " + key + b"\r\n")
    assert reply == expected, f"expected {command!r} with a 250-byte key to answer {expected!r}, got {reply!r}"


def test_set_with_a_250_byte_key_is_accepted() -> None:
    conn = connect()
    key = bytes(range(0x80, 0x80 + 125)) * 2  # non-ASCII bytes are allowed in keys
    assert ask(conn, b"SET " + key + b" v\r\n") == b"+OK\r\n", "expected +OK for a 250-byte key"
    reply = ask(conn, b"GET " + key + b"\r\n")
    assert reply == b"$v\r\n", f"expected the value under the 250-byte key, got {reply!r}"


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET " + b"k" * 251,
        b"DEL " + b"k" * 251,
        b"INCR " + b"k" * 251,
        b"SET " + b"k" * 251 + b" v",
    ],
    ids=["GET", "DEL", "INCR", "SET"],
)
def test_key_of_251_bytes_is_syntax(request_line: bytes) -> None:
    conn = connect()
    assert_error_line(ask(conn, request_line + b"\r\n"), "SYNTAX", request_line[:12])
    assert ask(conn, b"GET " + b"k" * 250 + b"\r\n") == b"_\r\n", "expected nothing stored under a shorter key"


@pytest.mark.parametrize("key", [b"a\x00b", b"a\rb", b"\x00"], ids=["NUL", "CR", "only-NUL"])
def test_key_with_nul_or_cr_is_syntax(key: bytes) -> None:
    conn = connect()
    for command in (b"GET ", b"DEL ", b"INCR "):
        assert_error_line(ask(conn, command + key + b"\r\n"), "SYNTAX", command + key)
    assert_error_line(ask(conn, b"SET " + key + b" v\r\n"), "SYNTAX", b"SET " + key)


def test_key_may_hold_tab_and_high_bytes() -> None:
    conn = connect()
    key = b"\t\x7f\xff\xc3\xa9"
    assert ask(conn, b"SET " + key + b" v\r\n") == b"+OK\r\n", "expected a key with TAB and high bytes accepted"
    assert ask(conn, b"GET " + key + b"\r\n") == b"$v\r\n", "expected the value back under the same key"


@pytest.mark.parametrize(
    "request_line",
    [
        b"SET",
        b"SET ",
        b"SET k",
        b"SET  v",
        b"GET",
        b"GET ",
        b"GET  k",
        b"GET k ",
        b"GET a b",
        b"DEL",
        b"DEL a b",
        b"DEL k ",
        b"INCR",
        b"INCR a b",
        b"INCR  a",
    ],
)
def test_wrong_arity_or_empty_argument_is_syntax(request_line: bytes) -> None:
    conn = connect()
    assert_error_line(ask(conn, request_line + b"\r\n"), "SYNTAX", request_line)
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n", "expected the connection to stay usable"


@pytest.mark.parametrize("command", [b"PING", b"INFO", b"FRAMED", b"STARTTLS", b"QUIT"])
@pytest.mark.parametrize("extra", [b" x", b" ", b"  ", b" x y"], ids=["arg", "trailing-SP", "two-SP", "two-args"])
def test_extra_arguments_to_argumentless_commands_are_syntax(command: bytes, extra: bytes) -> None:
    conn = connect(starttls_available=True)
    events = feed(conn, command + extra + b"\r\nPING\r\n")
    assert len(events) == 2, f"expected a SYNTAX reply then +PONG, got {events!r}"
    assert_error_line(events[0].data if isinstance(events[0], Send) else b"", "SYNTAX", command + extra)
    assert events[1] == Send(b"+PONG\r\n"), f"expected line mode to go on after {command + extra!r}, got {events[1]!r}"


def test_unsent_store_write_after_syntax_error_did_not_happen() -> None:
    conn = connect()
    assert_error_line(ask(conn, b"SET  v\r\n"), "SYNTAX")
    assert ask(conn, b"GET v\r\n") == b"_\r\n", "expected the malformed SET to store nothing"


# ---- UNKNOWN -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        b"FOO",
        b"FOO bar baz",
        b"FOO  ",
        b" PING",
        b" ",
        b"PINGX",
        b"P\xc3\x8fNG",
        b"\xff\xfe",
        b"GET\tk",
        b"PING\x00",
    ],
    ids=[
        "word",
        "with-args",
        "with-empty-args",
        "leading-SP",
        "only-SP",
        "prefix",
        "non-ascii",
        "binary",
        "tab",
        "nul",
    ],
)
def test_unknown_command_is_unknown_whatever_its_arguments(request_line: bytes) -> None:
    conn = connect()
    assert_error_line(ask(conn, request_line + b"\r\n"), "UNKNOWN", request_line)
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n", "expected the connection to stay usable"


# ---- SLEEP arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        b"SLEEP",
        b"SLEEP ",
        b"SLEEP  ",
        b"SLEEP abc",
        b"SLEEP -1",
        b"SLEEP +5",
        b"SLEEP 1.5",
        b"SLEEP 1e3",
        b"SLEEP 5 ",
        b"SLEEP  5",
        b"SLEEP 1 2",
        b"SLEEP \xd9\xa1",  # a non-ASCII digit
    ],
)
def test_sleep_argument_that_is_not_digits_is_syntax(request_line: bytes) -> None:
    conn = connect()
    assert_error_line(ask(conn, request_line + b"\r\n"), "SYNTAX", request_line)


@pytest.mark.parametrize("argument", [b"60001", b"99999", b"060001", b"18446744073709551617", b"9" * 5000])
def test_sleep_beyond_60000_ms_is_range(argument: bytes) -> None:
    conn = connect()
    assert_error_line(ask(conn, b"SLEEP " + argument + b"\r\n"), "RANGE", b"SLEEP " + argument[:20])
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n", "expected no SLEEP to hold the connection after RANGE"


@pytest.mark.parametrize(
    ("argument", "seconds"),
    [(b"60000", 60.0), (b"00001", 0.001), (b"0", 0.0), (b"000", 0.0), (b"0060000", 60.0)],
)
def test_sleep_within_range_answers_ok_after_that_long(argument: bytes, seconds: float) -> None:
    conn = connect()
    if not seconds:
        replies = feed(conn, b"SLEEP " + argument + b"\r\n")
        assert replies == [Send(b"+OK\r\n")], f"expected SLEEP {argument!r} to answer at once, got {replies!r}"
        return
    assert feed(conn, b"SLEEP " + argument + b"\r\n") == [], "expected no reply at the moment SLEEP starts"
    assert conn.deadline() == T0 + seconds, f"expected the SLEEP to end at T0+{seconds}, got {conn.deadline()}"
    assert conn.next_event(T0 + seconds - 0.0005) is None, "expected no reply before the SLEEP ends"
    event = conn.next_event(T0 + seconds)
    assert event == Send(b"+OK\r\n"), f"expected +OK when the SLEEP ends, got {event!r}"


# ---- INFO --------------------------------------------------------------------


def info_pairs(reply: bytes) -> dict[str, str]:
    assert reply.startswith(b"$") and reply.endswith(b"\r\n"), f"expected one $ value line, got {reply!r}"
    body = reply[1:-2].decode("ascii")
    pairs = body.split(" ")
    assert all(pair.count("=") >= 1 and pair.index("=") > 0 for pair in pairs), f"expected key=value pairs: {body!r}"
    keys = [pair.split("=", 1)[0] for pair in pairs]
    assert len(keys) == len(set(keys)), f"expected every key once, got {keys!r}"
    return dict(pair.split("=", 1) for pair in pairs)


def test_info_reports_every_required_key_with_its_value() -> None:
    conn = connect(
        arch="thread-pool",
        concurrency=7,
        max_connections=7,
        overflow="queue",
        idle_timeout_ms=1500,
        max_line=4096,
        max_frame=65536,
        features=frozenset({"urgent", "framed", "starttls", "tls"}),
    )
    pairs = info_pairs(ask(conn, b"INFO\r\n"))
    missing = [key for key in REQUIRED_INFO_KEYS if key not in pairs]
    assert not missing, f"expected every required INFO key, missing {missing} in {pairs!r}"
    expected = {
        "proto": "cloudhash/1",
        "arch": "thread-pool",
        "concurrency": "7",
        "max_connections": "7",
        "overflow": "queue",
        "idle_timeout_ms": "1500",
        "max_line": "4096",
        "max_frame": "65536",
    }
    for key, value in expected.items():
        assert pairs[key] == value, f"expected INFO {key}={value}, got {key}={pairs[key]}"
    features = pairs["features"].split(",")
    assert sorted(features) == ["framed", "starttls", "tls", "urgent"], f"expected all four features, got {features}"


def test_info_with_no_features_and_timer_disabled() -> None:
    conn = connect(overflow="busy", idle_timeout_ms=0, features=frozenset())
    pairs = info_pairs(ask(conn, b"INFO\r\n"))
    assert pairs["features"] == "", f"expected features= empty, got {pairs['features']!r}"
    assert pairs["idle_timeout_ms"] == "0", f"expected idle_timeout_ms=0, got {pairs['idle_timeout_ms']!r}"
    assert pairs["overflow"] == "busy", f"expected overflow=busy, got {pairs['overflow']!r}"
    assert pairs["max_line"] == "8192", f"expected the default max_line=8192, got {pairs['max_line']!r}"
    assert pairs["max_frame"] == "1048576", f"expected the default max_frame=1048576, got {pairs['max_frame']!r}"


def test_info_in_framed_mode_is_one_frame_with_the_same_value() -> None:
    conn = connect()
    line_reply = ask(conn, b"INFO\r\n")
    reply = ask(framed(conn), frame(b"INFO"))
    assert reply == frame(line_reply[:-2]), f"expected the INFO value as a frame, got {reply!r}"


# ---- FRAMED ------------------------------------------------------------------


def test_framed_answers_ok_as_a_line_then_speaks_frames() -> None:
    conn = framed(connect())
    reply = ask(conn, frame(b"PING"))
    assert reply == frame(b"+PONG"), f"expected a +PONG frame, got {reply!r}"


def test_frames_in_the_same_chunk_as_framed_are_parsed_as_frames() -> None:
    events = feed(connect(), b"FRAMED\r\n" + frame(b"ECHO a\r\nb") + frame(b"PING"))
    expected = [Send(b"+OK\r\n"), Send(frame(b"$a\r\nb")), Send(frame(b"+PONG"))]
    assert events == expected, f"expected +OK line then two frames, got {events!r}"


def test_framed_with_bare_lf_switches_from_the_next_byte() -> None:
    events = feed(connect(), b"FRAMED\n" + frame(b"PING"))
    assert events == [Send(b"+OK\r\n"), Send(frame(b"+PONG"))], f"got {events!r}"


def test_framed_when_already_framed_is_a_state_frame() -> None:
    conn = framed(connect())
    reply = ask(conn, frame(b"FRAMED"))
    assert_error_frame(reply, "STATE", b"FRAMED")
    assert ask(conn, frame(b"PING")) == frame(b"+PONG"), "expected framed mode to go on"


def test_arity_is_checked_before_state_for_framed() -> None:
    conn = framed(connect())
    assert_error_frame(ask(conn, frame(b"FRAMED x")), "SYNTAX", b"FRAMED x")


def test_echo_in_framed_mode_is_binary_safe() -> None:
    conn = framed(connect())
    data = b"\r\n\x00 \r\x00\n  \xff"
    reply = ask(conn, frame(b"ECHO " + data))
    assert reply == frame(b"$" + data), f"expected CR, LF, NUL and SP echoed raw, got {reply!r}"


def test_framed_payloads_are_never_trimmed() -> None:
    conn = framed(connect())
    reply = ask(conn, frame(b"ECHO  x \r\n"))
    assert reply == frame(b"$ x \r\n"), f"expected the payload untouched, got {reply!r}"


def test_framed_set_and_get_are_binary_safe() -> None:
    conn = framed(connect())
    value = b"line1\r\nline2\n\x00 end "
    assert ask(conn, frame(b"SET k " + value)) == frame(b"+OK"), "expected +OK frame"
    reply = ask(conn, frame(b"GET k"))
    assert reply == frame(b"$" + value), f"expected the raw value in a frame, got {reply!r}"


def test_framed_crlf_is_not_a_terminator() -> None:
    conn = framed(connect())
    assert_error_frame(ask(conn, frame(b"PING\r\n")), "UNKNOWN", b"PING\\r\\n")


def test_zero_length_frame_is_syntax_and_the_connection_stays_usable() -> None:
    conn = framed(connect())
    events = feed(conn, frame(b"") + frame(b"PING"))
    assert len(events) == 2, f"expected two replies, got {events!r}"
    assert isinstance(events[0], Send)
    assert_error_frame(events[0].data, "SYNTAX", b"<empty frame>")
    assert events[1] == Send(frame(b"+PONG")), f"expected +PONG after the empty frame, got {events[1]!r}"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"NOPE", "UNKNOWN"),
        (b" PING", "UNKNOWN"),
        (b"PING ", "SYNTAX"),
        (b"GET  k", "SYNTAX"),
        (b"GET a\nb", "SYNTAX"),
        (b"ECHO", "SYNTAX"),
        (b"SLEEP x", "SYNTAX"),
        (b"SLEEP 60001", "RANGE"),
        (b"STARTTLS", "STATE"),
    ],
)
def test_errors_in_framed_mode_are_frames(payload: bytes, code: str) -> None:
    conn = framed(connect(starttls_available=True))
    assert_error_frame(ask(conn, frame(payload)), code, payload)


def test_get_of_a_value_with_lf_is_state_in_line_mode_and_raw_in_framed_mode() -> None:
    store = DictStore()
    writer = framed(connect(store))
    assert ask(writer, frame(b"SET k a\nb")) == frame(b"+OK"), "expected the framed SET to succeed"

    reader = connect(store)
    assert_error_line(ask(reader, b"GET k\r\n"), "STATE", b"GET k (value holds LF)")
    assert_error_line(ask(reader, b"GET k\n"), "STATE", b"GET k<LF> (value holds LF)")
    reply = ask(framed(reader), frame(b"GET k"))
    assert reply == frame(b"$a\nb"), f"expected the value binary-safe in framed mode, got {reply!r}"


def test_get_of_a_value_with_cr_but_no_lf_is_answered_in_line_mode() -> None:
    store = DictStore()
    store.set(b"k", b"a\rb\r")
    reply = ask(connect(store), b"GET k\r\n")
    assert reply == b"$a\rb\r\r\n", f"expected the value with its CRs, got {reply!r}"


# ---- STARTTLS ----------------------------------------------------------------


def test_starttls_without_a_certificate_is_state() -> None:
    conn = connect(starttls_available=False)
    assert_error_line(ask(conn, b"STARTTLS\r\n"), "STATE", b"STARTTLS")
    assert ask(conn, b"PING\r\n") == b"+PONG\r\n", "expected plain line mode to go on"


def test_starttls_in_framed_mode_is_a_state_frame() -> None:
    conn = framed(connect(starttls_available=True))
    assert_error_frame(ask(conn, frame(b"STARTTLS")), "STATE", b"STARTTLS")


def test_starttls_inside_tls_is_state() -> None:
    conn = connect(starttls_available=True, in_tls=True)
    assert_error_line(ask(conn, b"STARTTLS\r\n"), "STATE", b"STARTTLS")


def test_arity_is_checked_before_state_for_starttls() -> None:
    for conn in (connect(), connect(starttls_available=True, in_tls=True)):
        assert_error_line(ask(conn, b"STARTTLS x\r\n"), "SYNTAX", b"STARTTLS x")


def test_starttls_answers_ok_then_asks_for_the_handshake() -> None:
    conn = connect(starttls_available=True)
    events = feed(conn, b"STARTTLS\r\n")
    assert events == [Send(b"+OK\r\n"), StartTLS()], f"expected +OK then StartTLS, got {events!r}"


def test_starttls_discards_bytes_received_with_it() -> None:
    store = DictStore()
    conn = connect(store, starttls_available=True)
    events = feed(conn, b"STARTTLS\r\nSET x injected\r\n")
    assert events == [Send(b"+OK\r\n"), StartTLS()], f"expected +OK, StartTLS and no SET reply, got {events!r}"
    assert store.get(b"x") is None, f"expected the injected SET never to run, but x = {store.get(b'x')!r}"
    # Inside TLS, the connection speaks line mode and has nothing left over.
    assert ask(conn, b"GET x\r\n") == b"_\r\n", "expected x to be missing inside TLS too"
    assert_error_line(ask(conn, b"STARTTLS\r\n"), "STATE", b"STARTTLS inside TLS")


def test_starttls_discards_a_partial_request_received_with_it() -> None:
    conn = connect(starttls_available=True)
    assert feed(conn, b"STARTTLS\r\nSET x inj") == [Send(b"+OK\r\n"), StartTLS()]
    reply = ask(conn, b"PING\r\n")
    assert reply == b"+PONG\r\n", f"expected the leftover 'SET x inj' gone, got {reply!r}"


# ---- QUIT --------------------------------------------------------------------


def test_quit_answers_bye_as_the_final_message_then_closes() -> None:
    events = feed(connect(), b"QUIT\r\n")
    assert events == [Send(b"+BYE\r\n", final=True), Close()], f"expected final +BYE then Close, got {events!r}"


def test_requests_pipelined_after_quit_are_not_answered() -> None:
    store = DictStore()
    conn = connect(store)
    events = feed(conn, b"PING\r\nQUIT\r\nSET x y\r\nPING\r\n")
    expected = [Send(b"+PONG\r\n"), Send(b"+BYE\r\n", final=True), Close()]
    assert events == expected, f"expected +PONG, final +BYE, Close, got {events!r}"
    assert store.get(b"x") is None, "expected the SET after QUIT never to run"
    assert feed(conn, b"PING\r\n") == [], "expected nothing once closed"


def test_quit_in_framed_mode_is_a_final_bye_frame() -> None:
    events = feed(framed(connect()), frame(b"quit"))
    assert events == [Send(frame(b"+BYE"), final=True), Close()], f"expected a final +BYE frame, got {events!r}"
