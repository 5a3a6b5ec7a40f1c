"""redis-benchmark, the load generator this field trusts, on the cells where
it applies: PING for any target (``ping_inline``: a CloudHash/1 server answers
the inline ``PING`` with ``+PONG`` as Redis does; ``ping_mbulk`` for a RESP2
target, the bytes the suite's own generator sends it), and SET, GET and INCR
for RESP2 targets. Its figures stand beside the suite's own generator's, cell
by cell, so that a reader can see whether the client or the server was the
limit.

redis-benchmark is bounded by a request count, not a time: the count is the
one the suite's generator reached in the same cell, scaled to the same
duration. It waits for every reply, so a cell where the server never served
some connections (a pool smaller than the connection count) is not given to
it. It runs in its own process group, killed at its deadline (suite.clients.timed).
"""

from __future__ import annotations

import base64
import csv
import io
import shutil
from dataclasses import dataclass

from .. import reaper
from ..clients import timed
from ..targets.process import Endpoint

__all__ = ["RedisBenchmarkCell", "available", "run", "test_for"]

PROGRAM = "redis-benchmark"
TESTS = {
    ("cloudhash", "ping"): "ping_inline",
    ("resp2", "ping"): "ping_mbulk",
    ("resp2", "set"): "set",
    ("resp2", "get"): "get",
    ("resp2", "incr"): "incr",
}


@dataclass(frozen=True)
class RedisBenchmarkCell:
    test: str  # redis-benchmark's name for it: ping_inline, set, ...
    requests: int
    throughput: float | None  # requests per second, as it reports them
    p50: float | None  # seconds
    p99: float | None
    problem: str | None = None  # why there are no figures


def available() -> str | None:
    return shutil.which(PROGRAM)


def test_for(profile: str, command: str) -> str | None:
    """redis-benchmark's test for ``command`` against a ``profile`` target, if it has one."""
    return TESTS.get((profile, command))


def run(
    endpoint: Endpoint, test: str, connections: int, depth: int, *, requests: int, timeout: float
) -> RedisBenchmarkCell:
    program = available()
    if program is None:
        return RedisBenchmarkCell(test, requests, None, None, None, f"{PROGRAM} is not installed")
    command = [
        program,
        *("-h", endpoint.host, "-p", str(endpoint.port)),
        *("-c", str(connections), "-n", str(requests), "-P", str(depth)),
        *("-t", test, "--csv"),
    ]
    # suite.clients.timed runs it in its own process group, killed whole at the deadline or an interrupt.
    ran = timed.run(command, timeout, started=reaper.track, ended=reaper.untrack)
    if ran["error"]:
        return RedisBenchmarkCell(test, requests, None, None, None, f"it could not be run: {ran['error']}")
    if ran["hung"]:
        return RedisBenchmarkCell(test, requests, None, None, None, f"it did not finish within {timeout:g} s")
    output, errors = (base64.b64decode(ran[stream]).decode("utf-8", "replace") for stream in ("stdout", "stderr"))
    return _parsed(test, requests, output, errors)


def _parsed(test: str, requests: int, output: str, errors: str) -> RedisBenchmarkCell:
    """Its --csv line for ``test``: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",..."""
    rows = list(csv.DictReader(io.StringIO(output)))
    row = next((r for r in rows if r.get("test", "").lower() == test.lower()), None)
    if row is None:
        said = (errors.strip() or output.strip()).splitlines()[-1:] or ["nothing"]
        return RedisBenchmarkCell(test, requests, None, None, None, f"no figures; it said: {said[0][:200]}")
    try:
        return RedisBenchmarkCell(
            test,
            requests,
            float(row["rps"]),
            float(row["p50_latency_ms"]) / 1000,
            float(row["p99_latency_ms"]) / 1000,
        )
    except (KeyError, ValueError) as error:
        return RedisBenchmarkCell(test, requests, None, None, None, f"its CSV could not be read ({error})")
