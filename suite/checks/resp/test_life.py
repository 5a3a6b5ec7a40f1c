"""R2-LIFE: SIGTERM ends the server (PROTOCOL-RESP2.md, section 11)."""

from __future__ import annotations

import signal
import time

from suite.api import FreshTarget, Measure, Violation, fresh_key, not_applicable, requirement, waits
from suite.checks.connections import what_is_left, why_the_signal_may_be_lost
from suite.profiles import resp
from suite.profiles.dialects import Resp2Dialect

# Each check waits out a timer on an instance of its own: a worker runs it beside its next checks.
pytestmark = waits

RESP2 = Resp2Dialect()
EXIT_WITHIN = 5.0
MARGIN = 0.5


@requirement("R2-LIFE-1")
def test_sigterm_ends_the_server_within_5_s_with_status_0(fresh_target: FreshTarget, measure: Measure) -> None:
    with fresh_target(why="it shuts the server down") as t:
        if t.process is None:
            not_applicable("the suite did not start this target (--address), so it cannot signal its process")
        assert t.process is not None
        idle = t.connect("idle")
        RESP2.ask(idle, RESP2.ping())
        blocked = t.connect("blocked in BLPOP 30")
        blocked.send(resp.command(b"BLPOP", fresh_key("nolist"), b"30"))
        half = t.connect("half a request")
        half.send(resp.command(b"ECHO", b"unfinished")[:9])
        before = time.monotonic()
        t.process.send_signal(signal.SIGTERM)
        status = t.process.wait(before + EXIT_WITHIN + MARGIN - time.monotonic())
        took = time.monotonic() - before
        if status is None:
            raise Violation(
                f"the server was still running {took:.2f} s after SIGTERM (with an idle connection, one blocked in "
                "BLPOP and one halfway through a request)",
                expected=f"exit status 0 within {EXIT_WITHIN:g} s",
                actual=f"still running: {what_is_left(t.process.pid)}",
                context=why_the_signal_may_be_lost(t.process.pid, signal.SIGTERM),
            )
        measure("exit after SIGTERM", round(took * 1000), "ms")
        if status != 0:
            raise Violation(f"the server exited with status {status} after SIGTERM", expected="0", actual=str(status))
