"""What a user reads during and after a run: what to fix first, the summary,
the files, and the progress per area.

The results are built by hand here: this is the suite's own logic for
presenting verdicts, not the judging of a server. The progress display runs
for real, in a pytest subprocess whose standard output is a pipe.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from suite import requirements
from suite.outcome import CheckOutcome
from suite.report import files, roots, terminal
from suite.report.progress import AreaTracker
from suite.report.results import RequirementResult, RunFacts, TargetResult, aggregate
from suite.verdicts import Verdict

REPO = Path(__file__).resolve().parents[1]
NOT_URGENT = "the target does not declare the optional feature 'urgent' (features=framed,tls,starttls)"
NOT_QUEUE = "not applicable: overflow=busy"
ALL_FEATURES = "framed,tls,starttls,urgent"


def result(requirement_id: str, verdict: Verdict, detail: str = "") -> RequirementResult:
    spec = requirements.get(requirement_id)
    return RequirementResult(spec.id, spec.level, spec.title, spec.feature, verdict, detail, [])


def target(results: list[RequirementResult], features: str = ALL_FEATURES, name: str = "evented") -> TargetResult:
    for r in results:
        r.may_follow_from = roots.may_follow_from(r, results)
    return TargetResult(name, f"--reference {name}", {"features": features}, results)


def core_passes_urgent_undeclared() -> TargetResult:
    return target(
        [
            result("CH-FRAME-2", Verdict.PASS),
            result("CH-FRAME-8", Verdict.PASS),
            result("CH-CMD-2", Verdict.PASS),
            result("CH-LIMIT-4", Verdict.UNSUPPORTED, NOT_QUEUE),
            result("CH-URGENT-3", Verdict.UNSUPPORTED, NOT_URGENT),
            result("CH-URGENT-4", Verdict.UNSUPPORTED, NOT_URGENT),
            result("CH-URGENT-5", Verdict.UNSUPPORTED, NOT_URGENT),
            result("CH-TLS-1", Verdict.PASS),
            result("CH-TLS-4", Verdict.FAIL, "STARTTLS got no +OK"),
        ],
        features="framed,tls,starttls",
    )


def pipelining_breaks() -> TargetResult:
    return target(
        [
            result("CH-FRAME-2", Verdict.PASS),
            result("CH-FRAME-17", Verdict.FAIL, "the second reply never came"),
            result("CH-LIFE-7", Verdict.FAIL, "SLEEP answered nothing"),
            result("CH-URGENT-3", Verdict.PASS),
        ]
    )


def plain(text: str) -> list[str]:
    return text.splitlines()


# ---- what to fix first ---------------------------------------------------------------------------


def test_fix_first_puts_the_failing_prerequisites_first_then_the_first_fail_of_each_area() -> None:
    failing = [
        result(i, Verdict.FAIL)
        for i in ("CH-STORE-3", "CH-CMD-5", "CH-FRAME-17", "CH-STORE-1", "CH-ERR-3", "CH-CMD-2", "CH-FRAME-2")
    ]
    passing = [result("CH-FRAME-1", Verdict.PASS), result("CH-LIFE-3", Verdict.NON_STRICT)]
    order = [r.id for r in roots.fix_first(failing + passing)]
    # prerequisites in their declared order, then ERR and STORE by their first FAIL
    assert order == ["CH-FRAME-2", "CH-CMD-2", "CH-FRAME-17", "CH-ERR-3", "CH-STORE-1"]


def test_pipelining_is_a_prerequisite_of_the_framing_checks_only() -> None:
    """Outside FRAME a check asks one request at a time: a server that cannot
    pipeline does not make a CMD or LIFE failure an echo of CH-FRAME-17."""
    results = [result(i, Verdict.FAIL) for i in ("CH-FRAME-17", "CH-FRAME-19", "CH-CMD-8", "CH-LIFE-9", "CH-LIFE-7")]
    by_id = {r.id: r for r in results}
    assert roots.may_follow_from(by_id["CH-FRAME-19"], results) == ["CH-FRAME-17"]
    assert roots.may_follow_from(by_id["CH-CMD-8"], results) == []
    assert roots.may_follow_from(by_id["CH-LIFE-9"], results) == []
    # CH-LIFE-7 pipelines a request behind a SLEEP on purpose
    assert roots.may_follow_from(by_id["CH-LIFE-7"], results) == ["CH-FRAME-17"]


def test_a_fail_may_follow_from_a_failing_prerequisite_but_not_from_a_later_one() -> None:
    results = [
        result("CH-FRAME-2", Verdict.PASS),
        result("CH-CMD-2", Verdict.FAIL),
        result("CH-FRAME-17", Verdict.FAIL),
        result("CH-CMD-5", Verdict.FAIL),
        result("CH-CMD-6", Verdict.PASS),
    ]
    by_id = {r.id: r for r in results}
    assert roots.blamed_on(by_id["CH-CMD-5"], results) == "CH-CMD-2"
    assert roots.may_follow_from(by_id["CH-CMD-5"], results) == ["CH-CMD-2"]
    assert roots.blamed_on(by_id["CH-FRAME-17"], results) == "CH-CMD-2"
    assert roots.blamed_on(by_id["CH-CMD-2"], results) is None  # nothing declared before it fails
    assert roots.blamed_on(by_id["CH-CMD-6"], results) is None  # a PASS follows from nothing


def test_a_client_fail_is_never_blamed_on_a_server_prerequisite() -> None:
    results = [result("CH-FRAME-2", Verdict.FAIL), result("CH-CLIENT-8", Verdict.FAIL)]
    assert roots.blamed_on(results[1], results) is None
    results.append(result("CH-CLIENT-11", Verdict.FAIL))
    assert roots.blamed_on(results[1], results) == "CH-CLIENT-11"


def test_aggregate_records_what_each_fail_may_follow_from_and_the_json_carries_it() -> None:
    outcomes = [
        CheckOutcome("suite/checks/test_frame.py::test_lf[t]", "t", ["CH-FRAME-2"], Verdict.FAIL, "no reply"),
        CheckOutcome("suite/checks/test_cmd.py::test_get[t]", "t", ["CH-CMD-5"], Verdict.FAIL, "no reply"),
        CheckOutcome("suite/checks/test_frame.py::test_max[t]", "t", ["CH-FRAME-5"], Verdict.FAIL, "no reply"),
        CheckOutcome("suite/checks/test_cmd.py::test_ping[t]", "t", ["CH-CMD-2"], Verdict.PASS),
    ]
    (only,) = aggregate(outcomes)
    by_id = {r.id: r for r in only.results}
    assert by_id["CH-FRAME-5"].may_follow_from == ["CH-FRAME-2"]
    assert by_id["CH-FRAME-5"].to_json()["may_follow_from"] == ["CH-FRAME-2"]
    assert by_id["CH-CMD-5"].may_follow_from == [], "CMD checks end their requests with CRLF, not a bare LF"
    assert by_id["CH-FRAME-2"].may_follow_from == []


def test_areas_and_requirements_sort_in_the_specs_order() -> None:
    assert roots.area_of("suite/checks/test_frame.py::test_bare_lf[evented]") == "FRAME"
    assert roots.area_of("suite/checks/test_client_tls.py::test_sni[client]") == "CLIENT"
    assert roots.area_of("test_timeout.py::test_idle") == "TIMEOUT"
    ids = ["CH-CLIENT-1", "CH-CMD-1", "CH-FRAME-10", "CH-FRAME-2", "CH-LIFE-1", "CH-ERR-9"]
    assert sorted(ids, key=roots.spec_order) == [
        "CH-FRAME-2",
        "CH-FRAME-10",
        "CH-CMD-1",
        "CH-ERR-9",
        "CH-LIFE-1",
        "CH-CLIENT-1",
    ]
    assert roots.area_rank("FRAME") < roots.area_rank("CLIENT") < roots.area_rank("NOT-AN-AREA")


def test_every_prerequisite_is_a_requirement_of_the_spec() -> None:
    for requirement_id, areas, why in roots.PREREQUISITES:
        assert requirements.get(requirement_id).level == "MUST", requirement_id
        for area in areas:  # every area a name, every requirement a real ID
            assert area == "*" or area in roots.AREA_ORDER or requirements.get(area), (requirement_id, area)
        assert why


# ---- the summary ---------------------------------------------------------------------------------


def test_unsupported_requirements_are_one_line_per_reason() -> None:
    text = terminal.render([core_passes_urgent_undeclared()], verbose=False, color=False)
    unwrapped = " ".join(line.strip() for line in text.splitlines())
    assert unwrapped.count(NOT_URGENT) == 1
    assert f"{NOT_URGENT}: CH-URGENT-3, CH-URGENT-4, CH-URGENT-5 " in unwrapped
    assert unwrapped.count(NOT_QUEUE) == 1
    assert f"{NOT_QUEUE}: CH-LIMIT-4 " in unwrapped
    assert "UNSUPPORTED (4), by reason:" in text
    assert not re.search(r"│ CH-URGENT-\d", text)  # not rows of the table


def test_the_features_line_names_the_passed_failed_and_undeclared_features() -> None:
    text = terminal.render([core_passes_urgent_undeclared()], verbose=False, color=False)
    assert "Optional features: passed framed, tls; failed starttls; not declared urgent" in text


def test_the_level_line_says_why() -> None:
    core = terminal.render([core_passes_urgent_undeclared()], verbose=False, color=False)
    assert (
        "Level: core: every MUST outside the optional features holds; `urgent` is not declared; "
        "CH-TLS-4 (MUST, starttls) fails" in core
    )
    none = terminal.render([pipelining_breaks()], verbose=False, color=False)
    assert "Level: none: CH-FRAME-17, CH-LIFE-7 (MUST) fail" in none
    full = target([result("CH-FRAME-2", Verdict.PASS), result("CH-URGENT-3", Verdict.PASS)])
    assert "Level: full: every MUST holds" in terminal.render([full], verbose=False, color=False)


def test_the_summary_opens_with_fix_first_and_marks_what_may_follow() -> None:
    lines = plain(terminal.render([pipelining_breaks()], verbose=False, color=False))
    start = lines.index("Fix first:")
    # the prerequisite first, then the first FAIL of the next area
    assert [line.split()[0] for line in lines[start + 1 : start + 3]] == ["CH-FRAME-17", "CH-LIFE-7"]
    assert "the second reply never came" in lines[start + 1]
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("did not pass (2)")) :]
    cmd_row = next(i for i, line in enumerate(table) if "CH-LIFE-7" in line)
    row = " ".join(line.split("│")[-2].strip() for line in table[cmd_row:] if line.startswith("│"))
    assert "(may follow from CH-FRAME-17)" in row
    assert all(len(line) <= terminal.WIDTH for line in lines)


def test_a_partial_run_is_labelled_and_never_graded() -> None:
    text = terminal.render([pipelining_breaks()], verbose=False, color=False, only=["CH-FRAME-*"])
    label = "partial (--only CH-FRAME-*): no conformance level is given for a partial run"
    assert label in text
    assert f"Level: {label}" in text
    assert "Level: none" not in text
    assert not re.search(r"│ (full|core|none)\s+│", text)


def test_an_interrupted_run_is_labelled_and_gets_no_level() -> None:
    whole = target([result("CH-FRAME-2", Verdict.PASS), result("CH-URGENT-3", Verdict.PASS)])
    text = terminal.render([whole], verbose=False, color=False, interrupted=True)
    assert "Level: interrupted: results are incomplete; no level" in text
    assert not re.search(r"│ (full|core|none)\s+│", text)
    assert "full" not in text


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in terminal.render([pipelining_breaks()], verbose=False, color=False)
    assert "\x1b[" in terminal.render([pipelining_breaks()], verbose=False, color=True)


# ---- the files -----------------------------------------------------------------------------------


def test_the_json_of_a_whole_run_gives_the_level_and_says_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    files.write_json(str(path), [core_passes_urgent_undeclared()], RunFacts(seed=7))
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["schema"] == 2
    jsonschema.Draft202012Validator(files.schema()).validate(report)
    assert report["interrupted"] is False and report["partial"] is None
    (only,) = report["targets"]
    assert only["conformance"] == "core"
    assert only["level"].startswith("core: every MUST outside the optional features holds")
    assert only["features"] == {
        "framed": "passed",
        "tls": "passed",
        "starttls": "failed",
        "urgent": "not declared",
    }
    assert only["fix_first"] == ["CH-TLS-4"]
    assert report["summary"]["exit_code"] == 1


def test_the_json_of_an_interrupted_run_has_no_level_and_never_exit_code_0(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    passing = target([result("CH-FRAME-2", Verdict.PASS), result("CH-URGENT-3", Verdict.PASS)])
    files.write_json(str(path), [passing], RunFacts(interrupted=True))
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["interrupted"] is True
    assert report["targets"][0]["conformance"] is None
    assert report["targets"][0]["level"] == "interrupted: results are incomplete; no level"
    assert report["summary"]["exit_code"] == 130


def test_the_json_of_a_partial_run_names_the_selection_and_has_no_level(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    files.write_json(str(path), [pipelining_breaks()], RunFacts(only=["CH-FRAME-*", "CH-CMD-5"]))
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["partial"] == {"only": ["CH-FRAME-*", "CH-CMD-5"]}
    assert report["targets"][0]["conformance"] is None
    assert report["summary"]["exit_code"] == 1  # a FAIL in the part that ran still fails the run


def test_junit_carries_the_runs_standing(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    files.write_junit(str(path), [pipelining_breaks()], RunFacts(only=["CH-FRAME-*"]))
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["sockspec.only"] == "CH-FRAME-*"
    assert str(properties["sockspec.level"]).startswith("partial (--only CH-FRAME-*)")
    failure = next(case for case in suite.iter("testcase") if "CH-LIFE-7" in str(case.get("name"))).find("failure")
    assert failure is not None and "may follow from CH-FRAME-17" in str(failure.text)


# ---- progress ------------------------------------------------------------------------------------


def test_the_tracker_reports_an_area_when_it_completes_with_a_failure() -> None:
    tracker = AreaTracker(targets=["a", "b"])
    tracker.expect(
        [
            "suite/checks/test_frame.py::test_x[a]",
            "suite/checks/test_frame.py::test_x[b]",
            "suite/checks/test_cmd.py::test_y[a]",
            "suite/checks/test_cmd.py::test_y[b]",
        ]
    )
    tracker.expect(["suite/checks/test_frame.py::test_x[a]"])  # a second worker's list changes nothing
    assert tracker.record("suite/checks/test_frame.py::test_x[a]", failed=True) is None  # b still to come
    assert tracker.record("suite/checks/test_frame.py::test_x[b]", failed=False) == "FRAME"
    assert tracker.record("suite/checks/test_cmd.py::test_y[b]", failed=False) is None
    assert tracker.record("suite/checks/test_cmd.py::test_y[a]", failed=False) is None  # complete, no failure
    lines = [count.line(0.0) for count in tracker.ordered()]
    assert [line.split()[:2] for line in lines] == [["FRAME", "a"], ["FRAME", "b"], ["CMD", "a"], ["CMD", "b"]]
    assert "1/1 checks  1 failed" in lines[0]


# As `sockspec run` does it: one Progress, configured by pytest; on xdist
# workers it stays inert, and the controller shows the workers' checks.
PROGRESS_CONFTEST = """
from suite.report.progress import Progress

def pytest_configure(config):
    config.pluginmanager.register(Progress(), "sockspec-progress")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_progress_on_a_pipe_is_one_line_per_area(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makeconftest(PROGRESS_CONFTEST)
    pytester.makepyfile(
        test_frame="def test_a(): pass\ndef test_b(): assert False\ndef test_c(): pass\n",
        test_cmd="import pytest\ndef test_d(): pass\ndef test_e(): pytest.skip('not declared')\n",
        test_client_tls="import pytest\n@pytest.fixture\ndef broken(): raise RuntimeError\ndef test_f(broken): pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *workers)
    lines = result.stdout.lines
    areas = {line.split()[0]: line for line in lines if re.match(r"^[A-Z]+ +\d+/\d+ checks", line)}
    assert set(areas) == {"FRAME", "CMD", "CLIENT"}, lines
    if not workers:  # each line comes as its area completes: the modules run in the order of their names
        assert list(areas) == ["CLIENT", "CMD", "FRAME"]
    assert re.match(r"FRAME +3/3 checks  1 failed  \d+\.\d s$", areas["FRAME"])
    assert re.match(r"CMD +2/2 checks  0 failed", areas["CMD"])
    assert re.match(r"CLIENT +1/1 checks  1 failed", areas["CLIENT"])  # a setup error counts as failed
    assert not any(re.fullmatch(r"[.FsE]+(\s+\[\s*\d+%\])?", line.strip()) for line in lines if line.strip())
    result.assert_outcomes(passed=3, failed=1, skipped=1, errors=1)


def sockspec(*args: str, deadline: float = 240) -> subprocess.CompletedProcess[str]:
    """The command with standard output a pipe, in its own process group,
    which is ended (with the servers it started) if it outlives the deadline."""
    with subprocess.Popen(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_sockspec_run_on_a_pipe_shows_each_area_once_and_labels_the_partial_run(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = sockspec("run", "--reference", "evented", "--only", "CH-CMD-*", "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    areas = [line for line in lines if re.match(r"^[A-Z]+ +\d+/\d+ checks", line)]
    assert [line.split()[0] for line in areas].count("CMD") == 1, lines
    for line in areas:  # every area that ran is complete, with its time
        assert re.match(r"^[A-Z]+ +(\d+)/\1 checks  0 failed  \d+\.\d s$", line), line
    assert not any(re.fullmatch(r"[.FsE]+(\s+\[\s*\d+%\])?", line.strip()) for line in lines if line.strip())
    assert "Level: partial (--only CH-CMD-*): no conformance level is given for a partial run" in result.stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["partial"] == {"only": ["CH-CMD-*"]}
    assert data["targets"][0]["conformance"] is None


def test_ctrl_c_mid_run_gives_an_interrupted_report_and_exit_130(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with subprocess.Popen(
        [sys.executable, "-m", "suite.cli", "run", "--reference", "evented", "--json", str(report)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            assert process.stdout is not None
            first = _first_area_line(process.stdout, deadline=time.monotonic() + 120)
            assert first is not None, "no area completed within 120 s"
            os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
            out, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    assert process.returncode == 130, out[-4000:]
    assert "Level: interrupted: results are incomplete; no level" in out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert [t["conformance"] for t in data["targets"]] == [None]
    assert data["summary"]["exit_code"] == 130


def _first_area_line(stream: Any, deadline: float) -> str | None:
    """Reads the pipe until a line says an area completed, or the deadline
    passes. Reads the descriptor itself: a buffered reader could hold the
    line while select waits for more."""
    fd = stream.fileno()
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            seen += chunk
            match = re.search(rb"^[A-Z]+ +\d+/\d+ checks.*$", seen, re.MULTILINE)
            if match:
                return match.group().decode()
    return None


# ---- a level is claimed only for what was checked ----------------------------------------------

NO_DOCKER = "no Docker engine answers: the DNS scenarios need one (or --no-dns was given)"


def test_a_core_must_that_could_not_be_checked_withholds_every_level_and_fails_the_gate() -> None:
    client = target(
        [
            result("CH-CLIENT-1", Verdict.UNSUPPORTED, NO_DOCKER),
            result("CH-CLIENT-2", Verdict.UNSUPPORTED, NO_DOCKER),
            result("CH-CLIENT-7", Verdict.PASS),
            result("CH-CLIENT-21", Verdict.PASS),
        ],
        name="client",
    )
    assert client.conformance() == "unchecked"
    assert [r.id for r in client.unchecked()] == ["CH-CLIENT-1", "CH-CLIENT-2"]
    line = client.level_explained()
    assert line.startswith("unchecked: every MUST that was checked holds, but CH-CLIENT-1, CH-CLIENT-2 (MUST)")
    assert NO_DOCKER in line
    assert files.exit_code([client], RunFacts()) == 2, "an unchecked MUST must not pass a CI gate"
    assert files.exit_code([client], RunFacts(allow_unchecked=True)) == 0
    assert files.to_json([client], RunFacts())["targets"][0]["unchecked"] == ["CH-CLIENT-1", "CH-CLIENT-2"]


def test_not_applicable_and_undeclared_features_are_not_unchecked() -> None:
    server = core_passes_urgent_undeclared()
    assert server.unchecked() == []
    assert server.conformance() == "core"
    full = target([result("CH-FRAME-2", Verdict.PASS), result("CH-LIMIT-4", Verdict.UNSUPPORTED, NOT_QUEUE)])
    assert full.conformance() == "full"
    assert files.exit_code([full], RunFacts()) == 0


def test_a_declared_feature_whose_must_could_not_be_checked_is_never_full() -> None:
    no_port = "the target has no implicit-TLS port: the READY line announced no tls= port, although INFO declares tls"
    server = target(
        [result("CH-FRAME-2", Verdict.PASS), result("CH-TLS-1", Verdict.UNSUPPORTED, no_port)],
        features=ALL_FEATURES,
    )
    assert server.conformance() == "core"
    assert "CH-TLS-1 (MUST) could not be checked" in server.level_explained()
    assert files.exit_code([server], RunFacts()) == 2


def test_a_transcript_in_the_json_keeps_exact_bytes_but_never_megabytes() -> None:
    import base64

    from suite.report.explain import JSON_EVENT_BYTES, transcript_events
    from suite.wire import Transcript

    transcript = Transcript()
    transcript.add("TX", b"\x00\xff" * (1 << 20))  # a megabyte-long payload behind a 4 GiB claim
    transcript.add("RX", b"-ERR TOOLONG\r\n")
    big, small = transcript_events(transcript)["events"]
    assert big["size"] == 2 << 20 and len(base64.b64decode(big["base64"])) == JSON_EVENT_BYTES
    assert base64.b64decode(small["base64"]) == b"-ERR TOOLONG\r\n" and small["size"] == 14
