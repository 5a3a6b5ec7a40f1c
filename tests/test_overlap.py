"""--overlap: the checks that wait out a server's timers run side by side
(suite/overlap.py), and every verdict is the one the check gives alone.

Against servers that are not the references: the asyncio student server, and
a mutant whose idle timer restarts on every byte received. Whether checks ran
at once is seen from outside, in the process table: two of the short-timer
instances (each CH-TIMEOUT check starts its own, with {idle}=1) alive at the
same moment, in a run with a single worker.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from suite import overlap

REPO = Path(__file__).resolve().parents[1]
SOCKSPEC = str(Path(sys.executable).with_name("sockspec"))
PYTHON = shlex.quote(sys.executable)
STUDENT = f"{PYTHON} {REPO / 'tests' / 'servers' / 'asyncio_student.py'} --port {{port}} --idle {{idle}}"
TRICKLE_MUTANT = f"{PYTHON} -m tests.mutants trickle-resets-timer --port {{port}} --idle-timeout {{idle}}"
RUN_DEADLINE = 240.0  # seconds: the TIMEOUT and LIFE areas of one server, one worker, nothing aside


def _run(
    template: str, tmp_path: Path, *options: str, watch: Callable[[str, subprocess.Popen[bytes]], None] | None = None
) -> dict[str, str]:
    """Run the TIMEOUT and LIFE areas of ``template`` (one worker unless ``options`` say
    otherwise); the verdict of each requirement. ``watch`` is called while it runs."""
    marker = f"overlap-{uuid.uuid4().hex}"
    report = tmp_path / f"{marker}.json"
    run = subprocess.Popen(
        [SOCKSPEC, "run", "--cmd", template, "--only", "CH-TIMEOUT-*,CH-LIFE-*", "--json", str(report)]
        + (list(options) if "-n" in options else ["-n", "1", *options]),
        cwd=REPO,
        env={**os.environ, "SOCKSPEC_TEST_MARKER": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if watch is not None:
            watch(marker, run)
        output, _ = run.communicate(timeout=RUN_DEADLINE)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    text = output.decode(errors="replace")
    assert run.returncode in (0, 1), f"exit {run.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    [target] = json.loads(report.read_text())["targets"]
    return {result["id"]: result["verdict"] for result in target["results"]}


def _short_timer_instances(marker: str) -> int:
    """How many servers of the run started with {idle}=1 are alive now."""
    count = 0
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            arguments = process.info["cmdline"] or []
            flags = [index for index, argument in enumerate(arguments) if argument in ("--idle", "--idle-timeout")]
            if process.info["status"] == psutil.STATUS_ZOMBIE or not flags:
                continue
            if arguments[flags[0] + 1] == "1" and process.environ().get("SOCKSPEC_TEST_MARKER") == marker:
                count += 1
        except (psutil.Error, IndexError):
            continue
    return count


def _sample(seen: list[int], until: float, enough: int | None = None) -> Callable[[str, subprocess.Popen[bytes]], None]:
    """Sample how many short-timer instances are alive at once, until the run ends,
    ``until`` seconds have passed, or ``enough`` have been seen together."""

    def watch(marker: str, run: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + until
        while run.poll() is None and time.monotonic() < deadline:
            seen.append(_short_timer_instances(marker))
            if enough is not None and max(seen) >= enough:
                return
            time.sleep(0.02)  # sampling the process table, with a deadline; not synchronisation

    return watch


@pytest.mark.slow
def test_checks_that_wait_run_side_by_side_in_one_worker(tmp_path: Path) -> None:
    seen: list[int] = []
    verdicts = _run(STUDENT, tmp_path, "--overlap", "2", watch=_sample(seen, RUN_DEADLINE, enough=2))
    assert max(seen, default=0) >= 2, f"never two CH-TIMEOUT instances at once with --overlap 2 (samples: {seen[-20:]})"
    assert verdicts["CH-TIMEOUT-1"] == "PASS", verdicts


@pytest.mark.slow
@pytest.mark.parametrize("template", [STUDENT, TRICKLE_MUTANT], ids=["asyncio-student", "trickle-mutant"])
def test_every_verdict_is_the_one_the_check_gives_alone(template: str, tmp_path: Path) -> None:
    """The same requirements pass and fail with the waits side by side (in two xdist
    workers) as one after the other in one."""
    alone = _run(template, tmp_path, "--overlap", "0")
    side_by_side = _run(template, tmp_path, "--overlap", "3", "-n", "2")
    assert side_by_side == alone, {i: (alone.get(i), side_by_side.get(i)) for i in alone | side_by_side}
    if template == TRICKLE_MUTANT:
        assert alone["CH-TIMEOUT-4"] == "FAIL", alone  # the mutant's bug is caught either way


@pytest.mark.slow
def test_overlap_0_runs_every_check_in_turn(tmp_path: Path) -> None:
    """The negative of the first test: with --overlap 0 no two short-timer instances ever live at once."""
    seen: list[int] = []
    _run(STUDENT, tmp_path, "--overlap", "0", watch=_sample(seen, RUN_DEADLINE))
    assert max(seen, default=0) == 1, f"at most one instance at a time, and at least one seen: {max(seen, default=0)}"


@pytest.mark.parametrize(("value", "message"), [("-1", "--overlap wants a whole number"), ("two", "invalid int value")])
def test_a_bad_overlap_gets_one_line_and_exit_2(value: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [SOCKSPEC, "run", "--reference", "evented", "--overlap", value],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# ---- the order a worker gets its checks in (the suite's own logic: stand-ins for items) --------------------


class _Item:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


@pytest.mark.parametrize(("waiting", "others"), [(5, 12), (12, 3), (1, 1), (0, 4), (4, 0), (7, 7)])
def test_the_checks_that_wait_are_spread_among_the_others(
    waiting: int, others: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlap, "runs_aside", lambda item: item.name.startswith("w"))
    items = [_Item(f"w{i}") for i in range(waiting)] + [_Item(f"c{i}") for i in range(others)]
    order = [item.name for item in overlap.spread(items)]  # type: ignore[arg-type]
    assert sorted(order) == sorted(item.name for item in items), "every check once"
    assert [n for n in order if n[0] == "w"] == [f"w{i}" for i in range(waiting)], "the waiting ones keep their order"
    assert [n for n in order if n[0] == "c"] == [f"c{i}" for i in range(others)], "the others keep theirs"
    if waiting and others:
        assert order[0] == "w0", "the first wait starts at once"
        assert order[-1][0] == "c", "the run ends on a check that does not wait"
        # Evenly: between two waits come about others / waiting other checks.
        gaps = [len(run) for run in "".join(n[0] for n in order).split("w")[1:-1]]
        assert max(gaps, default=0) - min(gaps, default=0) <= 1, order
