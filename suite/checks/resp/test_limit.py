"""R2-LIMIT: Redis's `maxclients` (PROTOCOL-RESP2.md, section 7). Each check
starts its own instance with {maxclients}=4 and takes N from what it declares
(the template, INFO or --declare)."""

from __future__ import annotations

import time

from suite.api import FreshTarget, Unsupported, not_applicable, requirement
from suite.probe import Probe
from suite.profiles.dialects import Resp2Dialect
from suite.targets.base import Target

RESP2 = Resp2Dialect()
MAXCLIENTS = 4  # what the checks ask for with {maxclients}
MOST_TO_FILL = 64  # a larger declared limit would make the check open too many connections
REFUSAL_WITHIN = 2.0
NOTICE_CLOSE_WITHIN = 2.0  # for the server to see that a served client left


def _limit(t: Target) -> int:
    if "maxclients" not in t.declared.pairs:
        not_applicable("the instance declares no maxclients (template {maxclients}, INFO, or --declare maxclients=N)")
    limit = t.declared.number("maxclients")
    if limit > MOST_TO_FILL:
        raise Unsupported(
            f"the instance declares maxclients={limit}; this check fills at most {MOST_TO_FILL}: give the --cmd "
            "template {maxclients} (e.g. --maxclients {maxclients})"
        )
    return limit


def _served(t: Target, count: int) -> list[Probe]:
    probes = []
    for n in range(count):
        probe = t.connect(f"served {n + 1}")
        RESP2.ask(probe, RESP2.ping(), why=f"connection {n + 1} of maxclients is served")
        probes.append(probe)
    return probes


def _refused(t: Target, label: str) -> Probe:
    probe = t.connect(label)
    RESP2.expect_reply(
        probe, b"-ERR max number of clients reached\r\n", "the connection over maxclients", REFUSAL_WITHIN
    )
    probe.expect_end(timeout=REFUSAL_WITHIN, allow_reset=True, why="after the maxclients error the server closes")
    return probe


@requirement("R2-LIMIT-1")
def test_the_connection_over_maxclients_gets_an_error_and_a_close(fresh_target: FreshTarget) -> None:
    with fresh_target(why="it fills every client slot", maxclients=MAXCLIENTS) as t:
        _served(t, _limit(t))
        _refused(t, "one over maxclients")
        _refused(t, "two over maxclients")


@requirement("R2-LIMIT-2")
def test_refusals_do_not_disturb_the_clients_being_served(fresh_target: FreshTarget) -> None:
    with fresh_target(why="it fills every client slot", maxclients=MAXCLIENTS) as t:
        served = _served(t, _limit(t))
        _refused(t, "refused while the others are served")
        for n, probe in enumerate(served):
            RESP2.ask(probe, RESP2.echo(b"%d" % n), why=f"connection {n + 1} is still served after a refusal")
        served[0].close()
        deadline = time.monotonic() + NOTICE_CLOSE_WITHIN
        while True:  # the server learns of the close when it reads the FIN
            probe = t.connect("after one served client left")
            probe.send(RESP2.ping().request)
            reply = RESP2.read_reply(probe, 0.5)
            if reply == b"+PONG\r\n":
                return
            probe.close()
            if time.monotonic() >= deadline:
                raise probe.violation(
                    f"{NOTICE_CLOSE_WITHIN:g} s after a served client closed, a new connection is still not served",
                    expected=b"+PONG\r\n",
                    actual=reply or probe.wire.pending() or probe.wire.ending.value,
                )
