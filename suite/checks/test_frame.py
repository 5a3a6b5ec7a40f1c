"""CH-FRAME: who speaks, line mode, framed mode, pipelining and half-close
(PROTOCOL.md sections 3, 4, 8 and 10).

The property-based checks compare the server's replies byte for byte with the
replies the suite's own model of section 6 gives (suite.checks.protocol),
never with a reference server.

Only the checks of pipelining and segmentation (CH-FRAME-9, -17, -18 and the
requests waiting behind a SLEEP in CH-FRAME-19), and those whose subject is
what follows a final message, send a request before the previous reply is
in; every other check asks one request at a time, so that a server that
cannot pipeline fails those requirements and nothing else.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from suite.api import Probe, Violation, fresh_key, requirement
from suite.checks.protocol import (
    BODY_CAP,
    REPLY_TIMEOUT,
    TOOLONG_WITHIN,
    apply,
    frame,
    frame_header,
    is_integer_value,
    parse_response,
)
from suite.escape import escape
from suite.targets.base import Target
from suite.wire import Ending

# Each piece of a segmented stream is followed by this pause on the wire, so
# that it leaves as its own segment (TCP_NODELAY is on) and the server most
# likely reads it on its own.
GAP = 0.003
MAX_CUTS = 12

# Replies to a segmented stream normally come within milliseconds on loopback.
PIECES_TIMEOUT = 1.0
# After this many examples whose replies are wrong however the stream is cut
# (other checks judge such replies), the remaining examples are skipped: each
# would wait for replies that do not come.
CONSISTENTLY_WRONG = pytest.StashKey[int]()
GIVE_UP_AFTER = 2

# Every example opens (and closes) its own connection, so the function-scoped
# `target` fixture is safe to share between examples. No shrinking: every step
# would be a network exchange, and the transcript already shows every segment.
NETWORK_EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---- the expected replies (the model of section 6 is suite.checks.protocol) -----------


def line_payload(line: bytes) -> bytes:
    """Section 4: the payload of a line (terminator included) as the server sees it."""
    body = line[:-1]
    return body[:-1] if body.endswith(b"\r") else body


# ---- scripts of valid requests --------------------------------------------------

KEYS = 3  # fresh keys per example
Op = tuple[str, int, bytes, bytes]  # (command, key index, data, line terminator)

NUMBER = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda n: b"%d" % n),
    st.sampled_from([b"007", b"-0", b"0", b"-1"]),
)
# Random bytes, or bytes drawn mostly from the ones framing code trips over.
TRICKY = st.lists(st.sampled_from(b"\r\na\r\n \x00\xff"), min_size=1, max_size=16).map(bytes)
LINE_DATA = st.one_of(TRICKY, st.binary(max_size=16)).map(lambda b: b.replace(b"\n", b"\r"))  # no LF; many CRs
FRAME_DATA = st.one_of(TRICKY, st.binary(max_size=24))


@st.composite
def scripts(draw: st.DrawFn, data: st.SearchStrategy[bytes], line_mode: bool) -> list[Op]:
    """1 to 10 valid requests. INCR goes only to keys that are missing or hold
    an integer, so that every reply is a success reply with exact bytes."""
    numeric = [True] * KEYS
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["ECHO", "SET", "PING", "GET", "ECHO", "SET", "DEL", "INCR"]))
        key = draw(st.integers(0, KEYS - 1))
        end = draw(st.sampled_from([b"\r\n", b"\n"])) if line_mode else b""
        value = b""
        if kind == "INCR" and not numeric[key]:
            kind = "GET"
        if kind == "ECHO":
            value = draw(data)
        elif kind == "SET":
            value = draw(st.one_of(NUMBER, data))
            # A value that ends in CR may lose it to a bare-LF terminator: such
            # values are never integers, so INCR stays away from them.
            numeric[key] = is_integer_value(value)
        elif kind == "DEL":
            numeric[key] = True
        ops.append((kind, key, value, end))
    return ops


def request_payload(op: Op, keys: list[bytes]) -> bytes:
    kind, key, value, _ = op
    if kind == "PING":
        return b"PING"
    if kind == "ECHO":
        return b"ECHO " + value
    if kind == "SET":
        return b"SET " + keys[key] + b" " + value
    return kind.encode() + b" " + keys[key]


def new_keys() -> list[bytes]:
    """Fresh keys of a fixed length, so that a replayed example cuts at the same places."""
    return [
        b"sockspec-seg-" + hashlib.blake2b(fresh_key("seg"), digest_size=12).hexdigest().encode() for _ in range(KEYS)
    ]


def line_exchange(script: list[Op], keys: list[bytes]) -> tuple[bytes, bytes, list[int]]:
    """The request stream, the expected replies, and interesting cut points
    (inside the command, just before the terminator, right after every CR)."""
    stream, replies, special = b"", b"", []
    store: dict[bytes, bytes] = {}
    for op in script:
        line = request_payload(op, keys) + op[3]
        special += [len(stream) + 1, len(stream) + len(line) - len(op[3])]
        # Right after every CR (data or terminator): a CR that ends a segment must not end the line.
        special += [len(stream) + i + 1 for i, byte in enumerate(line) if byte == 0x0D]
        stream += line
        replies += apply(line_payload(line), store) + b"\r\n"
    return stream, replies, [p for p in special if 0 < p < len(stream)]


def framed_exchange(script: list[Op], keys: list[bytes], switch: bytes) -> tuple[bytes, bytes, list[int]]:
    """FRAMED (ended by ``switch``) and then the requests as frames; cut points
    inside the FRAMED line, at the switch, inside every frame header, and right
    after every CR or LF inside a payload."""
    stream, replies = b"FRAMED" + switch, b"+OK\r\n"
    special = [len(stream) - 1, len(stream)]
    store: dict[bytes, bytes] = {}
    for op in script:
        payload = request_payload(op, keys)
        special += [len(stream) + i for i in (1, 2, 3, 4, 5)]
        special += [len(stream) + 4 + i + 1 for i, byte in enumerate(payload) if byte in b"\r\n"]
        stream += frame(payload)
        replies += frame(apply(payload, store))
    return stream, replies, [p for p in special if 0 < p < len(stream)]


def cut_points(length: int, special: list[int]) -> st.SearchStrategy[list[int]]:
    """Up to MAX_CUTS offsets: some anywhere, some at the interesting places."""
    anywhere = st.lists(st.integers(1, length - 1), max_size=MAX_CUTS // 2)
    chosen = st.lists(st.sampled_from(special), max_size=MAX_CUTS // 2) if special else st.just([])
    return st.tuples(anywhere, chosen).map(lambda both: sorted(set(both[0] + both[1])))


# ---- helpers ----------------------------------------------------------------------


def exchange_in_pieces(c: Probe, stream: bytes, cuts: list[int], size: int) -> bytes:
    """Send ``stream`` cut at ``cuts``, each piece followed by a pause of GAP
    on the wire, reading replies as they come; then read until ``size`` bytes
    (or the end, or REPLY_TIMEOUT). Returns every byte received."""
    got = bytearray()
    bounds = [0, *cuts, len(stream)]
    for start, end in itertools.pairwise(bounds):
        c.send(stream[start:end])
        pause_ends = time.monotonic() + GAP
        while (left := pause_ends - time.monotonic()) > 0 and c.wire.ending is Ending.OPEN:
            c.quiet_for(left)
            got += c.wire.read_exactly(1 << 20, timeout=0.0005)
    got += c.wire.read_exactly(max(0, size - len(got)), timeout=PIECES_TIMEOUT)
    return bytes(got) + c.wire.pending()


def still_judging(request: pytest.FixtureRequest) -> bool:
    wrong: int = request.node.stash.get(CONSISTENTLY_WRONG, 0)
    return wrong < GIVE_UP_AFTER


def judge_segmentation(
    target: Target,
    c: Probe,
    request: pytest.FixtureRequest,
    *,
    got: bytes,
    expected: bytes,
    build: Callable[[list[bytes]], tuple[bytes, bytes, list[int]]],
    cuts: list[int],
    what: str,
) -> None:
    """Fail only when the replies depend on the segmentation: a wrong reply
    that the same stream also gets when sent in one piece belongs to another
    requirement (its own check judges it)."""
    if got == expected:
        return
    whole_stream, _, _ = build(new_keys())
    with target.connect("the same stream (other fresh keys) in one send") as whole:
        whole.send(whole_stream)
        in_one_piece = whole.wire.read_exactly(len(expected), timeout=PIECES_TIMEOUT) + whole.wire.pending()
        whole_transcript = whole.wire.transcript
    if in_one_piece == got:
        request.node.stash[CONSISTENTLY_WRONG] = request.node.stash.get(CONSISTENTLY_WRONG, 0) + 1
        return
    verdict = (
        "in one piece the same stream gets the expected replies"
        if in_one_piece == expected
        else f"in one piece it gets yet other replies: {escape(in_one_piece, 200)}"
    )
    raise Violation(
        f"{what} cut at byte offsets {cuts} got other replies than the spec gives ({verdict})",
        expected=expected,
        actual=got,
        transcripts=[c.wire.transcript, whole_transcript],
        ending=c.wire.ending,
    )


def filler(rng: random.Random, size: int) -> bytes:
    """Printable bytes (no SP, CR or LF) for long lines."""
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))


# ---- section 3: who speaks ---------------------------------------------------------


@requirement("CH-FRAME-1")
def test_the_server_sends_nothing_unasked(target: Target) -> None:
    with target.connect() as c:
        c.expect_silence(0.3, why="the server sends no greeting on accept")
        c.send(b"PING\r\n")
        c.line("the reply to PING")
        c.expect_silence(0.15, why="nothing follows a reply until the next request")
        c.send(b"BOGUS x\r\n")
        c.line("the reply to an unknown command")
        c.expect_silence(0.1, why="nothing follows an error reply")
        if target.declared.has("framed"):
            c.send(b"FRAMED\r\n")
            c.line("the reply to FRAMED")
            c.expect_silence(0.1, why="nothing follows FRAMED's +OK")
            c.send_frame(b"PING")
            c.frame("the framed reply to PING", timeout=REPLY_TIMEOUT)
            c.expect_silence(0.1, why="nothing follows a framed reply")


# ---- section 4: line mode ------------------------------------------------------------


@requirement("CH-FRAME-2")
def test_bare_lf_ends_a_request(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(b"PING\n")
        c.expect_line(b"+PONG\r\n", why="PING ended by a bare LF, with nothing after it")
        c.send(b"ECHO a b\n")
        c.expect_line(b"$a b\r\n")
        for request, reply in (
            (b"SET " + key + b" v\n", b"+OK\r\n"),
            (b"GET " + key + b"\n", b"$v\r\n"),
            (b"PING\r\n", b"+PONG\r\n"),
            (b"PING\n", b"+PONG\r\n"),
        ):
            c.send(request)
            c.expect_line(reply, why=f"the request {escape(request)}")


@requirement("CH-FRAME-3")
def test_only_the_cr_right_before_lf_is_dropped(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        for request, reply in (
            (b"ECHO a\r\n", b"$a\r\n"),
            (b"ECHO a\rb\n", b"$a\rb\r\n"),
            (b"ECHO a\r\r\n", b"$a\r\r\n"),
            (b"ECHO \ra\r\n", b"$\ra\r\n"),
            (b"ECHO a\r\rb\r\n", b"$a\r\rb\r\n"),
            (b"ECHO a\r\r\r\n", b"$a\r\r\r\n"),
            (b"ECHO \r\r\n", b"$\r\r\n"),
            (b"SET " + key + b" x\r\r\n", b"+OK\r\n"),
            (b"GET " + key + b"\r\n", b"$x\r\r\n"),
        ):
            c.send(request)
            c.expect_line(reply, why=f"the request {escape(request)}")


@requirement("CH-FRAME-4")
def test_empty_lines_get_no_reply(target: Target) -> None:
    with target.connect() as c:
        c.send(b"\r\n\n\r\n")
        c.expect_silence(0.15, why="empty lines are not requests")
        # Empty lines before a request and after one, in the same segment as it.
        c.send(b"\r\n\nPING\r\n")
        c.expect_line(b"+PONG\r\n", why="the request after two empty lines")
        c.send(b"PING\n\n\r\n")
        c.expect_line(b"+PONG\r\n", why="the request before two empty lines")
        c.expect_silence(0.1, why="the empty lines after it get no reply")
        c.send(b"\r\nECHO x\r\n")
        c.expect_line(b"$x\r\n")
        c.send(b"\r")
        c.quiet_for(GAP)
        c.send(b"\n")
        c.quiet_for(GAP)
        c.send(b"ECHO y\r\n")
        c.expect_line(b"$y\r\n", why="an empty line split between CR and LF gets no reply either")
        c.send(b"\r\r\n")
        c.expect_error("UNKNOWN", why='"\\r\\r\\n" is the one-byte request "\\r", not an empty line')
        c.ask(b"PING", b"+PONG")


def _line_at(max_line: int, total: int, end: bytes, rng: random.Random) -> tuple[bytes, bytes]:
    """An ECHO line of ``total`` bytes as received (terminator included), and its reply."""
    data = filler(rng, total - len(b"ECHO ") - len(end))
    return b"ECHO " + data + end, b"$" + data + b"\r\n"


@requirement("CH-FRAME-5")
def test_a_line_of_exactly_max_line_bytes_is_accepted(target: Target, seed: int) -> None:
    max_line = target.declared.number("max_line")
    rng = random.Random(seed)
    with target.connect() as c:
        if max_line < len(b"ECHO \n") + 1:
            # Too small for an ECHO: a line of max_line bytes is still a request, an unknown one.
            c.send(b"Z" * (max_line - 1) + b"\n")
            c.expect_error("UNKNOWN", why=f"a line of exactly max_line={max_line} bytes is processed")
            return
        for end in (b"\r\n", b"\n"):
            line, reply = _line_at(max_line, max_line, end, rng)
            c.send(line)
            c.expect_line(reply, why=f"a line of exactly max_line={max_line} bytes ending in {escape(end)}")
            c.ask(b"PING", b"+PONG", why="the request after it")
        # The server holds max_line - 1 bytes ending in CR before the LF arrives: not too long yet.
        line, reply = _line_at(max_line, max_line, b"\r\n", rng)
        c.send(line[:-1])
        c.quiet_for(GAP)
        c.send(line[-1:])
        c.expect_line(reply, why=f"a line of exactly max_line={max_line} bytes whose LF arrives on its own")


def _oversized_line_is_refused(target: Target, end: bytes, seed: int) -> None:
    max_line = target.declared.number("max_line")
    rng = random.Random(seed)
    key, after = fresh_key("toolong"), fresh_key("after")
    head = b"SET " + key + b" "
    if len(head) + len(end) > max_line:
        head = b"Z"
    line = head + filler(rng, max_line + 1 - len(head) - len(end)) + end
    assert len(line) == max_line + 1
    with target.connect() as c:
        c.ask(b"PING", b"+PONG", why="an earlier request on the connection")
        # What follows the oversized line in the same send must never run.
        c.send(line + b"SET " + after + b" v\r\nPING\r\n")
        c.expect_error("TOOLONG", why=f"a line of max_line + 1 = {max_line + 1} bytes ending in {escape(end)}")
        # FIN versus RST is CH-ERR-8's business; here the server must just close.
        c.expect_end(allow_reset=True, why="TOOLONG is a final message; nothing after it is answered")
    with target.connect("checking the store") as check:
        check.ask(b"GET " + key, b"_", why="the oversized SET must not be executed")
        check.ask(b"GET " + after, b"_", why="a SET after the oversized line must not be executed")


@requirement("CH-FRAME-6")
def test_a_line_one_byte_over_max_line_with_crlf_gets_toolong(target: Target, seed: int) -> None:
    _oversized_line_is_refused(target, b"\r\n", seed)


@requirement("CH-FRAME-6")
def test_a_line_one_byte_over_max_line_with_bare_lf_gets_toolong(target: Target, seed: int) -> None:
    _oversized_line_is_refused(target, b"\n", seed)


@requirement("CH-FRAME-7")
def test_oversize_is_decided_without_waiting_for_the_lf(target: Target, seed: int) -> None:
    max_line = target.declared.number("max_line")
    rng = random.Random(seed)
    for last in (b"x", b"\r"):  # a CR as the max_line-th byte could only start a terminator that is too late
        body = (b"ECHO " if max_line > 6 else b"") + filler(rng, max_line)
        line = body[: max_line - 1] + last
        with target.connect(f"max_line bytes ending in {escape(last)}") as c:
            c.ask(b"PING", b"+PONG", why="an earlier request on the connection")
            c.send(line)
            c.expect_error(
                "TOOLONG",
                timeout=TOOLONG_WITHIN,
                why=f"{max_line} bytes without LF are already too long; the server must not wait (1 s + margin)",
            )
            c.expect_end(why="the client sent nothing more, so the close is a FIN")


# ---- section 8: framed mode -----------------------------------------------------------


@requirement("CH-FRAME-8")
def test_framed_answers_ok_as_a_line_then_speaks_frames(target: Target) -> None:
    with target.connect() as c:
        c.send(b"FRAMED\r\n")
        c.expect_line(b"+OK\r\n", timeout=REPLY_TIMEOUT, why="FRAMED is answered with a line")
        c.send(frame(b"PING"))
        c.expect_bytes(b"\x00\x00\x00\x05+PONG", "the frame N=5 +PONG")
        c.send(frame(b"ECHO x"))
        c.expect_bytes(b"\x00\x00\x00\x02$x", "the frame N=2 $x")
    with target.connect("FRAMED ended by a bare LF") as c:
        c.send(b"FRAMED\n")
        c.expect_line(b"+OK\r\n", timeout=REPLY_TIMEOUT, why="FRAMED is answered with a line")
        c.send(frame(b"PING"))
        c.expect_bytes(b"\x00\x00\x00\x05+PONG", "the frame N=5 +PONG")


@requirement("CH-FRAME-9")
def test_frames_in_the_same_segment_as_framed_are_parsed(target: Target) -> None:
    key = fresh_key()
    frames = frame(b"SET " + key + b" a\r\nb\x00c") + frame(b"GET " + key) + frame(b"PING")
    replies = frame(b"+OK") + frame(b"$a\r\nb\x00c") + frame(b"+PONG")
    for switch in (b"FRAMED\r\n", b"FRAMED\n"):
        with target.connect(f"{escape(switch)} and frames in one send") as c:
            c.ask(b"PING", b"+PONG", why="a line-mode request before FRAMED")
            c.send(switch + frames)
            c.expect_bytes(b"+OK\r\n" + replies, "+OK as a line, then one frame per request")


@requirement("CH-FRAME-10")
def test_frame_headers_are_big_endian(target: Target) -> None:
    max_frame = target.declared.number("max_frame")
    with target.connect() as c:
        c.switch_to_framed()
        # Read little-endian, 00 00 00 07 would announce 117440512 bytes.
        c.send(b"\x00\x00\x00\x07ECHO hi")
        c.expect_bytes(b"\x00\x00\x00\x03$hi", "the frame 00 00 00 03 $hi")
        data = bytes(range(256)) + b"z" * 44  # N = 305 = 00 00 01 31
        if max_frame >= 305:
            c.send(frame(b"ECHO " + data))
            c.expect_bytes(b"\x00\x00\x01\x2d$" + data, "a reply header 00 00 01 2D (301 bytes)")
        if max_frame >= 0x00010203:
            data = b"q" * (0x00010203 - 5)  # four distinct header bytes each way
            c.send(b"\x00\x01\x02\x03ECHO " + data)
            c.expect_bytes(frame_header(len(data) + 1) + b"$" + data, "a reply header 00 01 01 FF")


@requirement("CH-FRAME-11")
def test_a_frame_of_exactly_max_frame_bytes_is_accepted(target: Target, seed: int) -> None:
    max_frame = target.declared.number("max_frame")
    data = random.Random(seed).randbytes(max(0, max_frame - 5))
    with target.connect() as c:
        c.switch_to_framed()
        if max_frame < 5:
            c.ask_error(b"Z" * max_frame, "UNKNOWN", why=f"a frame of exactly max_frame={max_frame} bytes is processed")
        else:
            c.request(b"ECHO " + data)
            got = c.wire.read_frame(timeout=10)
            if got != b"$" + data:
                raise c.violation(
                    f"a frame of exactly max_frame={max_frame} bytes (ECHO) was not answered with its data",
                    expected=frame(b"$" + data)[:64],
                    actual=(frame(got) if got is not None else c.wire.pending())[:64],
                )
        c.ask(b"PING", b"+PONG", "the connection stays usable", timeout=REPLY_TIMEOUT)


@requirement("CH-FRAME-12")
def test_a_header_above_max_frame_gets_toolong_at_once(target: Target) -> None:
    max_frame = target.declared.number("max_frame")
    with target.connect("N = max_frame + 1") as c:
        c.switch_to_framed()
        c.ask(b"PING", b"+PONG", "a frame before the oversized header", timeout=REPLY_TIMEOUT)
        c.send(frame_header(max_frame + 1))
        c.expect_error(
            "TOOLONG", timeout=TOOLONG_WITHIN, why=f"N = {max_frame + 1}, no payload byte sent (1 s + margin)"
        )
        c.expect_end(why="TOOLONG is a final message, and the client sent nothing more")
    with target.connect("N = 0xFFFFFFFF as the first frame") as c:
        c.switch_to_framed()
        c.send(b"\xff\xff\xff\xff")
        c.expect_error("TOOLONG", timeout=TOOLONG_WITHIN, why="N = 0xFFFFFFFF, no payload byte sent (1 s + margin)")
        c.expect_end(why="TOOLONG is a final message, and the client sent nothing more")


@requirement("CH-FRAME-13")
def test_a_zero_length_frame_gets_syntax_and_the_next_frame_works(target: Target) -> None:
    with target.connect() as c:
        c.switch_to_framed()
        c.send(b"\x00\x00\x00\x00")
        c.expect_error("SYNTAX", why="a zero-length frame", timeout=REPLY_TIMEOUT)
        c.ask(b"PING", b"+PONG", "the frame after a zero-length frame", timeout=REPLY_TIMEOUT)
        c.ask(b"ECHO a", b"$a", timeout=REPLY_TIMEOUT)
        c.ask_error(b"", "SYNTAX", why="a zero-length frame between two frames", timeout=REPLY_TIMEOUT)
        c.ask(b"ECHO b", b"$b", "the frame after a zero-length frame", timeout=REPLY_TIMEOUT)


@requirement("CH-FRAME-14")
def test_framed_payloads_are_binary_safe_and_never_trimmed(target: Target) -> None:
    key, empty = fresh_key(), fresh_key()
    every_byte = b" \r\n" + bytes(range(256)) + b"\x00\r\n \t"
    max_frame = target.declared.number("max_frame")
    if len(b"SET " + key + b" " + every_byte) > max_frame:  # a small max_frame: a shorter value
        every_byte = every_byte[: max_frame - len(b"SET " + key + b" ") - 3] + b"\r\n "
    with target.connect() as c:
        c.switch_to_framed()
        c.ask(b"ECHO \x00\r\n \xff ", b"$\x00\r\n \xff ", "the spec's example", timeout=REPLY_TIMEOUT)
        for data in (b"\n", b"\r\n", b" ", b""):
            c.ask(b"ECHO " + data, b"$" + data, timeout=REPLY_TIMEOUT)
        c.ask(b"SET " + key + b" " + every_byte, b"+OK", timeout=REPLY_TIMEOUT)
        c.ask(b"GET " + key, b"$" + every_byte, "a value of every byte value, SP/CR/LF at both ends", REPLY_TIMEOUT)
        c.ask(b"SET " + empty + b" ", b"+OK", timeout=REPLY_TIMEOUT)
        c.ask(b"GET " + empty, b"$", "the empty value", timeout=REPLY_TIMEOUT)


@requirement("CH-FRAME-15")
def test_every_framed_reply_is_exactly_one_frame(target: Target) -> None:
    key, text = fresh_key(), fresh_key()
    requests: list[tuple[bytes, bytes | None]] = [  # (payload, exact reply or None: one well-formed reply)
        (b"PING", b"+PONG"),
        (b"ECHO a\r\n", b"$a\r\n"),
        (b"SET " + key + b" 41", b"+OK"),
        (b"INCR " + key, b":42"),
        (b"GET " + key, b"$42"),
        (b"DEL " + key, b":1"),
        (b"GET " + key, b"_"),
        (b"SLEEP 0", b"+OK"),
        (b"INFO", None),
        (b"BOGUS x", None),
        (b"", None),
        (b"FRAMED", None),
        (b"GET a b", None),
        (b"SET " + text + b" abc", b"+OK"),
        (b"INCR " + text, None),
        (b"SLEEP 99999", None),
    ]
    with target.connect() as c:
        c.switch_to_framed()
        # One request at a time: a reply of two frames shows as a wrong reply to the next request.
        for payload, exact in [*requests, (b"ECHO end", b"$end")]:
            c.request(payload)
            got = c.wire.read_frame(timeout=REPLY_TIMEOUT)
            what = f"the reply to the frame {escape(payload)!r}"
            if got is None:
                raise c.violation(f"{what} is not a complete frame", actual=c.wire.pending())
            if exact is not None and got != exact:
                raise c.violation(
                    f"{what} is not the one frame {escape(exact)}", expected=frame(exact), actual=frame(got)
                )
            reply = parse_response(got, framed=True)
            if exact is None and (reply is None or b"\n" in reply.text):
                raise c.violation(
                    f"{what} is not one frame holding a line-mode response without its CRLF",
                    expected="one frame: +PONG, +OK, $value, _, :n or -ERR CODE [text] (no LF in the text)",
                    actual=frame(got),
                )
        c.expect_silence(0.05, why="nothing is written between or after frames")
    max_frame = target.declared.number("max_frame")
    with target.connect("TOOLONG in framed mode") as c:
        c.switch_to_framed()
        # The whole oversized frame, so that even a server that waits for the
        # body (CH-FRAME-12) sends its TOOLONG, and this check judges its form.
        c.send(frame_header(max_frame + 1) + b"\x00" * min(max_frame + 1, BODY_CAP))
        c.expect_error("TOOLONG", timeout=TOOLONG_WITHIN, why="the unsolicited TOOLONG is one frame too")
        c.expect_end(allow_reset=True, why="nothing but the TOOLONG frame before the close")


@requirement("CH-FRAME-16")
def test_framed_in_framed_mode_gets_state_and_stays_framed(target: Target) -> None:
    with target.connect() as c:
        c.switch_to_framed()
        c.ask_error(b"FRAMED", "STATE", why="FRAMED in framed mode", timeout=REPLY_TIMEOUT)
        c.ask(b"PING", b"+PONG", "the connection stays in framed mode", timeout=REPLY_TIMEOUT)
        c.ask(b"ECHO still framed", b"$still framed", timeout=REPLY_TIMEOUT)


# ---- section 10: pipelining and half-close ---------------------------------------------


@requirement("CH-FRAME-17")
def test_pipelined_lines_are_all_answered_in_order(target: Target) -> None:
    key = fresh_key()
    requests, replies = [b"SLEEP 50\r\n"], [b"+OK\r\n"]  # the rest arrives while the SLEEP runs
    for i in range(1, 201):
        requests += [b"INCR " + key + b"\r\n", b"ECHO %d\n" % i, b"PING\r\n"]
        replies += [b":%d\r\n" % i, b"$%d\r\n" % i, b"+PONG\r\n"]
    requests.append(b"GET " + key + b"\r\n")
    replies.append(b"$200\r\n")
    with target.connect() as c:
        _expect_replies_in_order(c, requests, replies, "requests", "reply")


@requirement("CH-FRAME-17")
def test_pipelined_frames_are_all_answered_in_order(target: Target) -> None:
    if not target.declared.has("framed"):
        return  # the line-mode half of CH-FRAME-17 is judged by the check above
    key = fresh_key()
    requests, replies = [frame(b"SLEEP 50")], [frame(b"+OK")]
    for i in range(1, 201):
        requests += [frame(b"INCR " + key), frame(b"ECHO %d" % i), frame(b"PING")]
        replies += [frame(b":%d" % i), frame(b"$%d" % i), frame(b"+PONG")]
    requests.append(frame(b"GET " + key))
    replies.append(frame(b"$200"))
    with target.connect() as c:
        c.switch_to_framed()
        _expect_replies_in_order(c, requests, replies, "frames", "reply frame")


def _expect_replies_in_order(c: Probe, requests: list[bytes], replies: list[bytes], sent: str, reply: str) -> None:
    """All ``requests`` in one send; exactly ``replies``, in order."""
    expected = b"".join(replies)
    c.send(b"".join(requests))
    got = c.wire.read_exactly(len(expected), timeout=5)
    if got != expected:
        raise c.violation(
            f"{len(requests)} {sent} sent in one send did not get one {reply} each, in order",
            expected=expected,
            actual=got + c.wire.pending(),
        )


@requirement("CH-FRAME-18")
def test_a_stream_sent_one_byte_per_segment_gets_the_same_replies(target: Target) -> None:
    key = fresh_key()
    lines = b"SET " + key + b" v\r\nGET " + key + b"\nECHO a\r\rb\r\nECHO c\r\nPING\r\n"
    line_replies = b"+OK\r\n$v\r\n$a\r\rb\r\n$c\r\n+PONG\r\n"
    with target.connect("line mode, one byte per segment") as c:
        got = exchange_in_pieces(c, lines, list(range(1, len(lines))), len(line_replies))
        if got != line_replies:
            raise c.violation(
                "a line stream sent one byte per segment got other replies", expected=line_replies, actual=got
            )
    if not target.declared.has("framed"):
        return
    framed = b"FRAMED\r\n" + frame(b"SET " + key + b" a\r\nb") + frame(b"GET " + key) + frame(b"PING")
    framed_replies = b"+OK\r\n" + frame(b"+OK") + frame(b"$a\r\nb") + frame(b"+PONG")
    with target.connect("framed mode, one byte per segment") as c:
        got = exchange_in_pieces(c, framed, list(range(1, len(framed))), len(framed_replies))
        if got != framed_replies:
            raise c.violation(
                "FRAMED and frames sent one byte per segment got other replies", expected=framed_replies, actual=got
            )


@requirement("CH-FRAME-18")
@NETWORK_EXAMPLES
@given(script=scripts(LINE_DATA, line_mode=True), data=st.data())
def test_line_replies_do_not_depend_on_segmentation(
    target: Target, request: pytest.FixtureRequest, script: list[Op], data: st.DataObject
) -> None:
    if not still_judging(request):
        return

    def build(keys: list[bytes]) -> tuple[bytes, bytes, list[int]]:
        return line_exchange(script, keys)

    stream, expected, special = build(new_keys())
    cuts = data.draw(cut_points(len(stream), special), label="cuts")
    with target.connect("line requests cut into segments") as c:
        got = exchange_in_pieces(c, stream, cuts, len(expected))
    judge_segmentation(
        target, c, request, got=got, expected=expected, build=build, cuts=cuts, what="a line-mode request stream"
    )


@requirement("CH-FRAME-18")
@NETWORK_EXAMPLES
@given(script=scripts(FRAME_DATA, line_mode=False), switch=st.sampled_from([b"\r\n", b"\n"]), data=st.data())
def test_framed_replies_do_not_depend_on_segmentation(
    target: Target, request: pytest.FixtureRequest, script: list[Op], switch: bytes, data: st.DataObject
) -> None:
    if not target.declared.has("framed"):
        return  # the line-mode half of CH-FRAME-18 is judged by the check above
    if not still_judging(request):
        return

    def build(keys: list[bytes]) -> tuple[bytes, bytes, list[int]]:
        return framed_exchange(script, keys, switch)

    stream, expected, special = build(new_keys())
    cuts = data.draw(cut_points(len(stream), special), label="cuts")
    with target.connect("FRAMED and frames cut into segments") as c:
        got = exchange_in_pieces(c, stream, cuts, len(expected))
    judge_segmentation(
        target,
        c,
        request,
        got=got,
        expected=expected,
        build=build,
        cuts=cuts,
        what="FRAMED and a framed request stream",
    )


@requirement("CH-FRAME-19")
def test_after_a_half_close_complete_lines_are_answered(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.ask(b"SET " + key + b" v", b"+OK")
        # Requests waiting behind a SLEEP are the subject here, so they go in one send.
        c.send(b"SLEEP 300\r\nGET " + key + b"\r\nPING\n")
        c.quiet_for(0.1)  # shut down while the SLEEP runs, with requests waiting behind it
        c.shutdown_write()
        c.expect_lines([b"+OK\r\n", b"$v\r\n", b"+PONG\r\n"])
        c.expect_end(why="after the last reply the server closes (all input was read, so with a FIN)")


@requirement("CH-FRAME-19")
def test_after_a_half_close_complete_frames_are_answered(target: Target) -> None:
    if not target.declared.has("framed"):
        return  # the line-mode half of CH-FRAME-19 is judged by the check above
    key = fresh_key()
    with target.connect() as c:
        c.switch_to_framed()
        c.ask(b"SET " + key + b" v\n", b"+OK")
        c.send(frame(b"SLEEP 300") + frame(b"GET " + key) + frame(b"PING"))
        c.shutdown_write()
        c.expect_bytes(frame(b"+OK") + frame(b"$v\n") + frame(b"+PONG"), "every reply", timeout=REPLY_TIMEOUT)
        c.expect_end(why="after the last reply the server closes (all input was read, so with a FIN)")


@requirement("CH-FRAME-20")
def test_after_a_half_close_a_partial_line_is_dropped(target: Target) -> None:
    for tail in (b"SET {key} partial", b"ECHO partial\r", b"S"):
        key = fresh_key()
        with target.connect(f"a trailing {tail!r}") as c:
            c.ask(b"PING", b"+PONG", why="a complete request before the partial one")
            c.send(tail.replace(b"{key}", key))
            c.shutdown_write()
            c.expect_end(why="a partial line before EOF gets no reply, not even an error")
        if b"{key}" in tail:
            with target.connect("checking the store") as check:
                check.ask(b"GET " + key, b"_", why="the partial SET must not be executed")


@requirement("CH-FRAME-20")
def test_after_a_half_close_a_partial_frame_is_dropped(target: Target) -> None:
    if not target.declared.has("framed"):
        return  # the line-mode half of CH-FRAME-20 is judged by the check above
    key = fresh_key()
    for label, tail in (
        ("a frame missing its last byte", frame(b"SET " + key + b" v")[:-1]),
        ("half a header", b"\x00\x00"),
        ("a header and part of its payload", b"\x00\x00\x00\x0aPIN"),
    ):
        with target.connect(f"a trailing partial frame: {label}") as c:
            c.switch_to_framed()
            c.ask(b"PING", b"+PONG", why="a complete frame before the partial one")
            c.send(tail)
            c.shutdown_write()
            c.expect_end(why=f"{label} before EOF gets no reply, not even an error")
    with target.connect("checking the store") as check:
        check.ask(b"GET " + key, b"_", why="the partial SET frame must not be executed")
