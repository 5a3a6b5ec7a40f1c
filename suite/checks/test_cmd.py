"""CH-CMD: the commands and their replies (PROTOCOL.md section 6).

Every check asks one request at a time (CH-CMD-14's requests after QUIT
excepted: they are its subject), so that a server that cannot pipeline
fails CH-FRAME-17 and not these."""

from __future__ import annotations

from suite.api import Probe, fresh_key, not_applicable, requirement
from suite.checks.protocol import INT64_MAX, INT64_MIN
from suite.targets.base import Target


def ask_all(c: Probe, exchanges: list[tuple[bytes, bytes]], why: str = "") -> None:
    """Each (request, reply) in turn, every reply read before the next request."""
    for request, reply in exchanges:
        c.ask(request, reply, why)


INFO_KEYS = ("proto", "arch", "concurrency", "max_connections", "overflow", "idle_timeout_ms", "max_line", "max_frame")


@requirement("CH-CMD-1")
def test_command_names_match_in_any_case(target: Target) -> None:
    with target.connect() as c:
        ask_all(c, [(name, b"+PONG") for name in (b"ping", b"PiNg", b"pInG", b"PING")])


@requirement("CH-CMD-1", "CH-ERR-2")
def test_only_ascii_letters_fold(target: Target) -> None:
    with target.connect() as c:
        # U+0130 and U+0131 (dotted capital and dotless small i) fold to ASCII
        # letters in Unicode (Python's "p\u0131ng".upper() is "PING"); bytes must not.
        for name in ("P\u0130NG", "p\u0131ng"):
            c.ask_error(name.encode(), "UNKNOWN", why=f"a non-ASCII byte in a command name ({name!a})")
        c.ask(b"PING", b"+PONG")


@requirement("CH-CMD-2")
def test_ping_answers_pong(target: Target) -> None:
    with target.connect() as c:
        c.ask(b"PING", b"+PONG")


@requirement("CH-CMD-3")
def test_echo_returns_the_argument_part_verbatim(target: Target) -> None:
    with target.connect() as c:
        for data in (b"hello", b"", b" a b ", b"\x01\x7f\xff"):
            c.ask(b"ECHO " + data, b"$" + data)


@requirement("CH-CMD-4", "CH-CMD-5")
def test_set_stores_the_raw_rest_and_get_returns_it(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        # The value starts right after the one SP that ends the key: here, with a SP.
        ask_all(c, [(b"SET " + key + b"  two  spaces ", b"+OK"), (b"GET " + key, b"$ two  spaces ")])


@requirement("CH-CMD-4")
def test_set_replaces_the_previous_value(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        ask_all(
            c, [(b"SET " + key + b" first", b"+OK"), (b"SET " + key + b" second", b"+OK"), (b"GET " + key, b"$second")]
        )


@requirement("CH-CMD-5")
def test_get_of_a_missing_key_is_nil_and_an_empty_value_is_not(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        ask_all(c, [(b"GET " + key, b"_"), (b"SET " + key + b" ", b"+OK"), (b"GET " + key, b"$")])


@requirement("CH-CMD-6")
def test_del_reports_whether_the_key_existed(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        ask_all(
            c,
            [
                (b"DEL " + key, b":0"),
                (b"SET " + key + b" v", b"+OK"),
                (b"DEL " + key, b":1"),
                (b"DEL " + key, b":0"),
                (b"GET " + key, b"_"),
            ],
        )


@requirement("CH-CMD-7")
def test_incr_counts_from_zero_and_stores_canonical_decimal(target: Target) -> None:
    fresh, padded, negative = fresh_key(), fresh_key(), fresh_key()
    with target.connect() as c:
        ask_all(c, [(b"INCR " + fresh, b":1"), (b"INCR " + fresh, b":2")])
        ask_all(c, [(b"SET " + padded + b" 007", b"+OK"), (b"INCR " + padded, b":8"), (b"GET " + padded, b"$8")])
        ask_all(c, [(b"SET " + negative + b" -1", b"+OK"), (b"INCR " + negative, b":0"), (b"GET " + negative, b"$0")])
        ask_all(c, [(b"SET " + negative + b" -0", b"+OK"), (b"INCR " + negative, b":1")])


@requirement("CH-CMD-8")
def test_incr_on_a_non_integer_gets_type_and_changes_nothing(target: Target) -> None:
    with target.connect() as c:
        for value in (b"", b"+1", b" 1", b"1 ", b"1.0", b"abc", b"9223372036854775808", b"-9223372036854775809"):
            key = fresh_key()
            c.ask(b"SET " + key + b" " + value, b"+OK")
            c.ask_error(b"INCR " + key, "TYPE", why=f"INCR of the stored value {value!r}")
            c.ask(b"GET " + key, b"$" + value, why="the value stays unchanged")


@requirement("CH-CMD-8")
def test_incr_accepts_leading_zeros_and_the_64_bit_edges(target: Target) -> None:
    with target.connect() as c:
        for value, result in ((b"0" * 40 + b"41", b"42"), (b"%d" % INT64_MIN, b"%d" % (INT64_MIN + 1))):
            key = fresh_key()
            ask_all(c, [(b"SET " + key + b" " + value, b"+OK"), (b"INCR " + key, b":" + result)])


@requirement("CH-CMD-9")
def test_incr_past_the_64_bit_range_gets_range_and_changes_nothing(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        ask_all(c, [(b"SET " + key + b" %d" % (INT64_MAX - 1), b"+OK"), (b"INCR " + key, b":%d" % INT64_MAX)])
        c.ask_error(b"INCR " + key, "RANGE", why=f"INCR of {INT64_MAX}")
        c.ask(b"GET " + key, b"$%d" % INT64_MAX, why="the value stays unchanged")


@requirement("CH-CMD-10")
def test_sleep_answers_ok_no_earlier_than_asked(target: Target) -> None:
    with target.connect() as c:
        c.send(b"SLEEP 0\r\n")
        c.expect_line(b"+OK\r\n", timeout=2)
        c.send(b"SLEEP 300\r\n")
        c.expect_silence(0.29, why="SLEEP 300 must not answer before 300 ms")
        c.expect_line(b"+OK\r\n", timeout=3)
        c.send(b"SLEEP 0005\r\n")
        c.expect_line(b"+OK\r\n", timeout=2)


@requirement("CH-CMD-11")
def test_sleep_with_a_non_digit_argument_gets_syntax(target: Target) -> None:
    with target.connect() as c:
        for argument in (b"-1", b"1.5", b"1e3", b"+5", b"abc", b"5ms"):
            c.ask_error(b"SLEEP " + argument, "SYNTAX", why=f"SLEEP {argument.decode()}", timeout=2)


@requirement("CH-CMD-12")
def test_sleep_above_60000_gets_range_at_once(target: Target) -> None:
    with target.connect() as c:
        for argument in (b"60001", b"99999", b"1" + b"0" * 99):
            c.ask_error(b"SLEEP " + argument, "RANGE", why=f"SLEEP {argument[:20].decode()}", timeout=1)


@requirement("CH-CMD-13")
def test_info_declares_every_required_key(target: Target) -> None:
    with target.connect() as c:
        c.send(b"INFO\r\n")
        line = c.expect_prefix(b"$", why="INFO answers one value")
    value = line[1:-2].decode("ascii", "replace")
    pairs = [token.partition("=") for token in value.split(" ")]
    keys = [k for k, sep, _ in pairs if sep]
    problems = []
    if any(not sep for _, sep, _ in pairs):
        problems.append("a token without '=' (pairs are separated by single spaces)")
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        problems.append(f"keys given twice: {duplicates}")
    found = {k: v for k, _, v in pairs}
    missing = [k for k in INFO_KEYS if k not in found] + ([] if "features" in found else ["features"])
    if missing:
        problems.append(f"missing keys: {missing}")
    if found.get("proto") not in (None, "cloudhash/1"):
        problems.append(f"proto={found.get('proto')}, expected cloudhash/1")
    for key in ("concurrency", "max_connections", "max_line", "max_frame"):
        if key in found and not (found[key].isdigit() and int(found[key]) > 0):
            problems.append(f"{key}={found[key]} is not a positive integer")
    if "idle_timeout_ms" in found and not found["idle_timeout_ms"].isdigit():
        problems.append(f"idle_timeout_ms={found['idle_timeout_ms']} is not a non-negative integer")
    if found.get("overflow") not in (None, "busy", "queue"):
        problems.append(f"overflow={found['overflow']}, expected busy or queue")
    features = [f for f in found.get("features", "").split(",") if f]
    if any(f not in ("framed", "tls", "starttls", "urgent") for f in features) or len(set(features)) != len(features):
        problems.append(f"features={found.get('features')} is not a list out of framed,tls,starttls,urgent")
    if problems:
        raise c.violation("INFO is not a well-formed declaration: " + "; ".join(problems), actual=line)


@requirement("CH-CMD-14")
def test_quit_answers_bye_and_leaves_pipelined_requests_unanswered(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(b"QUIT\r\nSET " + key + b" after-quit\r\nPING\r\n")
        c.expect_line(b"+BYE\r\n")
        c.expect_end(why="after +BYE the server closes and answers nothing more")
    with target.connect() as check:
        check.ask(b"GET " + key, b"_", why="a SET pipelined after QUIT must not run")


@requirement("CH-CMD-15")
def test_framed_is_an_error_when_framed_is_not_declared(target: Target) -> None:
    if target.declared.has("framed"):
        not_applicable("the target declares framed")
    with target.connect() as c:
        c.request(b"FRAMED")
        c.expect_prefix(b"-ERR ", why="FRAMED on a server without framed mode")
        c.ask(b"PING", b"+PONG", why="the connection stays in line mode")


@requirement("CH-CMD-16")
def test_a_value_with_lf_gets_state_in_line_mode_and_comes_back_framed(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.switch_to_framed()
        c.ask(b"SET " + key + b" two\nlines", b"+OK")
    with target.connect() as line_mode:
        line_mode.ask_error(b"GET " + key, "STATE", why="a value containing LF cannot be sent as a line")
        line_mode.ask(b"PING", b"+PONG", why="the connection stays usable")
        line_mode.switch_to_framed()
        line_mode.ask(b"GET " + key, b"$two\nlines", why="in framed mode the value comes back unchanged")
