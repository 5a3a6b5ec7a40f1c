"""Shards that merge (`sockspec run --shard I/N`, `sockspec merge`), the JSON
report's published schema, and JUnit with times and properties.

The runs are real: a server written the way a student would (socketserver,
with a pipelining bug and a lax INCR) beside a reference server, split in two
shards and in one whole run with the same seed.
"""

from __future__ import annotations

import json
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.report_support import validate_report
from tests.test_front_door import QUICK, REPO, sockspec

STUDENT = REPO / "tests" / "servers" / "no_pipelining_socketserver.py"
SCHEMA_1 = REPO / "tests" / "data" / "report-schema-1.json"  # written by the suite before schema 2
ONLY = "CH-FRAME-1,CH-FRAME-3,CH-FRAME-4,CH-CMD-*,CH-CONC-1,CH-CONC-2"
SEED = "20261205"


@dataclass
class Runs:
    whole: dict[str, Any]
    shards: list[Path]
    whole_path: Path
    junit: Path
    directory: Path


def run_args() -> list[str]:
    student = f"{shlex.quote(sys.executable)} {STUDENT} --port {{port}}"
    return ["run", "--reference", "serial", "--cmd", student, "--name", "student", "--only", ONLY, "--seed", SEED]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    directory = tmp_path_factory.mktemp("shards")
    whole_path, junit = directory / "whole.json", directory / "whole.xml"
    result, _ = sockspec(*run_args(), "--json", str(whole_path), "--junit", str(junit), cwd=directory)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # the student's bugs fail
    shards = []
    for index in (1, 2):
        path = directory / f"shard-{index}.json"
        result, _ = sockspec(*run_args(), "--shard", f"{index}/2", "--json", str(path), cwd=directory)
        assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
        shards.append(path)
    return Runs(json.loads(whole_path.read_text()), shards, whole_path, junit, directory)


def verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(t["name"], r["id"]): r["verdict"] for t in report["targets"] for r in t["results"]}


def checks(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (t["name"], c["nodeid"]): c["verdict"] for t in report["targets"] for r in t["results"] for c in r["checks"]
    }


validate = validate_report


# ---- shards ----------------------------------------------------------------------------------


def test_the_shards_split_the_checks_without_overlap_or_loss(runs: Runs) -> None:
    first, second = (checks(json.loads(path.read_text())) for path in runs.shards)
    assert first and second, "each of two shards gets some checks"
    assert not set(first) & set(second)
    assert set(first) | set(second) == set(checks(runs.whole))


def test_a_shard_claims_no_level_and_says_which_share_it_is(runs: Runs) -> None:
    shard = json.loads(runs.shards[0].read_text())
    assert shard["shard"] == {"index": 1, "count": 2}
    assert all(t["conformance"] is None for t in shard["targets"])
    assert all(t["level"].startswith("shard 1/2") for t in shard["targets"])


def test_two_shards_merge_into_the_verdicts_of_one_whole_run(runs: Runs) -> None:
    merged_path = runs.directory / "merged.json"
    result, _ = sockspec("merge", str(merged_path), *map(str, runs.shards), cwd=runs.directory)
    assert result.returncode == runs.whole["summary"]["exit_code"] == 1, result.stderr
    merged = json.loads(merged_path.read_text())
    assert verdicts(merged) == verdicts(runs.whole)
    assert checks(merged) == checks(runs.whole)
    assert merged["shard"] is None
    whole_targets = {t["name"]: t for t in runs.whole["targets"]}
    for target in merged["targets"]:
        same = whole_targets[target["name"]]
        for key in ("counts", "fix_first", "features", "declared", "level"):
            assert target[key] == same[key], key
    assert "student" in result.stdout and "CH-FRAME-3" in result.stdout  # the terminal summary, as after a run


def test_merge_writes_junit_and_html_too(runs: Runs) -> None:
    out = runs.directory / "merged-with-files"
    out.mkdir()
    html, junit = out / "html", out / "m.xml"
    result, _ = sockspec(
        "merge", str(out / "m.json"), *map(str, runs.shards), "--junit", str(junit), "--html", str(html),
        cwd=runs.directory,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == {"serial", "student"}
    assert (html / "index.html").is_file()


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        (lambda shards, whole: [shards[0]], "shard 2/2 missing"),
        (lambda shards, whole: [shards[0], shards[0]], "are both shard 1/2"),
        (lambda shards, whole: [shards[0], whole], "is a whole run, the others are shards"),
        (lambda shards, whole: [whole, whole], "both checked"),
    ],
    ids=["missing", "twice", "shard-and-whole", "overlap"],
)
def test_merge_refuses_what_is_not_one_run_in_one_line(runs: Runs, pick: Any, message: str) -> None:
    inputs = pick(runs.shards, runs.whole_path)
    result, took = sockspec("merge", str(runs.directory / "refused.json"), *map(str, inputs), cwd=runs.directory)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and took < QUICK
    assert not (runs.directory / "refused.json").exists()


def test_merge_refuses_shards_of_different_seeds(runs: Runs, tmp_path: Path) -> None:
    other = json.loads(runs.shards[1].read_text())
    other["summary"]["seed"] += 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    result, _ = sockspec(
        "merge", str(tmp_path / "m.json"), str(runs.shards[0]), str(tmp_path / "other.json"), cwd=tmp_path
    )
    assert result.returncode == 2 and "different seeds" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON report"),
        ('{"schema": 9}', "not a sockspec JSON report"),
        ('{"schema": 2, "targets": []}', "does not follow report schema 2"),
    ],
)
def test_merge_names_a_bad_input_file(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "in.json").write_text(content)
    result, _ = sockspec("merge", str(tmp_path / "m.json"), str(tmp_path / "in.json"), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "in.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_schema_1_report_is_still_read(tmp_path: Path) -> None:
    old = json.loads(SCHEMA_1.read_text())
    assert old["schema"] == 1
    result, _ = sockspec("merge", str(tmp_path / "m.json"), str(SCHEMA_1), cwd=tmp_path)
    assert result.returncode == old["summary"]["exit_code"], result.stderr
    merged = json.loads((tmp_path / "m.json").read_text())
    validate(merged)
    assert verdicts(merged) == verdicts(old)
    assert merged["summary"]["seed"] == old["summary"]["seed"]


# ---- the schema --------------------------------------------------------------------------------


def test_real_runs_follow_the_published_schema(runs: Runs) -> None:
    validate(runs.whole)
    for path in runs.shards:
        validate(json.loads(path.read_text()))


def test_the_schema_rejects_what_it_does_not_describe(runs: Runs) -> None:
    broken = json.loads(json.dumps(runs.whole))
    broken["targets"][0]["results"][0]["verdict"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    unknown = json.loads(json.dumps(runs.whole))
    unknown["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(unknown)


def test_a_failed_check_carries_its_transcript_as_events(runs: Runs) -> None:
    student = next(t for t in runs.whole["targets"] if t["name"] == "student")
    failed = [c for r in student["results"] if r["verdict"] == "FAIL" for c in r["checks"] if c["verdict"] == "FAIL"]
    assert failed
    with_wire = [c for c in failed if c["failure"] and c["failure"]["transcripts"]]
    assert with_wire, "a FAIL on the wire comes with its bytes"
    events = with_wire[0]["failure"]["transcripts"][0]["events"]
    assert {"TX", "RX"} <= {e["direction"] for e in events}
    assert all(e["at"] >= 0 for e in events)
    assert all(c["explanation"] and c["rerun"].startswith("sockspec run ") for c in failed)


def test_concurrency_checks_record_a_timeline_per_connection(runs: Runs) -> None:
    serial = next(t for t in runs.whole["targets"] if t["name"] == "serial")
    (conc1,) = [r for r in serial["results"] if r["id"] == "CH-CONC-1"]
    (picture,) = conc1["checks"][0]["timelines"]
    assert len(picture["rows"]) == int(serial["declared"]["concurrency"])
    assert picture["bound"] is not None
    conc2 = next(r for r in serial["results"] if r["id"] == "CH-CONC-2")
    rows = conc2["checks"][0]["timelines"][0]["rows"]
    assert len(rows) == int(serial["declared"]["concurrency"]) + 1
    # serial serves one connection at a time: the extra one is not answered within 2 T.
    assert any(bar["end"] is None for row in rows for bar in row["bars"])


# ---- JUnit -----------------------------------------------------------------------------------


def test_junit_has_times_and_names_each_suite_after_its_target(runs: Runs) -> None:
    root = ET.parse(runs.junit).getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"serial", "student"}
    for suite in suites.values():
        cases = suite.findall("testcase")
        assert all(float(str(case.get("time"))) >= 0 for case in cases)
        assert sum(float(str(case.get("time"))) for case in cases) > 0
        assert float(str(suite.get("time"))) > 0
        properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert properties["sockspec.seed"] == SEED
        assert "concurrency=" in str(properties["sockspec.declared"])
        assert properties["sockspec.target"]
    assert float(str(root.get("time"))) >= max(float(str(s.get("time"))) for s in suites.values())


# ---- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--shard", "3/2"), "I must be between 1 and N"),
        (("--shard", "0/2"), "I must be between 1 and N"),
        (("--shard", "half"), "give I/N"),
        (("--name", "a", "--name", "b"), "2 names for 1 --cmd/--address target"),
        (("--name", "../evil"), "letters, digits"),
        (("--name", "serial", "--reference", "serial"), "two targets would have that name"),
        (("--html", "/missing/dir/out"), "no such directory"),
    ],
)
def test_bad_report_options_get_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    student = f"{shlex.quote(sys.executable)} {STUDENT} --port {{port}}"
    result, took = sockspec("run", "--cmd", student, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-1000:]
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert took < QUICK
