"""CH-CMD: the commands and their replies (PROTOCOL.md section 6)."""

from __future__ import annotations

from suite.api import fresh_key, not_applicable, requirement
from suite.targets.base import Target

INFO_KEYS = ("proto", "arch", "concurrency", "max_connections", "overflow", "idle_timeout_ms", "max_line", "max_frame")


@requirement("CH-CMD-1")
def test_command_names_match_in_any_case(target: Target) -> None:
    with target.connect() as c:
        c.send(b"ping\r\nPiNg\r\npInG\r\nPING\r\n")
        c.expect_lines([b"+PONG\r\n"] * 4)


@requirement("CH-CMD-1", "CH-ERR-2")
def test_only_ascii_letters_fold(target: Target) -> None:
    with target.connect() as c:
        # U+0130 and the Kelvin sign fold to ASCII letters in Unicode; bytes must not.
        c.send("P\u0130NG\r\n".encode() + b"P\xc4\xb0NG\r\nPING\r\n")
        c.expect_error("UNKNOWN", why="a non-ASCII byte in a command name")
        c.expect_error("UNKNOWN", why="a non-ASCII byte in a command name")
        c.expect_line(b"+PONG\r\n")


@requirement("CH-CMD-2")
def test_ping_answers_pong(target: Target) -> None:
    with target.connect() as c:
        c.send(b"PING\r\n")
        c.expect_line(b"+PONG\r\n")


@requirement("CH-CMD-3")
def test_echo_returns_the_argument_part_verbatim(target: Target) -> None:
    with target.connect() as c:
        c.send(b"ECHO hello\r\nECHO \r\nECHO  a b \r\nECHO \x01\x7f\xff\r\n")
        c.expect_lines([b"$hello\r\n", b"$\r\n", b"$ a b \r\n", b"$\x01\x7f\xff\r\n"])


@requirement("CH-CMD-4", "CH-CMD-5")
def test_set_stores_the_raw_rest_and_get_returns_it(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        # The value starts right after the one SP that ends the key: here, with a SP.
        c.send(b"SET " + key + b"  two  spaces \r\nGET " + key + b"\r\n")
        c.expect_lines([b"+OK\r\n", b"$ two  spaces \r\n"])


@requirement("CH-CMD-4")
def test_set_replaces_the_previous_value(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(b"SET " + key + b" first\r\nSET " + key + b" second\r\nGET " + key + b"\r\n")
        c.expect_lines([b"+OK\r\n", b"+OK\r\n", b"$second\r\n"])


@requirement("CH-CMD-5")
def test_get_of_a_missing_key_is_nil_and_an_empty_value_is_not(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(b"GET " + key + b"\r\nSET " + key + b" \r\nGET " + key + b"\r\n")
        c.expect_lines([b"_\r\n", b"+OK\r\n", b"$\r\n"])


@requirement("CH-CMD-6")
def test_del_reports_whether_the_key_existed(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(
            b"DEL " + key + b"\r\nSET " + key + b" v\r\nDEL " + key + b"\r\nDEL " + key + b"\r\nGET " + key + b"\r\n"
        )
        c.expect_lines([b":0\r\n", b"+OK\r\n", b":1\r\n", b":0\r\n", b"_\r\n"])


@requirement("CH-CMD-7")
def test_incr_counts_from_zero_and_stores_canonical_decimal(target: Target) -> None:
    fresh, padded, negative = fresh_key(), fresh_key(), fresh_key()
    with target.connect() as c:
        c.send(b"INCR " + fresh + b"\r\nINCR " + fresh + b"\r\n")
        c.expect_lines([b":1\r\n", b":2\r\n"])
        c.send(b"SET " + padded + b" 007\r\nINCR " + padded + b"\r\nGET " + padded + b"\r\n")
        c.expect_lines([b"+OK\r\n", b":8\r\n", b"$8\r\n"])
        c.send(b"SET " + negative + b" -1\r\nINCR " + negative + b"\r\nGET " + negative + b"\r\n")
        c.expect_lines([b"+OK\r\n", b":0\r\n", b"$0\r\n"])
        c.send(b"SET " + negative + b" -0\r\nINCR " + negative + b"\r\n")
        c.expect_lines([b"+OK\r\n", b":1\r\n"])


@requirement("CH-CMD-8")
def test_incr_on_a_non_integer_gets_type_and_changes_nothing(target: Target) -> None:
    with target.connect() as c:
        for value in (b"", b"+1", b" 1", b"1 ", b"1.0", b"abc", b"9223372036854775808", b"-9223372036854775809"):
            key = fresh_key()
            c.send(b"SET " + key + b" " + value + b"\r\nINCR " + key + b"\r\nGET " + key + b"\r\n")
            c.expect_line(b"+OK\r\n")
            c.expect_error("TYPE", why=f"INCR of the stored value {value!r}")
            c.expect_line(b"$" + value + b"\r\n", why="the value stays unchanged")


@requirement("CH-CMD-8")
def test_incr_accepts_leading_zeros_and_the_64_bit_edges(target: Target) -> None:
    with target.connect() as c:
        for value, result in ((b"0" * 40 + b"41", b"42"), (b"-9223372036854775808", b"-9223372036854775807")):
            key = fresh_key()
            c.send(b"SET " + key + b" " + value + b"\r\nINCR " + key + b"\r\n")
            c.expect_lines([b"+OK\r\n", b":" + result + b"\r\n"])


@requirement("CH-CMD-9")
def test_incr_past_the_64_bit_range_gets_range_and_changes_nothing(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(
            b"SET " + key + b" 9223372036854775806\r\nINCR " + key + b"\r\nINCR " + key + b"\r\nGET " + key + b"\r\n"
        )
        c.expect_lines([b"+OK\r\n", b":9223372036854775807\r\n"])
        c.expect_error("RANGE", why="INCR of 9223372036854775807")
        c.expect_line(b"$9223372036854775807\r\n", why="the value stays unchanged")


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
            c.send(b"SLEEP " + argument + b"\r\n")
            c.expect_error("SYNTAX", why=f"SLEEP {argument.decode()}", timeout=2)


@requirement("CH-CMD-12")
def test_sleep_above_60000_gets_range_at_once(target: Target) -> None:
    with target.connect() as c:
        for argument in (b"60001", b"99999", b"1" + b"0" * 99):
            c.send(b"SLEEP " + argument + b"\r\n")
            c.expect_error("RANGE", why=f"SLEEP {argument[:20].decode()}", timeout=1)


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
        check.send(b"GET " + key + b"\r\n")
        check.expect_line(b"_\r\n", why="a SET pipelined after QUIT must not run")


@requirement("CH-CMD-15")
def test_framed_is_an_error_when_framed_is_not_declared(target: Target) -> None:
    if target.declared.has("framed"):
        not_applicable("the target declares framed")
    with target.connect() as c:
        c.send(b"FRAMED\r\nPING\r\n")
        c.expect_prefix(b"-ERR ", why="FRAMED on a server without framed mode")
        c.expect_line(b"+PONG\r\n", why="the connection stays in line mode")


@requirement("CH-CMD-16")
def test_a_value_with_lf_gets_state_in_line_mode_and_comes_back_framed(target: Target) -> None:
    key = fresh_key()
    with target.connect() as c:
        c.send(b"FRAMED\r\n")
        c.expect_line(b"+OK\r\n")
        c.framed = True
        c.send_frame(b"SET " + key + b" two\nlines")
        c.expect_frame(b"+OK")
    with target.connect() as line_mode:
        line_mode.send(b"GET " + key + b"\r\nPING\r\n")
        line_mode.expect_error("STATE", why="a value containing LF cannot be sent as a line")
        line_mode.expect_line(b"+PONG\r\n", why="the connection stays usable")
        line_mode.send(b"FRAMED\r\n")
        line_mode.expect_line(b"+OK\r\n")
        line_mode.send_frame(b"GET " + key)
        line_mode.expect_frame(b"$two\nlines", why="in framed mode the value comes back unchanged")
