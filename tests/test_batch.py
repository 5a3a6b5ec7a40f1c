"""`sockspec batch`: a class of servers written the way students write them,
graded from one manifest, each target isolated from the others.

The class: a reference server, an asyncio student who passes, a socketserver
student with two bugs, one whose server never gets ready, one whose server
crashes on the first INCR, one whose server floods its output, and one whose
server hangs on every request and ignores SIGTERM.
"""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.report_support import validate_report
from tests.test_front_door import QUICK, REPO, SOCKSPEC, sockspec

SERVERS = REPO / "tests" / "servers"
ONLY = "CH-FRAME-1,CH-FRAME-3,CH-CMD-*"
SEED = "424242"
HANG_BUDGET = 15.0
STUDENTS = {
    "alice": "asyncio_student.py",
    "bob": "no_pipelining_socketserver.py",
    "carol": "never_ready.py",
    "dave": "crashes_on_incr.py",
    "erin": "floods_before_ready.py",
    "frank": "hangs_on_requests.py",
}


def make_class(root: Path, students: dict[str, str]) -> None:
    """One directory per student, with a server.py, as an instructor would collect them
    (each runs one of tests/servers/, where its own imports are found)."""
    for name, server in students.items():
        directory = root / "students" / name
        directory.mkdir(parents=True)
        (directory / "server.py").write_text(
            f"import runpy, sys\nsys.path.insert(0, {str(SERVERS)!r})\n"
            f"runpy.run_path({str(SERVERS / server)!r}, run_name='__main__')\n",
            encoding="utf-8",
        )


def manifest(root: Path, *, each: str = "students/*/", extra: str = "", reference: str = "evented") -> Path:
    path = root / "class.toml"
    path.write_text(
        f"""
[batch]
only = "{ONLY}"
time_budget = 120

[[target]]
name = "reference"
reference = "{reference}"

[[target]]
each = "{each}"
cmd = "{sys.executable} server.py --port {{port}}"
ready_timeout = 4
{extra}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Batch:
    root: Path
    result: subprocess.CompletedProcess[str]
    took: float
    report: dict[str, Any]
    grades: list[dict[str, str]]

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["targets"] if t["name"] == name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    root = tmp_path_factory.mktemp("class")
    make_class(root, STUDENTS)
    # frank's server hangs: he gets a target of his own, with a short budget
    frank = f"""
[[target]]
name = "frank-budget"
cmd = "{sys.executable} server.py --port {{port}}"
workdir = "students/frank"
time_budget = {HANG_BUDGET}
"""
    path = manifest(root, each="students/[a-e]*/", extra=frank)
    (root / "out").mkdir()
    out = root / "out"
    result, took = sockspec(
        "batch", str(path), "-n", "2", "--seed", SEED,
        "--json", str(out / "json"), "--html", str(out / "html"), "--junit", str(out / "junit"),
        cwd=root, timeout=600,
    )  # fmt: skip
    report = json.loads((out / "json" / "batch.json").read_text())
    with (out / "json" / "grades.csv").open(encoding="utf-8") as table:
        grades = list(csv.DictReader(table))
    return Batch(root, result, took, report, grades)


def verdicts(target: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in target["results"]}


# ---- one grade table ------------------------------------------------------------------------


def test_every_target_gets_a_row_with_its_level_counts_and_first_fix(graded: Batch) -> None:
    assert graded.result.returncode == 2, graded.result.stdout[-3000:]  # carol never answered: not judged
    rows = {row["target"]: row for row in graded.grades}
    assert set(rows) == {"reference", "alice", "bob", "carol", "dave", "erin", "frank-budget"}
    assert rows["reference"]["FAIL"] == rows["alice"]["FAIL"] == "0"
    assert rows["bob"]["fix_first"].startswith("CH-"), rows["bob"]
    assert int(rows["bob"]["FAIL"]) >= 1
    for name, row in rows.items():
        assert row["rerun"].endswith(f"--target {name}"), row
    validate_report(graded.report)


def test_a_target_that_never_answers_gets_its_reason_not_a_level(graded: Batch) -> None:
    carol = graded.target("carol")
    assert carol["conformance"] is None and carol["results"] == []
    assert "never printed READY" in carol["problem"], carol["problem"]


def test_a_crashing_target_is_named_as_the_root_of_what_failed(graded: Batch) -> None:
    dave = graded.target("dave")
    assert dave["problem"] is None
    assert dave["counts"]["FAIL"] >= 1
    causes = [c["cause"] for r in dave["results"] for c in r["checks"] if c["cause"]]
    assert causes and "status 3" in causes[0], causes


def test_a_flooding_target_is_judged_like_any_other(graded: Batch) -> None:
    erin = graded.target("erin")
    assert erin["problem"] is None
    assert erin["counts"]["PASS"] > 0  # it answers PING and INFO, its flood before READY notwithstanding
    log = graded.root / "out" / "json" / "logs" / "erin.txt"
    assert log.stat().st_size < 1 << 20, "the 32 MiB flood never reaches the batch's files"


def test_a_hung_target_is_stopped_at_its_budget_and_reported_so(graded: Batch) -> None:
    frank = graded.target("frank-budget")
    assert "ran out of its time budget (15 s)" in frank["problem"]
    assert frank["conformance"] is None
    # the whole batch: the hang costs its budget and the grace period, not the check timeouts of every check
    assert graded.took < 120, graded.took


def test_each_verdict_equals_the_targets_solo_run(graded: Batch, tmp_path: Path) -> None:
    for name, args in (
        ("reference", ["--reference", "evented"]),
        ("alice", ["--cmd", f"{sys.executable} server.py --port {{port}}"]),
        ("bob", ["--cmd", f"{sys.executable} server.py --port {{port}}"]),
    ):
        cwd = graded.root / "students" / name if name != "reference" else graded.root
        report = tmp_path / f"{name}.json"
        result, _ = sockspec(
            "run", *args, "--only", ONLY, "--seed", SEED, "--ready-timeout", "4", "--json", str(report), cwd=cwd
        )
        assert result.returncode in (0, 1), result.stderr[-2000:]
        (solo,) = json.loads(report.read_text())["targets"]
        assert verdicts(solo) == verdicts(graded.target(name)), name


def test_the_grade_table_is_a_page_of_the_report(graded: Batch) -> None:
    html = graded.root / "out" / "html"
    page = (html / "grades.html").read_text()
    for name in ("alice", "bob", "carol", "frank-budget"):
        assert f">{name}<" in page
    assert "ran out of its time budget" in page
    assert 'href="grades.html"' in (html / "index.html").read_text()
    junit = graded.root / "out" / "junit"
    assert (junit / "batch.xml").is_file() and (junit / "bob.xml").is_file()


def test_nothing_is_left_running_after_the_batch(graded: Batch) -> None:
    assert not _processes_under(graded.root)


def _processes_under(root: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if str(root) in " ".join(process.info["cmdline"] or []) or str(root) in (process.info["cwd"] or ""):
                found.append(f"{process.pid}: {process.info['cmdline']}")
        except psutil.Error:
            continue
    return found


# ---- shards over targets --------------------------------------------------------------------


def test_two_shards_of_a_batch_merge_into_the_one_run_table(tmp_path: Path) -> None:
    make_class(tmp_path, {k: STUDENTS[k] for k in ("alice", "bob", "carol")})
    path = manifest(tmp_path)
    tables = {}
    for label, extra in (("whole", []), ("1", ["--shard", "1/2"]), ("2", ["--shard", "2/2"])):
        out = tmp_path / label
        out.mkdir()
        result, _ = sockspec("batch", str(path), "--seed", SEED, "--json", str(out), *extra, cwd=tmp_path)
        assert result.returncode in (1, 2), result.stdout[-2000:]
        tables[label] = out
    merged = tmp_path / "merged.json"
    result, _ = sockspec(
        "merge", str(merged), str(tables["1"] / "batch.json"), str(tables["2"] / "batch.json"),
        "--csv", str(tmp_path / "merged.csv"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # carol could not be judged, in the merge as in the whole

    def table(path: Path) -> dict[str, dict[str, str]]:
        with path.open(encoding="utf-8") as rows:
            # A problem names the ports its run chose: that it is there is what must agree.
            return {
                row["target"]: {k: (bool(v) if k == "problem" else v) for k, v in row.items() if k != "time"}
                for row in csv.DictReader(rows)
            }

    assert table(tmp_path / "merged.csv") == table(tables["whole"] / "grades.csv")


# ---- interrupts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "reader_gone"),
    [(signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["sigint", "sigterm-with-its-output-unread"],
)
def test_an_interrupt_stops_every_run_and_leaves_nothing_behind(
    tmp_path: Path, signum: signal.Signals, reader_gone: bool
) -> None:
    """Also when whoever read the batch's output is gone (a closed pipe): its news cannot be written,
    and its runs must be stopped all the same."""
    make_class(tmp_path, {"frank": STUDENTS["frank"]})
    manifest(tmp_path, reference="serial")
    out = tmp_path / "out"
    out.mkdir()
    batch = subprocess.Popen(
        [SOCKSPEC, "batch", "class.toml", "-n", "2", "--json", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _serving(tmp_path / "students" / "frank"):
            assert time.monotonic() < deadline, "frank's server never started"
            assert batch.poll() is None, batch.communicate()[0][-2000:]
            select.select([batch.stdout], [], [], 0.05)  # the batch's news, or a moment between looks
        started = time.monotonic()
        if reader_gone:
            assert batch.stdout is not None
            batch.stdout.close()
            os.kill(batch.pid, signum)  # to the batch alone: its runs must hear it from the batch
            batch.wait(timeout=60)
            output = ""
        else:
            os.killpg(batch.pid, signum)
            output, _ = batch.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait()
    assert batch.returncode == 130, output[-2000:]
    assert took < 30, took
    assert not _processes_under(tmp_path), "a run, or a server it started, outlived the batch"
    report = json.loads((out / "batch.json").read_text())
    assert report["interrupted"] is True and report["summary"]["exit_code"] == 130


def _serving(directory: Path) -> bool:
    """frank's server is running (the batch's run has got as far as starting it)."""
    for process in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if process.info["cwd"] == str(directory) and (process.info["cmdline"] or [])[1:2] == ["server.py"]:
                return True
        except psutil.Error:
            continue
    return False


# ---- bad manifests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[target]]\nname = 'a'\ncmd = \n", "not valid TOML: Invalid value (at line 3"),
        (
            "[[target]]\nname = 'a'\ncmd = 'x {port}'\ncmdd = 1\n",
            "class.toml:1: [[target]] a: unknown key 'cmdd'; did you mean 'cmd'?",
        ),
        (
            "[batch]\nonly = 'CH-FRAME-*'\n\n[[target]]\nname = 'a'\nreference = 'evented'\naddress = '1.2.3.4:5'\n",
            "class.toml:4: [[target]] a: give exactly one of",
        ),
        ("[[target]]\ncmd = 'x {port}'\n", "class.toml:1: [[target]]: a cmd target needs a name"),
        ("[[target]]\neach = 'nobody/*/'\ncmd = 'x {port}'\n", "matches no directory"),
        (
            "[[target]]\nname = 'a'\nreference = 'evented'\n[[target]]\nname = 'a'\nreference = 'serial'\n",
            "class.toml:4: a second target named 'a' (the first: line 1)",
        ),
        ("[[target]]\nname = 'a b'\nreference = 'evented'\n", "target name 'a b'"),
        ("[[target]]\nname = 'a'\nreference = 'evented'\ntime_budget = -1\n", "time_budget wants a positive number"),
        (
            "[batch]\nspeed = 2\n[[target]]\nname = 'a'\nreference = 'evented'\n",
            "class.toml:1: [batch]: unknown key 'speed'",
        ),
        ("title = 'x'\n", "unknown table or key 'title'"),
        ("[batch]\n", "no [[target]] tables"),
    ],
    ids=[
        "syntax", "unknown-key", "two-kinds", "no-name", "empty-glob", "duplicate", "bad-name", "budget",
        "batch-key", "top-key", "no-targets",
    ],
)  # fmt: skip
def test_a_bad_manifest_gets_one_line_naming_where_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "class.toml").write_text(text)
    result, took = sockspec("batch", "class.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert took < QUICK


def test_a_missing_manifest_and_an_unknown_target_are_usage_problems(tmp_path: Path) -> None:
    result, _ = sockspec("batch", "nowhere.toml", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere.toml: no such manifest" in result.stderr
    (tmp_path / "class.toml").write_text("[[target]]\nname = 'a'\nreference = 'evented'\n")
    result, _ = sockspec("batch", "class.toml", "--target", "zed", cwd=tmp_path)
    assert result.returncode == 2 and "--target zed: no target" in result.stderr
