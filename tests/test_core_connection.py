"""CloudHash/1 connection lifecycle in the sans-IO core: timers, urgent data, half-close, shutdown.

Time is passed in explicitly (seconds as floats); nothing here sleeps. The
connection is accepted at T0, with an idle timeout of IDLE seconds unless a test
says otherwise.
"""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_servers.core import Close, DictStore, Send, ServerConnection, ServerInfo
from reference_servers.core.connection import Event

T0 = 100.0
IDLE_MS = 1000
IDLE = IDLE_MS / 1000


# ---- helpers -----------------------------------------------------------------


def make_info(**overrides: object) -> ServerInfo:
    fields: dict[str, object] = {
        "arch": "evented",
        "concurrency": 8,
        "max_connections": 8,
        "overflow": "busy",
        "idle_timeout_ms": IDLE_MS,
        "features": frozenset({"framed", "urgent"}),
    }
    fields.update(overrides)
    return ServerInfo(**fields)  # type: ignore[arg-type]


def connect(store: DictStore | None = None, now: float = T0, **info: object) -> ServerConnection:
    return ServerConnection(make_info(**info), DictStore() if store is None else store, now)


def pull(conn: ServerConnection, now: float) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event(now)) is not None:
        events.append(event)
    return events


def feed(conn: ServerConnection, data: bytes, now: float) -> list[Event]:
    conn.receive_data(data)
    return pull(conn, now)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def is_error_line(data: bytes, code: str) -> bool:
    return re.fullmatch(rb"-ERR " + code.encode() + rb"(?: [^\n]*)?\r\n", data) is not None


def is_error_frame(data: bytes, code: str) -> bool:
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != len(data) - 4:
        return False
    return re.fullmatch(rb"-ERR " + code.encode() + rb"(?: .*)?", data[4:], re.DOTALL) is not None


def assert_error_send(event: Event, code: str, *, final: bool, framed: bool = False) -> None:
    kind = "frame" if framed else "line"
    assert isinstance(event, Send), f"expected a -ERR {code} {kind}, got {event!r}"
    check = is_error_frame if framed else is_error_line
    assert check(event.data, code), f"expected a -ERR {code} {kind}, got {event.data!r}"
    assert event.final is final, f"expected -ERR {code} with final={final}, got final={event.final}"


def assert_final_error_then_close(events: list[Event], code: str, *, framed: bool = False) -> None:
    assert len(events) == 2, f"expected a final -ERR {code} then Close, got {events!r}"
    assert_error_send(events[0], code, final=True, framed=framed)
    assert isinstance(events[1], Close), f"expected Close after -ERR {code}, got {events[1]!r}"


def assert_closed_for_good(conn: ServerConnection, now: float) -> None:
    conn.receive_data(b"PING\r\n")
    assert pull(conn, now) == [], "expected no event after the close"
    assert conn.finished, "expected the connection to report finished"
    assert conn.deadline() is None, f"expected no deadline after the close, got {conn.deadline()}"


# ---- idle timeout ------------------------------------------------------------


def test_idle_timer_starts_at_accept() -> None:
    conn = connect()
    assert conn.idle_deadline() == T0 + IDLE, f"expected the idle deadline at T0+{IDLE}, got {conn.idle_deadline()}"
    assert conn.deadline() == T0 + IDLE, f"expected deadline() to be the idle deadline, got {conn.deadline()}"


def test_idle_timeout_fires_at_exactly_idle_timeout_and_not_before() -> None:
    conn = connect()
    assert pull(conn, T0 + IDLE - 0.001) == [], "expected no TIMEOUT 1 ms before idle_timeout"
    events = pull(conn, T0 + IDLE)
    assert_final_error_then_close(events, "TIMEOUT")
    assert_closed_for_good(conn, T0 + IDLE)


def test_empty_lines_do_not_reset_the_idle_timer() -> None:
    conn = connect()
    assert feed(conn, b"\r\n\n", T0 + 0.5) == [], "expected no reply to empty lines"
    assert feed(conn, b"\n", T0 + 0.9) == []
    assert conn.idle_deadline() == T0 + IDLE, f"expected the deadline unmoved, got {conn.idle_deadline()}"
    assert_final_error_then_close(pull(conn, T0 + IDLE), "TIMEOUT")


def test_partial_bytes_do_not_reset_the_idle_timer() -> None:
    conn = connect()
    assert feed(conn, b"PI", T0 + 0.5) == []
    assert feed(conn, b"N", T0 + 0.9) == []
    assert conn.idle_deadline() == T0 + IDLE, f"expected the deadline unmoved, got {conn.idle_deadline()}"
    assert_final_error_then_close(pull(conn, T0 + IDLE), "TIMEOUT")


def test_a_reply_resets_the_idle_timer() -> None:
    conn = connect()
    assert feed(conn, b"PING\r\n", T0 + 0.5) == [Send(b"+PONG\r\n")]
    assert conn.idle_deadline() == T0 + 0.5 + IDLE, f"expected the deadline at reply+{IDLE}, got {conn.deadline()}"
    assert pull(conn, T0 + IDLE) == [], "expected no TIMEOUT at the old deadline"
    assert pull(conn, T0 + 0.5 + IDLE - 0.001) == [], "expected no TIMEOUT before reply+idle_timeout"
    assert_final_error_then_close(pull(conn, T0 + 0.5 + IDLE), "TIMEOUT")


def test_an_error_reply_resets_the_idle_timer_too() -> None:
    conn = connect()
    events = feed(conn, b"NOPE\r\n", T0 + 0.5)
    assert len(events) == 1 and isinstance(events[0], Send) and is_error_line(events[0].data, "UNKNOWN"), events
    assert pull(conn, T0 + IDLE) == [], "expected the UNKNOWN reply to have reset the timer"


def test_sleep_pauses_the_idle_timer() -> None:
    conn = connect()
    assert feed(conn, b"SLEEP 5000\r\n", T0 + 0.5) == []
    assert conn.idle_deadline() is None, f"expected the idle timer paused during SLEEP, got {conn.idle_deadline()}"
    assert conn.deadline() == T0 + 5.5, f"expected the next deadline to be the SLEEP's end, got {conn.deadline()}"
    assert pull(conn, T0 + 3.0) == [], "expected no TIMEOUT while a SLEEP runs"
    assert pull(conn, T0 + 5.5) == [Send(b"+OK\r\n")], "expected +OK at the SLEEP's end"
    assert pull(conn, T0 + 5.5 + IDLE - 0.001) == [], "expected the timer to restart at the +OK"
    assert_final_error_then_close(pull(conn, T0 + 5.5 + IDLE), "TIMEOUT")


def test_requests_waiting_behind_a_sleep_are_not_timed_out() -> None:
    conn = connect()
    assert feed(conn, b"SLEEP 3000\r\nPING\r\n", T0) == []
    events = pull(conn, T0 + 3.0)
    assert events == [Send(b"+OK\r\n"), Send(b"+PONG\r\n")], f"expected +OK then +PONG, got {events!r}"


def test_idle_timeout_zero_disables_the_timer() -> None:
    conn = connect(idle_timeout_ms=0)
    assert conn.idle_deadline() is None, f"expected no idle deadline, got {conn.idle_deadline()}"
    assert conn.deadline() is None, f"expected no deadline, got {conn.deadline()}"
    assert pull(conn, T0 + 10**9) == [], "expected no TIMEOUT ever"
    assert feed(conn, b"PING\r\n", T0 + 10**9) == [Send(b"+PONG\r\n")], "expected the connection still usable"


def test_idle_timeout_in_framed_mode_is_a_frame() -> None:
    conn = connect()
    assert feed(conn, b"FRAMED\r\n", T0 + 0.25) == [Send(b"+OK\r\n")]
    assert pull(conn, T0 + 0.25 + IDLE - 0.001) == []
    assert_final_error_then_close(pull(conn, T0 + 0.25 + IDLE), "TIMEOUT", framed=True)


def test_idle_timeout_with_a_partial_frame_pending() -> None:
    conn = connect()
    feed(conn, b"FRAMED\r\n", T0)
    assert feed(conn, frame(b"PING")[:6], T0 + 0.5) == []
    assert_final_error_then_close(pull(conn, T0 + IDLE), "TIMEOUT", framed=True)


def test_complete_request_is_answered_even_if_asked_late() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\n")
    events = pull(conn, T0 + 0.999)
    assert events == [Send(b"+PONG\r\n")], f"expected +PONG, got {events!r}"


# ---- SLEEP timing ------------------------------------------------------------


def test_sleep_replies_no_earlier_than_its_end_and_at_it() -> None:
    conn = connect()
    assert feed(conn, b"SLEEP 250\r\n", T0) == [], "expected no reply when the SLEEP starts"
    assert not conn.wants_input, "expected the connection not to want input during SLEEP"
    assert conn.deadline() == T0 + 0.25, f"expected the deadline at T0+0.25, got {conn.deadline()}"
    assert pull(conn, T0 + 0.249) == [], "expected no reply 1 ms early"
    assert pull(conn, T0 + 0.25) == [Send(b"+OK\r\n")], "expected +OK at T0+0.25"
    assert conn.wants_input, "expected the connection to want input again"


def test_pipelined_sleeps_run_one_after_another() -> None:
    conn = connect()
    assert feed(conn, b"SLEEP 100\r\nSLEEP 200\r\nPING\r\n", T0) == []
    assert pull(conn, T0 + 0.1) == [Send(b"+OK\r\n")], "expected the first +OK at T0+0.1"
    assert conn.deadline() == T0 + 0.1 + 0.2, f"expected the second SLEEP to end at T0+0.3, got {conn.deadline()}"
    assert pull(conn, T0 + 0.29) == []
    assert pull(conn, T0 + 0.1 + 0.2) == [Send(b"+OK\r\n"), Send(b"+PONG\r\n")]


# ---- urgent data -------------------------------------------------------------


def test_urgent_during_sleep_aborts_it_and_pipelined_requests_follow() -> None:
    conn = connect(idle_timeout_ms=60_000)
    assert feed(conn, b"SLEEP 10000\r\nPING\r\nECHO after\r\n", T0) == []
    conn.receive_urgent(T0 + 0.5)
    events = pull(conn, T0 + 0.5)
    assert len(events) == 3, f"expected ABORTED, +PONG, $after, got {events!r}"
    assert_error_send(events[0], "ABORTED", final=False)
    assert events[1:] == [Send(b"+PONG\r\n"), Send(b"$after\r\n")], f"expected the pipeline to go on, got {events!r}"
    assert pull(conn, T0 + 10.0) == [], "expected no late +OK from the aborted SLEEP"


def test_aborted_reply_resets_the_idle_timer() -> None:
    conn = connect()
    feed(conn, b"SLEEP 10000\r\n", T0)
    conn.receive_urgent(T0 + 2.0)
    assert_error_send(conn.next_event(T0 + 2.0) or Close(), "ABORTED", final=False)
    assert conn.idle_deadline() == T0 + 2.0 + IDLE, f"expected the timer restarted, got {conn.idle_deadline()}"


def test_urgent_abort_in_framed_mode_is_a_frame() -> None:
    conn = connect()
    feed(conn, b"FRAMED\r\n" + frame(b"SLEEP 60000") + frame(b"PING"), T0)
    conn.receive_urgent(T0 + 1.0)
    events = pull(conn, T0 + 1.0)
    assert len(events) == 2, f"expected ABORTED and +PONG frames, got {events!r}"
    assert_error_send(events[0], "ABORTED", final=False, framed=True)
    assert events[1] == Send(frame(b"+PONG")), f"expected a +PONG frame, got {events[1]!r}"


def test_urgent_with_no_sleep_is_ignored_and_does_not_arm_a_later_sleep() -> None:
    conn = connect()
    conn.receive_urgent(T0 + 0.1)
    assert pull(conn, T0 + 0.1) == [], "expected no reply to an urgent byte alone"
    assert conn.idle_deadline() == T0 + IDLE, "expected the urgent byte not to reset the idle timer"
    assert feed(conn, b"SLEEP 200\r\n", T0 + 0.2) == [], "expected the SLEEP to start, not be aborted"
    assert pull(conn, T0 + 0.399) == [], "expected no reply before the SLEEP ends"
    assert pull(conn, T0 + 0.2 + 0.2) == [Send(b"+OK\r\n")], "expected the SLEEP to finish normally with +OK"


def test_urgent_after_a_sleep_was_aborted_is_ignored() -> None:
    conn = connect()
    feed(conn, b"SLEEP 1000\r\n", T0)
    conn.receive_urgent(T0 + 0.2)
    assert len(pull(conn, T0 + 0.2)) == 1
    conn.receive_urgent(T0 + 0.3)
    assert pull(conn, T0 + 0.3) == [], "expected a second urgent byte with no SLEEP to do nothing"


def test_urgent_byte_after_the_sleep_has_ended_is_ignored() -> None:
    # SLEEP 100 from T0 has run its course at T0+0.2, so no SLEEP is in progress
    # when the urgent byte arrives; the SLEEP's answer is +OK.
    conn = connect()
    feed(conn, b"SLEEP 100\r\n", T0)
    conn.receive_urgent(T0 + 0.2)
    events = pull(conn, T0 + 0.2)
    assert events == [Send(b"+OK\r\n")], f"expected +OK for a SLEEP that had ended, got {events!r}"


# ---- half-close --------------------------------------------------------------


def test_half_close_answers_every_complete_request_then_closes() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\nECHO a\nSET k v\r\nGET k\r\nGE")
    conn.receive_data(b"")
    assert not conn.wants_input, "expected no more input wanted after EOF"
    events = pull(conn, T0)
    expected = [Send(b"+PONG\r\n"), Send(b"$a\r\n"), Send(b"+OK\r\n"), Send(b"$v\r\n"), Close()]
    assert events == expected, f"expected every complete request answered, the partial dropped, Close: {events!r}"
    assert_closed_for_good(conn, T0)


def test_half_close_with_nothing_pending_just_closes() -> None:
    conn = connect()
    events = feed(conn, b"", T0 + 0.1)
    assert events == [Close()], f"expected only Close (no message), got {events!r}"


def test_half_close_waits_for_a_pipelined_sleep() -> None:
    conn = connect()
    conn.receive_data(b"SLEEP 300\r\nPING\r\n")
    conn.receive_data(b"")
    assert pull(conn, T0) == [], "expected nothing until the SLEEP ends"
    events = pull(conn, T0 + 0.3)
    assert events == [Send(b"+OK\r\n"), Send(b"+PONG\r\n"), Close()], f"got {events!r}"


def test_half_close_in_framed_mode_drops_a_partial_frame() -> None:
    conn = connect()
    conn.receive_data(b"FRAMED\r\n" + frame(b"ECHO \n") + frame(b"PING")[:5])
    conn.receive_data(b"")
    events = pull(conn, T0)
    assert events == [Send(b"+OK\r\n"), Send(frame(b"$\n")), Close()], f"got {events!r}"


def test_half_close_after_empty_lines_sends_nothing() -> None:
    conn = connect()
    conn.receive_data(b"\r\n\n")
    conn.receive_data(b"")
    assert pull(conn, T0) == [Close()], "expected empty lines to get no reply before the close"


# ---- shutdown ----------------------------------------------------------------


def test_shutdown_of_an_idle_connection_sends_one_shutdown_then_closes() -> None:
    conn = connect()
    feed(conn, b"PING\r\n", T0)
    conn.begin_shutdown()
    events = pull(conn, T0 + 0.1)
    assert_final_error_then_close(events, "SHUTDOWN")
    assert_closed_for_good(conn, T0 + 0.1)


def test_shutdown_of_a_connection_holding_a_partial_request_sends_shutdown() -> None:
    conn = connect()
    feed(conn, b"GET ke", T0)
    conn.begin_shutdown()
    assert_final_error_then_close(pull(conn, T0), "SHUTDOWN")


def test_shutdown_during_sleep_answers_the_sleep_then_shutdown() -> None:
    conn = connect()
    feed(conn, b"SLEEP 1000\r\n", T0)
    conn.begin_shutdown()
    assert pull(conn, T0 + 0.5) == [], "expected the SLEEP to keep running"
    events = pull(conn, T0 + 1.0)
    assert len(events) == 3, f"expected +OK, final SHUTDOWN, Close, got {events!r}"
    assert events[0] == Send(b"+OK\r\n"), f"expected the SLEEP's +OK first, got {events[0]!r}"
    assert_final_error_then_close(events[1:], "SHUTDOWN")


def test_shutdown_keeps_processing_requests_already_received() -> None:
    conn = connect()
    feed(conn, b"SLEEP 1000\r\nECHO one\r\nECHO two\r\n", T0)
    conn.begin_shutdown()
    events = pull(conn, T0 + 1.0)
    assert events[:3] == [Send(b"+OK\r\n"), Send(b"$one\r\n"), Send(b"$two\r\n")], f"got {events!r}"
    assert_final_error_then_close(events[3:], "SHUTDOWN")


def test_force_shutdown_answers_every_unanswered_request_with_its_own_shutdown() -> None:
    store = DictStore()
    conn = connect(store)
    assert feed(conn, b"SLEEP 5000\r\nSET x y\r\n\r\nPING\r\n", T0) == []
    conn.force_shutdown()
    events = pull(conn, T0 + 4.0)
    assert len(events) == 4, f"expected three SHUTDOWN replies then Close, got {events!r}"
    assert_error_send(events[0], "SHUTDOWN", final=False)
    assert_error_send(events[1], "SHUTDOWN", final=False)
    assert_error_send(events[2], "SHUTDOWN", final=True)
    assert isinstance(events[3], Close), f"expected Close last, got {events[3]!r}"
    assert store.get(b"x") is None, "expected the SET answered with SHUTDOWN not to run"
    assert_closed_for_good(conn, T0 + 4.0)


def test_force_shutdown_of_an_idle_connection_sends_one_shutdown() -> None:
    conn = connect()
    conn.force_shutdown()
    assert_final_error_then_close(pull(conn, T0), "SHUTDOWN")


def test_shutdown_in_framed_mode_is_a_frame() -> None:
    conn = connect()
    feed(conn, b"FRAMED\r\n", T0)
    conn.begin_shutdown()
    assert_final_error_then_close(pull(conn, T0), "SHUTDOWN", framed=True)


def test_force_shutdown_in_framed_mode_counts_frames() -> None:
    conn = connect()
    feed(conn, b"FRAMED\r\n" + frame(b"SLEEP 9000") + frame(b"") + frame(b"PING"), T0)
    conn.force_shutdown()
    events = pull(conn, T0 + 4.0)
    assert len(events) == 4, f"expected three SHUTDOWN frames then Close, got {events!r}"
    for event, final in zip(events[:3], (False, False, True), strict=True):
        assert_error_send(event, "SHUTDOWN", final=final, framed=True)
    assert isinstance(events[3], Close)


# ---- property: the idle deadline is the last reply plus idle_timeout ---------


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=IDLE_MS - 1), min_size=1, max_size=12),
    empties=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_timeout_comes_idle_timeout_after_the_last_reply(gaps: list[int], empties: list[bool]) -> None:
    conn = connect()
    now_ms = 0
    last_reply_ms = 0
    for gap, empty in zip(gaps, empties, strict=False):
        now_ms += gap
        now = T0 + now_ms / 1000
        if empty and now_ms - last_reply_ms < IDLE_MS:
            assert feed(conn, b"\r\n", now) == [], "expected no reply to an empty line"
            continue
        if now_ms - last_reply_ms >= IDLE_MS:
            break
        assert feed(conn, b"PING\r\n", now) == [Send(b"+PONG\r\n")]
        last_reply_ms = now_ms
    expected_deadline = T0 + last_reply_ms / 1000 + IDLE
    assert conn.idle_deadline() == pytest.approx(expected_deadline), (
        f"expected the idle deadline at last reply + {IDLE}s = {expected_deadline}, got {conn.idle_deadline()}"
    )
    assert pull(conn, expected_deadline - 0.001) == [], "expected no TIMEOUT before the deadline"
    assert_final_error_then_close(pull(conn, expected_deadline + 1e-9), "TIMEOUT")


# ---- replies held back for a slow reader (CH-ROBUST-1) ------------------------------------


def test_each_event_runs_at_most_one_request_so_a_caller_can_stop_between_them() -> None:
    """The caller bounds its output by not asking for the next event: requests it
    has not pulled are not executed (the INCR after the first GET has not run)."""
    store = DictStore()
    conn = connect(store)
    conn.receive_data(b"SET big " + b"v" * 100 + b"\r\nGET big\r\nINCR n\r\nGET big\r\n")
    assert conn.next_event(T0) == Send(b"+OK\r\n")
    assert conn.next_event(T0) == Send(b"$" + b"v" * 100 + b"\r\n")
    assert store.get(b"n") is None, "expected the INCR behind the GET not to run before its event is pulled"
    assert pull(conn, T0) == [Send(b":1\r\n"), Send(b"$" + b"v" * 100 + b"\r\n")]


def test_replies_sent_late_restart_the_idle_timer_when_they_leave() -> None:
    """A reply that waited for a slow reader was sent when it left the server,
    not when it was made: the idle time counts from then (section 12)."""
    conn = connect()
    assert feed(conn, b"PING\r\n", T0) == [Send(b"+PONG\r\n")]
    left = T0 + 0.9 * IDLE
    conn.replies_sent(left)
    assert conn.idle_deadline() == pytest.approx(left + IDLE), (
        f"expected the idle deadline {IDLE} s after the reply left, got {conn.idle_deadline()}"
    )
    assert pull(conn, T0 + IDLE + 0.01) == [], "expected no TIMEOUT idle_timeout after the reply was made"
    assert_final_error_then_close(pull(conn, left + IDLE + 1e-9), "TIMEOUT")


def test_replies_sent_after_the_close_changes_nothing() -> None:
    conn = connect()
    events = feed(conn, b"QUIT\r\n", T0)
    assert events[0] == Send(b"+BYE\r\n", final=True) and isinstance(events[1], Close), events
    conn.replies_sent(T0 + 5)
    assert conn.idle_deadline() is None, "expected no idle timer once the connection is finishing"


def test_info_declares_the_output_mark() -> None:
    conn = connect(max_output=65536)
    (reply,) = feed(conn, b"INFO\r\n", T0)
    assert isinstance(reply, Send) and b" max_output=65536 " in reply.data, reply


def test_an_output_mark_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="max_output"):
        make_info(max_output=0)
