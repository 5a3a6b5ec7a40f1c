"""CloudHash/1 framing in the sans-IO core: where a request ends, and how big it may be.

Covers the encode/decode round trips of both framings, the max_line and max_frame
limits exactly at the edge and one byte past it, and the property that the way a
valid stream is cut into chunks never changes what the server answers.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_servers.core import Close, DictStore, Send, ServerConnection
from reference_servers.core.connection import Event
from reference_servers.core.framing import NEED_DATA, TOO_LONG, cut_frame, cut_line, encode_frame, encode_line
from tests.core_support import make_info

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
T0 = 1000.0

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- helpers -----------------------------------------------------------------


def connect(now: float = T0, **info_overrides: object) -> ServerConnection:
    return ServerConnection(make_info(**info_overrides), DictStore(), now)


def drain(conn: ServerConnection, now: float) -> list[Event]:
    """Every event the connection has at ``now``, re-asking while a deadline is due (SLEEP 0)."""
    events: list[Event] = []
    for _ in range(100_000):
        event = conn.next_event(now)
        if event is not None:
            events.append(event)
            continue
        due = conn.deadline()
        if due is None or due > now:
            return events
    raise AssertionError("next_event kept saying a deadline is due without producing an event")


def feed(conn: ServerConnection, data: bytes, now: float = T0) -> list[Event]:
    conn.receive_data(data)
    return drain(conn, now)


def sent(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Send))


def frame(payload: bytes) -> bytes:
    """Independent of the core: 4-byte big-endian length, then the payload."""
    return struct.pack(">I", len(payload)) + payload


def split_frames(data: bytes) -> list[bytes]:
    payloads = []
    while data:
        assert len(data) >= 4, f"expected whole frames, got a stray tail {data!r}"
        (length,) = struct.unpack(">I", data[:4])
        assert len(data) >= 4 + length, f"expected a {length}-byte frame body, got {data[4:]!r}"
        payloads.append(data[4 : 4 + length])
        data = data[4 + length :]
    return payloads


def assert_error_line(data: bytes, code: str) -> None:
    pattern = rb"-ERR " + code.encode() + rb"(?: [^\n]*)?\r\n"
    assert re.fullmatch(pattern, data), f"expected one line '-ERR {code} ...\\r\\n', got {data!r}"


def assert_error_frame(data: bytes, code: str) -> None:
    payloads = split_frames(data)
    assert len(payloads) == 1, f"expected one -ERR {code} frame, got {payloads!r}"
    pattern = rb"-ERR " + code.encode() + rb"(?: .*)?"
    assert re.fullmatch(pattern, payloads[0], re.DOTALL), f"expected a '-ERR {code} ...' frame, got {payloads[0]!r}"


def assert_final_then_close(events: list[Event], check: Callable[[bytes], None]) -> None:
    assert len(events) == 2, f"expected a final Send then Close, got {events!r}"
    first, second = events
    assert isinstance(first, Send) and first.final, f"expected a final Send, got {first!r}"
    check(first.data)
    assert isinstance(second, Close), f"expected Close after the final message, got {second!r}"


# ---- cut_line / encode_line ----------------------------------------------------

line_payloads = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))


@FAST
@given(payload=line_payloads, rest=st.binary(max_size=50))
def test_cut_line_returns_the_payload_of_a_crlf_line(payload: bytes, rest: bytes) -> None:
    line = encode_line(payload)
    assert line == payload + b"\r\n", f"expected encode_line to append CRLF, got {line!r}"
    result = cut_line(line + rest, max_line=len(line))
    assert result == (payload, len(line)), f"expected ({payload!r}, {len(line)}), got {result!r}"


@FAST
@given(payload=line_payloads.filter(lambda b: not b.endswith(b"\r")), rest=st.binary(max_size=50))
def test_cut_line_returns_the_payload_of_a_bare_lf_line(payload: bytes, rest: bytes) -> None:
    line = payload + b"\n"
    result = cut_line(line + rest, max_line=len(line))
    assert result == (payload, len(line)), f"expected ({payload!r}, {len(line)}), got {result!r}"


@FAST
@given(payload=line_payloads)
def test_cut_line_drops_only_the_one_cr_just_before_lf(payload: bytes) -> None:
    line = payload + b"\r\r\n"
    expected = (payload + b"\r", len(line))
    result = cut_line(line, max_line=len(line))
    assert result == expected, f"expected {expected!r}, got {result!r}"


@FAST
@given(partial=line_payloads, extra=st.integers(min_value=1, max_value=10))
def test_cut_line_waits_for_more_while_under_max_line_without_lf(partial: bytes, extra: int) -> None:
    result = cut_line(partial, max_line=len(partial) + extra)
    assert result is NEED_DATA, f"expected NEED_DATA for {partial!r} under the limit, got {result!r}"


@FAST
@given(held=st.binary(min_size=2, max_size=300).map(lambda b: b.replace(b"\n", b"x")), tail=st.binary(max_size=20))
def test_cut_line_refuses_as_soon_as_max_line_bytes_hold_no_lf(held: bytes, tail: bytes) -> None:
    result = cut_line(held + tail, max_line=len(held))
    assert result is TOO_LONG, f"expected TOO_LONG once {len(held)} bytes hold no LF, got {result!r}"


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (b"abc\n", (b"abc", 4)),
        (b"ab\r\n", (b"ab", 4)),
        (b"abcd\n", TOO_LONG),
        (b"abc\r\n", TOO_LONG),
    ],
)
def test_cut_line_counts_the_terminator_in_max_line(received: bytes, expected: object) -> None:
    result = cut_line(received, 4)
    assert result == expected, f"max_line=4, {received!r}: expected {expected!r}, got {result!r}"


# ---- cut_frame / encode_frame --------------------------------------------------


@FAST
@given(data=st.data(), max_frame=st.integers(min_value=0, max_value=4096), rest=st.binary(max_size=40))
def test_cut_frame_returns_the_payload_encode_frame_wrapped(data: st.DataObject, max_frame: int, rest: bytes) -> None:
    payload = data.draw(st.binary(max_size=max_frame), label="payload")
    wire = encode_frame(payload)
    assert wire == frame(payload), f"expected a 4-byte big-endian length then the payload, got {wire[:8]!r}..."
    result = cut_frame(wire + rest, max_frame)
    assert result == (payload, 4 + len(payload)), f"expected the payload back, got {result!r}"


def test_cut_frame_round_trips_a_payload_of_exactly_the_default_max_frame() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    result = cut_frame(encode_frame(payload), 1 << 20)
    assert result == (payload, 4 + (1 << 20)), "expected the 1 MiB payload back unchanged"


@FAST
@given(payload=st.binary(max_size=100), data=st.data())
def test_cut_frame_waits_for_the_whole_header_and_body(payload: bytes, data: st.DataObject) -> None:
    wire = encode_frame(payload)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire) - 1), label="cut")
    result = cut_frame(wire[:cut], max_frame=100)
    assert result is NEED_DATA, f"expected NEED_DATA for {cut} of {len(wire)} bytes, got {result!r}"


def test_cut_frame_refuses_max_frame_plus_one_from_the_header_alone() -> None:
    assert cut_frame(struct.pack(">I", 101), 100) is TOO_LONG, "expected TOO_LONG from the 4 header bytes alone"
    assert cut_frame(struct.pack(">I", 100), 100) is NEED_DATA, "expected N == max_frame to wait for its body"
    assert cut_frame(struct.pack(">I", 0xFFFFFFFF), 1 << 20) is TOO_LONG, "expected the largest N to be refused"


def test_frame_length_is_big_endian() -> None:
    header = encode_frame(b"x" * 258)[:4]
    assert header == b"\x00\x00\x01\x02", f"expected 258 as 00 00 01 02, got header {header!r}"
    result = cut_frame(b"\x00\x00\x00\x02hi", 10)
    assert result == (b"hi", 6), f"expected (b'hi', 6) from header 00 00 00 02, got {result!r}"


# ---- max_line through a connection -------------------------------------------


def echo_line(total: int, terminator: bytes) -> tuple[bytes, bytes]:
    """An ECHO request of exactly ``total`` bytes with its terminator, and its data."""
    data = b"a" * (total - len(b"ECHO ") - len(terminator))
    return b"ECHO " + data + terminator, data


MAX_LINES = [16, 100, 8192]


@pytest.mark.parametrize("max_line", MAX_LINES)
@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_line_of_exactly_max_line_bytes_is_accepted(max_line: int, terminator: bytes) -> None:
    conn = connect(max_line=max_line)
    line, data = echo_line(max_line, terminator)
    assert len(line) == max_line
    events = feed(conn, line)
    assert events == [Send(b"$" + data + b"\r\n")], f"expected the echo of a {max_line}-byte line, got {events!r}"
    events = feed(conn, b"PING\r\n")
    assert events == [Send(b"+PONG\r\n")], f"expected the connection to stay usable, got {events!r}"


@pytest.mark.parametrize("max_line", MAX_LINES)
@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_line_one_byte_over_max_line_gets_toolong_and_close(max_line: int, terminator: bytes) -> None:
    conn = connect(max_line=max_line)
    line, _ = echo_line(max_line + 1, terminator)
    events = feed(conn, line + b"PING\r\n")
    assert_final_then_close(events, lambda data: assert_error_line(data, "TOOLONG"))
    assert feed(conn, b"PING\r\n") == [], "expected nothing after the close"


@pytest.mark.parametrize("max_line", MAX_LINES)
def test_toolong_is_decided_once_max_line_bytes_hold_no_lf(max_line: int) -> None:
    conn = connect(max_line=max_line)
    assert feed(conn, b"ECHO " + b"b" * (max_line - 6)) == [], "expected to wait while under max_line bytes"
    events = feed(conn, b"b")  # now exactly max_line bytes, and no LF among them
    assert_final_then_close(events, lambda data: assert_error_line(data, "TOOLONG"))


def test_max_line_counts_a_line_that_follows_earlier_requests_on_its_own() -> None:
    conn = connect(max_line=16)
    line, data = echo_line(16, b"\r\n")
    events = feed(conn, b"PING\r\n" + line)
    assert events == [Send(b"+PONG\r\n"), Send(b"$" + data + b"\r\n")], f"got {events!r}"


def test_cr_as_the_max_line_th_byte_without_lf_is_toolong() -> None:
    conn = connect(max_line=16)
    held = b"ECHO " + b"c" * 10 + b"\r"  # 16 bytes; an LF would make the line 17
    assert len(held) == 16
    events = feed(conn, held)
    assert_final_then_close(events, lambda data: assert_error_line(data, "TOOLONG"))


# ---- max_frame through a connection ------------------------------------------


@pytest.mark.parametrize("max_frame", [64, 1 << 20])
def test_frame_of_exactly_max_frame_bytes_is_accepted(max_frame: int) -> None:
    conn = connect(max_frame=max_frame)
    data = bytes(range(256)) * ((max_frame - 5) // 256) + b"\r\n\0 "
    data = data[: max_frame - 5].ljust(max_frame - 5, b"z")
    payload = b"ECHO " + data
    assert len(payload) == max_frame
    events = feed(conn, b"FRAMED\r\n" + frame(payload))
    expected = [Send(b"+OK\r\n"), Send(frame(b"$" + data))]
    assert events == expected, f"expected +OK then the echo frame of {max_frame} bytes, got {len(events)} events"


@pytest.mark.parametrize("max_frame", [64, 1 << 20])
def test_frame_header_over_max_frame_gets_toolong_frame_before_any_body(max_frame: int) -> None:
    conn = connect(max_frame=max_frame)
    assert feed(conn, b"FRAMED\r\n") == [Send(b"+OK\r\n")]
    assert feed(conn, struct.pack(">I", max_frame + 1)[:3]) == [], "expected to wait for the 4th header byte"
    events = feed(conn, struct.pack(">I", max_frame + 1)[3:])
    assert_final_then_close(events, lambda data: assert_error_frame(data, "TOOLONG"))
    assert feed(conn, b"ECHO x") == [], "expected the body bytes to be ignored after the close"


def test_huge_frame_header_in_the_same_chunk_as_framed_is_refused() -> None:
    conn = connect()
    events = feed(conn, b"FRAMED\n" + b"\xff\xff\xff\xff")
    assert events[0] == Send(b"+OK\r\n"), f"expected +OK as a line first, got {events[0]!r}"
    assert_final_then_close(events[1:], lambda data: assert_error_frame(data, "TOOLONG"))


# ---- chunking never changes the answers --------------------------------------

KEYS = [b"a", b"n", b"k\xffey", b"K" * 250]
keys = st.sampled_from(KEYS)
no_lf = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b""))
integer_text = st.one_of(
    st.integers(min_value=-50, max_value=50),
    st.sampled_from([INT64_MAX, INT64_MAX - 1, INT64_MIN]),
).map(lambda n: str(n).encode())
values = st.one_of(no_lf, integer_text, st.sampled_from([b"-0", b"007", b"1.5", b" 1"]))
binary_values = st.one_of(st.binary(max_size=24), st.sampled_from([b"\r\n", b"\0", b" ", b"a\nb", b"\r"]), integer_text)


def request_shapes(value_strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[str, tuple[bytes, ...]]]:
    return st.one_of(
        st.just(("PING", ())),
        value_strategy.map(lambda d: ("ECHO", (d,))),
        st.tuples(keys, value_strategy).map(lambda kv: ("SET", kv)),
        keys.map(lambda k: ("GET", (k,))),
        keys.map(lambda k: ("DEL", (k,))),
        keys.map(lambda k: ("INCR", (k,))),
        st.sampled_from([b"0", b"000"]).map(lambda ms: ("SLEEP", (ms,))),
        st.just(("INFO", ())),
    )


def spelled(name: str, case: int) -> bytes:
    return (name.upper(), name.lower(), name.capitalize())[case].encode()


def payload_of(name: str, args: tuple[bytes, ...], case: int) -> bytes:
    return b" ".join((spelled(name, case), *args))


class Model:
    """What the spec says each request gets; errors are ('ERR', code)."""

    def __init__(self, info_reply: bytes) -> None:
        self.store: dict[bytes, bytes] = {}
        self.info_reply = info_reply

    def reply(self, name: str, args: tuple[bytes, ...]) -> bytes | tuple[str, str]:
        if name == "PING":
            return b"+PONG"
        if name == "ECHO":
            return b"$" + args[0]
        if name == "SET":
            self.store[args[0]] = args[1]
            return b"+OK"
        if name == "GET":
            value = self.store.get(args[0])
            return b"_" if value is None else b"$" + value
        if name == "DEL":
            return b":1" if self.store.pop(args[0], None) is not None else b":0"
        if name == "INCR":
            stored = self.store.get(args[0], b"0")
            if not re.fullmatch(rb"-?[0-9]+", stored) or not INT64_MIN <= int(stored) <= INT64_MAX:
                return ("ERR", "TYPE")
            if int(stored) == INT64_MAX:
                return ("ERR", "RANGE")
            self.store[args[0]] = str(int(stored) + 1).encode()
            return b":%d" % (int(stored) + 1)
        if name == "SLEEP":
            return b"+OK"
        if name == "INFO":
            return self.info_reply
        raise AssertionError(name)


def check_replies(replies: list[bytes], expected: list[bytes | tuple[str, str]]) -> None:
    assert len(replies) == len(expected), f"expected {len(expected)} replies, got {len(replies)}: {replies!r}"
    for index, (got, want) in enumerate(zip(replies, expected, strict=True)):
        if isinstance(want, tuple):
            pattern = rb"-ERR " + want[1].encode() + rb"(?: .*)?"
            assert re.fullmatch(pattern, got, re.DOTALL), f"reply {index}: expected -ERR {want[1]}, got {got!r}"
        else:
            assert got == want, f"reply {index}: expected {want!r}, got {got!r}"


def info_reply() -> bytes:
    conn = connect()
    events = feed(conn, b"INFO\r\n")
    assert len(events) == 1 and isinstance(events[0], Send)
    return events[0].data[:-2]


def cut_points(data: st.DataObject, length: int) -> list[int]:
    cuts = data.draw(st.sets(st.integers(min_value=1, max_value=max(length - 1, 1)), max_size=40), label="cuts")
    return sorted(c for c in cuts if 0 < c < length)


def feed_in_chunks(stream: bytes, cuts: list[int]) -> list[Event]:
    conn = connect()
    events: list[Event] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        if stop > start:  # b"" would mean EOF
            events += feed(conn, stream[start:stop])
    return events


def only_plain_sends(events: list[Event]) -> bytes:
    for event in events:
        assert isinstance(event, Send) and not event.final, f"expected only non-final Sends, got {event!r}"
    return sent(events)


line_stream_items = st.lists(
    st.tuples(
        st.one_of(request_shapes(values), st.just(("", ()))),  # "" is an empty line
        st.integers(min_value=0, max_value=2),
        st.sampled_from([b"\n", b"\r\n"]),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=line_stream_items, data=st.data())
def test_line_stream_answers_the_same_however_it_is_chunked(
    items: list[tuple[tuple[str, tuple[bytes, ...]], int, bytes]], data: st.DataObject
) -> None:
    model = Model(info_reply())
    stream = b""
    expected: list[bytes | tuple[str, str]] = []
    for (name, args), case, terminator in items:
        stream += (payload_of(name, args, case) if name else b"") + terminator
        if not name:
            continue
        received = args
        if terminator == b"\n" and name in ("ECHO", "SET") and args[-1].endswith(b"\r"):
            received = (*args[:-1], args[-1][:-1])  # the CR just before the LF belongs to the terminator
        expected.append(model.reply(name, received))

    whole = only_plain_sends(feed_in_chunks(stream, []))
    chunked = only_plain_sends(feed_in_chunks(stream, cut_points(data, len(stream))))
    assert chunked == whole, f"expected chunked input to answer {whole!r}, got {chunked!r}"
    replies = whole.split(b"\n")
    assert replies[-1] == b"", f"expected the output to end with a complete line, got {whole[-20:]!r}"
    for reply in replies[:-1]:
        assert reply.endswith(b"\r"), f"expected every reply to end with CRLF, got {reply!r}"
    check_replies([reply[:-1] for reply in replies[:-1]], expected)


def test_line_stream_fed_byte_by_byte_answers_in_order() -> None:
    stream = b"PING\r\nSET k v w\nGET k\r\n\r\nECHO  x \nINCR n\r\nINCR n\nDEL k\r\nGET k\n"
    conn = connect()
    out = b"".join(sent(feed(conn, stream[i : i + 1])) for i in range(len(stream)))
    expected = b"+PONG\r\n+OK\r\n$v w\r\n$ x \r\n:1\r\n:2\r\n:1\r\n_\r\n"
    assert out == expected, f"expected {expected!r}, got {out!r}"


framed_stream_items = st.lists(
    st.one_of(
        st.tuples(request_shapes(binary_values), st.integers(min_value=0, max_value=2)),
        st.just((("", ()), 0)),  # a zero-length frame
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opener=st.sampled_from([b"FRAMED\r\n", b"framed\n"]), items=framed_stream_items, data=st.data())
def test_framed_stream_answers_the_same_however_it_is_chunked(
    opener: bytes, items: list[tuple[tuple[str, tuple[bytes, ...]], int]], data: st.DataObject
) -> None:
    model = Model(info_reply())
    stream = opener
    expected: list[bytes | tuple[str, str]] = []
    for (name, args), case in items:
        if not name:
            stream += frame(b"")
            expected.append(("ERR", "SYNTAX"))
            continue
        stream += frame(payload_of(name, args, case))
        expected.append(model.reply(name, args))

    whole = only_plain_sends(feed_in_chunks(stream, []))
    chunked = only_plain_sends(feed_in_chunks(stream, cut_points(data, len(stream))))
    assert chunked == whole, f"expected chunked input to answer {whole!r}, got {chunked!r}"
    assert whole.startswith(b"+OK\r\n"), f"expected FRAMED's +OK as a line first, got {whole[:10]!r}"
    check_replies(split_frames(whole[len(b"+OK\r\n") :]), expected)
