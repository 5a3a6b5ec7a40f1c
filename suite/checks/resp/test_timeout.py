"""R2-TIMEOUT: Redis's `timeout` (PROTOCOL-RESP2.md, section 6).

Each check starts its own instance with `timeout 1` ({idle}=1) and takes the
bound from what the instance declares (`timeout`, from the template, INFO or
--declare). Redis counts idle time in whole seconds and checks it in its
periodic task, so the window is [timeout, timeout + 2 s]. A lower bound is
measured from a moment known to precede the server's timer start (before
connect, before the request), an upper bound from one known to follow it.
"""

from __future__ import annotations

import time

from suite.api import FreshTarget, Measure, Unsupported, not_applicable, requirement, waits
from suite.probe import Probe
from suite.profiles.dialects import Resp2Dialect
from suite.targets.base import Target
from suite.wire import Ending

# Each check waits out a timer on an instance of its own: a worker runs it beside its next checks.
pytestmark = waits

RESP2 = Resp2Dialect()
IDLE_SECONDS = 1.0  # what the checks ask for with {idle}
LONGEST_TIMEOUT = 5  # seconds; longer declared timeouts would make these checks too slow
SLACK = 2.0  # R2-TIMEOUT-1: no later than timeout + 2 s
MARGIN = 0.25  # scheduling on a loaded 2-core machine
GRANULARITY = 0.02


def _timeout(t: Target) -> float:
    if "timeout" not in t.declared.pairs:
        raise Unsupported(
            "the instance declares no timeout: give the --cmd template {idle} (e.g. --timeout {idle}), "
            "or --declare timeout=N"
        )
    seconds = t.declared.number("timeout")
    if seconds == 0:
        not_applicable(f"the instance started with {{idle}}={IDLE_SECONDS:g} declares timeout=0 (disabled)")
    if seconds > LONGEST_TIMEOUT:
        raise Unsupported(f"the instance declares timeout={seconds}; these checks wait at most {LONGEST_TIMEOUT} s")
    return float(seconds)


def _closed_in_window(c: Probe, lower_ref: float, upper_ref: float, idle: float, since: str) -> float:
    """Wait for the close; it must come in [idle, idle + SLACK] of ``since``, with no bytes before it."""
    ending = c.wire.wait_for_end(upper_ref + idle + SLACK + MARGIN - time.monotonic())
    arrived = time.monotonic()
    if ending is Ending.TIMEOUT:
        raise c.violation(
            f"the connection was still open {arrived - lower_ref:.2f} s after {since}, with timeout {idle:g}",
            expected=f"a close within timeout + {SLACK:g} s ({idle + SLACK:g} s)",
            actual=c.wire.pending() or "still open",
        )
    if c.wire.pending():
        raise c.violation(
            "the server sent bytes when it closed an idle connection",
            expected="a close with nothing before it",
            actual=c.wire.pending(),
        )
    early = arrived - lower_ref
    if early < idle - GRANULARITY:
        raise c.violation(
            f"the connection was closed {early:.3f} s after {since}, before timeout ({idle:g} s) had passed",
            expected=f"nothing for {idle:g} s",
            actual=ending.value,
        )
    return arrived - upper_ref


@requirement("R2-TIMEOUT-1")
def test_an_idle_client_is_closed_after_the_timeout(fresh_target: FreshTarget, measure: Measure) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="it needs a short timeout") as t:
        idle = _timeout(t)
        before = time.monotonic()
        silent = t.connect("never sends anything")
        after_connect = time.monotonic()
        talker = t.connect("sends a PING, then nothing")
        before_ping = time.monotonic()
        RESP2.ask(talker, RESP2.ping(), why="the reply the idle time counts from")
        after_ping = time.monotonic()
        took = _closed_in_window(silent, before, after_connect, idle, "connect")
        measure("idle close after connect", round(took, 3), "s")
        took = _closed_in_window(talker, before_ping, after_ping, idle, "the PING's reply")
        measure("idle close after a reply", round(took, 3), "s")


@requirement("R2-TIMEOUT-2")
def test_requests_restart_the_idle_timer(fresh_target: FreshTarget) -> None:
    with fresh_target(idle=IDLE_SECONDS, why="it needs a short timeout") as t:
        idle = _timeout(t)
        with t.connect("a PING every half timeout") as c:
            until = time.monotonic() + 3 * idle + 1
            while time.monotonic() < until:
                RESP2.ask(c, RESP2.ping(), why="a connection active more often than every timeout stays open")
                c.expect_silence(idle / 2, why="between two PINGs")
