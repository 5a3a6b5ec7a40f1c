"""CH-CLIENT-20 and CH-CLIENT-21: framed mode and urgent data in a client
(PROTOCOL.md section 17)."""

from __future__ import annotations

from suite.api import Unsupported, requirement
from suite.clients.adversary import Session, answer
from suite.clients.under_test import ClientUnderTest, fresh_token

SLEEP_MS = 1500
EARLIEST_URGENT = 0.1  # CH-CLIENT-21: no sooner than 100 ms after the SLEEP
AFTER_THE_REPLY = 3.0  # how long the suite's server watches, after the reply, for the client's close


@requirement("CH-CLIENT-20")
def test_framed_requests_carry_a_big_endian_length(client: ClientUnderTest) -> None:
    token = fresh_token()
    for segment in (None, 1):
        s = client.scenario(
            answer(f"${token}".encode(), segment=segment), cmd=f"ECHO {token}", feature="framed", limit=5.0
        )
        exchange = s.only_exchange()
        if exchange.problems:
            raise s.violation(
                "the client's frame header is not a 4-byte big-endian length", actual=exchange.problems[0]
            )
        if not exchange.framed:
            raise s.violation(
                "the client's framed command never sent FRAMED",
                expected="FRAMED, then frames",
                actual=repr(exchange.requests),
            )
        s.expect_request(f"ECHO {token}".encode())
        s.expect_status(0, "a framed exchange" + (" with the reply frame in one-byte segments" if segment else ""))
        # The last line: whether the +OK to FRAMED was printed too is CH-CLIENT-11's to judge.
        if not s.run.stdout.endswith(f"\n${token}\n".encode()) and s.run.stdout != f"${token}\n".encode():
            raise s.violation("the reply frame, read as a frame", expected=f"${token}\n".encode(), actual=s.run.stdout)


@requirement("CH-CLIENT-21")
def test_one_urgent_byte_at_most_and_only_during_a_sleep(client: ClientUnderTest) -> None:
    def sleeper(session: Session) -> None:
        session.request()
        session.watch_urgent(SLEEP_MS / 1000)
        if session.exchange.urgent_at:
            session.reply(b"-ERR ABORTED sleep aborted")
        else:
            session.reply(b"+OK")
        # Until the client closes: an urgent byte once the reply is out is a breach too.
        session.watch_urgent_until_close(AFTER_THE_REPLY)

    s = client.scenario(sleeper, cmd=f"SLEEP {SLEEP_MS}", feature="urgent", limit=SLEEP_MS / 1000 + 5)
    exchange = s.only_exchange()
    if not exchange.urgent_at:
        raise Unsupported(f"the client sent no urgent byte during a SLEEP of {SLEEP_MS} ms: nothing to judge")
    # Only what the client sent is judged here: the status of the aborted SLEEP is CH-CLIENT-12's.
    status = "" if s.run.status == 1 else f" (its {s.run.outcome()} is CH-CLIENT-12's to judge)"
    replied = exchange.replied_at
    late = [at for at in exchange.urgent_at if replied is not None and at > replied]
    if late and replied is not None:
        raise s.violation(
            "an urgent byte after the SLEEP's reply, when no SLEEP was pending" + status,
            expected="no urgent byte once the reply is out",
            actual=f"{len(late)} urgent byte(s), the first {(late[0] - replied) * 1000:.0f} ms after the reply",
        )
    if len(exchange.urgent_at) > 1:
        raise s.violation(
            "a second urgent byte moves the urgent mark" + status,
            expected="one urgent byte",
            actual=f"{len(exchange.urgent_at)}",
        )
    assert exchange.request_at is not None
    after = exchange.urgent_at[0] - exchange.request_at
    if after < EARLIEST_URGENT:
        raise s.violation(
            "the urgent byte came too soon after the SLEEP",
            expected=f"at least {EARLIEST_URGENT * 1000:g} ms after the SLEEP",
            actual=f"{after * 1000:.0f} ms",
        )
