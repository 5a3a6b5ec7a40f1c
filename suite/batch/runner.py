"""Runs a batch: one `sockspec run` per target, up to N at a time, each
isolated from the others.

Each target's run is a child process of its own, leading its own process
group, in the target's working directory, with its own ports (each run picks
free ones), its own record of the process groups it starts (handed down by
``reaper``) and a time budget. A run that overstays its budget gets SIGTERM,
so that it stops its target and writes its report marked as interrupted, and
SIGKILL if it does not end within a grace period; whatever it left behind is
swept. Its output goes to a log file, never to the terminal: a flood of
output costs disk, bounded by ``sockspec run``'s own cap on a target's output.

The scheduler waits on the children's pidfds (no polling loop, no sleep):
it wakes when a run ends or a budget runs out.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import reaper
from .manifest import BatchTarget, Manifest

__all__ = ["RunEnded", "run_batch"]

GRACE = 20.0  # seconds a run has, after SIGTERM, to stop its target and write its report
EXIT_INTERRUPTED = 130

Log = Callable[[str], None]


@dataclass
class RunEnded:
    """How one target's run ended."""

    target: BatchTarget
    exit_code: int | None  # None: the batch was interrupted before it started
    report: Path  # its JSON report (it may not exist: a run that stopped before judging anything)
    junit: Path
    log: Path
    elapsed: float = 0.0
    over_budget: bool = False
    killed: bool = False  # it did not end within GRACE of SIGTERM

    @property
    def problem(self) -> str:
        """Why the run gives this target no level, in one line ("" when it does)."""
        if self.exit_code is None:
            return "not run: the batch was interrupted first"
        if self.over_budget:
            return (
                f"ran out of its time budget ({self.target.time_budget:g} s) and was stopped; "
                "its results are incomplete; no level"
            )
        if not self.report.exists():
            return f"could not be judged (sockspec run exited {self.exit_code}): {self.first_words()}"
        return ""

    def first_words(self) -> str:
        """The first lines the run printed: why it could not start (a bad template, a server that never answered)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no output"
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("$ ")]
        return " ".join(lines[:3])[:600] or "no output"


@dataclass
class _Running:
    target: BatchTarget
    process: subprocess.Popen[bytes]
    pidfd: int
    started: float
    groups: Path
    ended: RunEnded
    terminated_at: float | None = None
    log_file: object = field(default=None)

    def deadline(self) -> float:
        if self.terminated_at is not None:
            return self.terminated_at + GRACE
        return self.started + self.target.time_budget


def run_batch(
    manifest: Manifest,
    targets: list[BatchTarget],
    directory: Path,
    *,
    workers: int,
    seed: int,
    log: Log,
) -> tuple[list[RunEnded], bool]:
    """Every target's run, up to ``workers`` at a time. Returns how each ended
    (in the manifest's order) and whether the batch was interrupted; an
    interrupt stops every run (each writes what it has) before it returns."""
    directory = directory.resolve()  # each run works in its target's own directory
    for sub in ("targets", "junit", "logs"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    pending = list(targets)
    running: dict[int, _Running] = {}
    ended: dict[str, RunEnded] = {}
    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < workers:
                run = _start(manifest, pending.pop(0), directory, seed)
                running[run.pidfd] = run
                log(f"started {run.target.name} ({len(ended) + len(running)}/{len(targets)})")
            _wait_for_news(running, ended, log)
    except KeyboardInterrupt:
        interrupted = True
        _stop_all(running, ended, log)
    for target in targets:
        if target.name not in ended:
            ended[target.name] = _paths(directory, target, exit_code=None)
    return [ended[t.name] for t in targets], interrupted


def _paths(directory: Path, target: BatchTarget, exit_code: int | None) -> RunEnded:
    return RunEnded(
        target,
        exit_code,
        report=directory / "targets" / f"{target.name}.json",
        junit=directory / "junit" / f"{target.name}.xml",
        log=directory / "logs" / f"{target.name}.txt",
    )


def _start(manifest: Manifest, target: BatchTarget, directory: Path, seed: int) -> _Running:
    ended = _paths(directory, target, exit_code=0)
    for stale in (ended.report, ended.junit):
        stale.unlink(missing_ok=True)  # a report left from an earlier batch must not pass for this one
    groups = Path(tempfile.mkdtemp(prefix=f"sockspec-batch-{target.name}-"))
    argv = [
        sys.executable, "-m", "suite.cli", "run", *target.run_args(), *manifest.run_args(),
        "--seed", str(seed), "--json", str(ended.report), "--junit", str(ended.junit),
    ]  # fmt: skip
    log_file = ended.log.open("wb")
    log_file.write(f"$ cd {target.workdir} && {subprocess.list2cmdline(argv)}\n".encode())
    log_file.flush()
    environment = {**os.environ, **reaper.handed_down(groups), "NO_COLOR": "1", "PYTHONPATH": _importable()}
    process = subprocess.Popen(
        argv,
        cwd=target.workdir,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a signal to the batch's terminal never reaches it
        env=environment,
    )
    return _Running(target, process, os.pidfd_open(process.pid), time.monotonic(), groups, ended, log_file=log_file)


def _importable() -> str:
    """The suite is importable from a run in any working directory (a checkout that is not installed too)."""
    root = str(Path(__file__).resolve().parents[2])
    existing = os.environ.get("PYTHONPATH", "")
    return f"{root}{os.pathsep}{existing}" if existing else root


def _wait_for_news(running: dict[int, _Running], ended: dict[str, RunEnded], log: Log) -> None:
    """Until a run ends or a deadline passes, whichever is first."""
    poller = select.poll()
    for pidfd in running:
        poller.register(pidfd, select.POLLIN)
    wake = min(run.deadline() for run in running.values())
    for pidfd, _ in poller.poll(max(0.0, wake - time.monotonic()) * 1000):
        _finish(running.pop(pidfd), ended, log)
    now = time.monotonic()
    for pidfd, run in list(running.items()):
        if now < run.deadline():
            continue
        if run.terminated_at is None:
            log(f"{run.target.name}: over its time budget of {run.target.time_budget:g} s; stopping it")
            run.ended.over_budget = True
            _signal(run, signal.SIGTERM)
            run.terminated_at = now
        else:
            run.ended.killed = True
            _signal(run, signal.SIGKILL)
            run.process.wait()
            _finish(running.pop(pidfd), ended, log)


def _signal(run: _Running, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.process.pid, signum)


def _finish(run: _Running, ended: dict[str, RunEnded], log: Log) -> None:
    code = run.process.wait()
    os.close(run.pidfd)
    run.log_file.close()  # type: ignore[attr-defined]
    reaper.sweep(run.groups)  # what a run killed outright could not stop itself
    shutil.rmtree(run.groups, ignore_errors=True)
    result = run.ended
    result.exit_code = code
    result.elapsed = round(time.monotonic() - run.started, 2)
    ended[run.target.name] = result
    log(f"ended {run.target.name}: exit {code} after {result.elapsed:.0f} s")


def _stop_all(running: dict[int, _Running], ended: dict[str, RunEnded], log: Log) -> None:
    """SIGTERM every run (each stops its target and writes its report), then
    SIGKILL whatever has not ended within the grace period."""
    for run in running.values():  # first: nothing below may keep a run from being stopped
        _signal(run, signal.SIGTERM)
    log(f"interrupted: stopping {len(running)} run(s)")
    until = time.monotonic() + GRACE
    while running and time.monotonic() < until:
        poller = select.poll()
        for pidfd in running:
            poller.register(pidfd, select.POLLIN)
        for pidfd, _ in poller.poll(max(0.0, until - time.monotonic()) * 1000):
            _finish(running.pop(pidfd), ended, log)
    for pidfd, run in list(running.items()):
        run.ended.killed = True
        _signal(run, signal.SIGKILL)
        _finish(running.pop(pidfd), ended, log)
