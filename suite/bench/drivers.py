"""The controller's side of the load generator: the driver processes
(suite.bench.driver), each started in its own process group and recorded
with suite.reaper, told what to do one JSON line at a time, their answers
read with a deadline and merged into one result per cell.

Connections are spread over the drivers as evenly as they go; a cell starts
at one clock time in every driver (CLOCK_MONOTONIC is shared by every
process on the machine), so that the window is the same for all.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

from .. import reaper
from ..probe import HarnessError
from ..targets.process import Endpoint
from . import latency
from .workload import Workload

__all__ = ["CellLoad", "DriverFailed", "Drivers"]

START_LEAD = 0.05  # seconds between sending a cell's operation and its start: time for every driver to read it
DRAIN = 1.0  # seconds after a cell for the replies still due, at most (a driver stops sooner once none come)
ANSWER_SLACK = 10.0  # seconds past an operation's own bounds before a silent driver counts as hung
EXIT_GRACE = 2.0


class DriverFailed(HarnessError):
    """A driver died, hung or could not do what it was asked (the harness's fault, never the server's)."""


@dataclass(frozen=True)
class CellLoad:
    """What the drivers measured in one cell, merged."""

    throughput: float  # expected replies per second
    replies: int  # expected replies inside the window
    errors: int  # other replies inside the window
    sent: int
    late: int  # replies after the window (drained, not counted)
    elapsed: float  # seconds: the window, or less when the count bound ended it
    histogram: latency.Histogram
    starved: int  # connections with no reply in the whole window
    closed: int  # connections the server closed during the window
    owing: int  # connections still owed replies after the drain (carried into the next cell)
    example: str | None  # the first unexpected reply, base64


class Drivers:
    """``count`` driver processes, started at once and stopped (with their groups) by ``stop``."""

    def __init__(self, count: int) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stderr: list[IO[bytes]] = []
        self._pending: list[bytes] = []
        try:
            for _ in range(count):
                stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop(), with the process)
                process = subprocess.Popen(
                    [sys.executable, "-m", "suite.bench.driver"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    start_new_session=True,  # its own process group: killed whole, never left behind
                )
                reaper.track(process.pid)
                self.processes.append(process)
                self._stderr.append(stderr)
                self._pending.append(b"")
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Drivers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.stop(at_once=kind is not None)  # interrupted or failed: no point letting a cell finish

    # ---- operations --------------------------------------------------------------------

    def open(
        self,
        endpoint: Endpoint,
        connections: int,
        timeout: float,
        confirm: Workload | None = None,
        window: int = 256,
    ) -> dict[str, Any]:
        """Open ``connections`` spread over the drivers; returns how many opened, why others did not,
        and the connect (or connect-and-confirm) times."""
        shares = _spread(connections, len(self.processes))
        ops = [
            {
                "op": "open",
                "host": endpoint.host,
                "port": endpoint.port,
                "count": share,
                "timeout": timeout,
                "window": max(1, window // len(self.processes)),
                "confirm": confirm.op() if confirm is not None else None,
            }
            for share in shares
        ]
        answers = self._ask(ops, timeout)
        failures: dict[str, int] = {}
        for answer in answers:
            for reason, count in answer["failures"].items():
                failures[reason] = failures.get(reason, 0) + count
        return {
            "opened": sum(a["opened"] for a in answers),
            "failures": failures,
            "histogram": latency.merge(a["histogram"] for a in answers),
        }

    def run(self, load: Workload, depth: int, duration: float, *, max_requests: int) -> CellLoad:
        """One cell over the connections already open."""
        start = time.monotonic() + START_LEAD
        op = {**load.op(), "op": "run", "depth": depth, "start": start, "end": start + duration, "drain": DRAIN}
        shares = _spread(max_requests, len(self.processes))
        answers = self._ask([{**op, "max_requests": share} for share in shares], START_LEAD + duration + DRAIN)
        return CellLoad(
            # Each driver's rate over its own window (the count bound may end one early), summed.
            throughput=sum(a["replies"] / a["elapsed"] for a in answers if a["elapsed"] > 0),
            replies=sum(a["replies"] for a in answers),
            errors=sum(a["errors"] for a in answers),
            sent=sum(a["sent"] for a in answers),
            late=sum(a["late"] for a in answers),
            elapsed=max(a["elapsed"] for a in answers),
            histogram=latency.merge(a["histogram"] for a in answers),
            starved=sum(a["starved"] for a in answers),
            closed=sum(a["closed"] for a in answers),
            owing=sum(a["owing"] for a in answers),
            example=next((a["example"] for a in answers if a["example"]), None),
        )

    def ask_each(self, load: Workload, timeout: float) -> dict[str, Any]:
        """One exchange on every open connection at once."""
        answers = self._ask([{**load.op(), "op": "ask_each", "timeout": timeout}] * len(self.processes), timeout)
        merged: dict[str, Any] = {
            key: sum(a[key] for a in answers) for key in ("answered", "errors", "closed", "unanswered")
        }
        merged["histogram"] = latency.merge(a["histogram"] for a in answers)
        merged["example"] = next((a["example"] for a in answers if a["example"]), None)
        return merged

    def churn(
        self, endpoint: Endpoint, load: Workload, slots: int, duration: float, max_requests: int
    ) -> dict[str, Any]:
        """``slots`` connections at a time, each opened, asked once, closed."""
        start = time.monotonic() + START_LEAD
        ops = [
            {
                **load.op(),
                "op": "churn",
                "host": endpoint.host,
                "port": endpoint.port,
                "slots": slot_share,
                "start": start,
                "end": start + duration,
                "max_requests": request_share,
            }
            for slot_share, request_share in zip(
                _spread(slots, len(self.processes)), _spread(max_requests, len(self.processes)), strict=True
            )
        ]
        answers = self._ask(ops, START_LEAD + duration)
        merged: dict[str, Any] = {key: sum(a[key] for a in answers) for key in ("completed", "errors", "refused")}
        merged["elapsed"] = max(a["elapsed"] for a in answers)
        merged["histogram"] = latency.merge(a["histogram"] for a in answers)
        merged["example"] = next((a["example"] for a in answers if a["example"]), None)
        return merged

    def close_connections(self) -> None:
        self._ask([{"op": "close"}] * len(self.processes), 10.0)

    # ---- the pipes -----------------------------------------------------------------------

    def _ask(self, ops: list[dict[str, Any]], bound: float) -> list[dict[str, Any]]:
        """Send each driver its operation and read every answer, ``bound`` plus some slack at most."""
        for process, op in zip(self.processes, ops, strict=True):
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(op).encode() + b"\n")
                process.stdin.flush()
            except OSError:
                raise DriverFailed(self._died(process, op["op"])) from None
        deadline = time.monotonic() + bound + ANSWER_SLACK
        answers = [self._answer(index, deadline, op["op"]) for index, op in enumerate(ops)]
        for answer, op in zip(answers, ops, strict=True):
            if "error" in answer:
                raise DriverFailed(f"a load-generator driver could not {op['op']}: {answer['error']}")
        return answers

    def _answer(self, index: int, deadline: float, what: str) -> dict[str, Any]:
        process = self.processes[index]
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._pending[index]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DriverFailed(f"a load-generator driver (pid {process.pid}) did not answer {what!r} in time")
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if poller.poll(left * 1000):
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise DriverFailed(self._died(process, what))
                self._pending[index] += chunk
        line, _, self._pending[index] = self._pending[index].partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _died(self, process: subprocess.Popen[bytes], what: str) -> str:
        status = process.wait(EXIT_GRACE) if process.poll() is None else process.returncode
        index = self.processes.index(process)
        self._stderr[index].seek(0)
        tail = self._stderr[index].read()[-1500:].decode("utf-8", "replace").strip()
        return f"a load-generator driver (pid {process.pid}) ended (status {status}) during {what!r}" + (
            f":\n{tail}" if tail else ""
        )

    def stop(self, *, at_once: bool = False) -> None:
        """Close their input (they exit when idle), then kill each group and reap it
        (``at_once``: without waiting for them); safe to call twice."""
        for process in self.processes:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()
        deadline = time.monotonic() + (0.0 if at_once else EXIT_GRACE)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5.0)
            reaper.untrack(process.pid)
            if process.stdout is not None:
                process.stdout.close()
        for stderr in self._stderr:
            stderr.close()
        self.processes, self._stderr, self._pending = [], [], []


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` shares that differ by one at most."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
