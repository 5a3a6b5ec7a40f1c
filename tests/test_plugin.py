"""The plugin's own behaviour: options, verdicts, exit codes, reports.

Each test writes a few tiny checks into a scratch directory and runs pytest
on them against a real reference server (evented), so the verdict paths are
exercised end to end over real sockets.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

CHECKS = """
from suite.api import requirement, informational, HarnessError
from suite.targets.base import Target

@requirement("CH-CMD-2")
def test_ping_passes(target: Target) -> None:
    with target.connect() as c:
        c.send(b"PING\\r\\n")
        c.expect_line(b"+PONG\\r\\n")

@requirement("CH-CMD-3")
def test_echo_expectation_is_wrong_on_purpose(target: Target) -> None:
    with target.connect() as c:
        c.send(b"ECHO abc\\r\\n")
        c.expect_line(b"$abd\\r\\n")

@requirement("CH-TIMEOUT-2")
def test_a_should_that_fails(target: Target) -> None:
    with target.connect() as c:
        c.send(b"PING\\r\\n")
        c.expect_line(b"+PANG\\r\\n")

@requirement("CH-CMD-6")
def test_the_harness_breaks(target: Target) -> None:
    raise HarnessError("the suite could not do its part")

@requirement("CH-URGENT-3")
def test_needs_the_urgent_feature(target: Target) -> None:
    pass

@informational
@requirement("CH-CONC-1")
def test_measures(target: Target, measure) -> None:
    measure("observed concurrency", 32, "requests")
"""


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    pytester.makepyfile(test_checks=CHECKS)
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    return runner("-p", "no:cacheprovider", "--reference", "evented", *args)


def verdicts(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as file:
        report = json.load(file)
    return {r["id"]: r["verdict"] for t in report["targets"] for r in t["results"]}


def test_every_verdict_lands_in_the_json_report(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.json"
    result = run(pytester, "--declare", "features=framed,tls,starttls", "--json", str(out))
    assert verdicts(str(out)) == {
        "CH-CMD-2": "PASS",
        "CH-CMD-3": "FAIL",
        "CH-TIMEOUT-2": "NON-STRICT",
        "CH-CMD-6": "ERROR",
        "CH-URGENT-3": "UNSUPPORTED",
        "CH-CONC-1": "INFO",
    }
    assert result.ret == 2, "a harness ERROR makes the exit code 2"


def test_a_failing_must_exits_1_and_explains_with_the_bytes(pytester: pytest.Pytester) -> None:
    result = run(pytester, "-k", "ping_passes or wrong_on_purpose")
    assert result.ret == 1
    text = result.stdout.str()
    assert "CH-CMD-3 (MUST) — ECHO returns the rest of the payload verbatim" in text
    assert "expected: $abd\\r\\n" in text
    assert "actual:   $abc\\r\\n" in text
    # the caret sits under the first unexpected byte: "c" at offset 3
    caret_line = next(line for line in text.splitlines() if "first unexpected byte (offset 3)" in line)
    actual_line = text.splitlines()[text.splitlines().index(caret_line) - 1]
    assert actual_line[caret_line.index("^")] == "c"
    assert "TX        ECHO abc\\r\\n" in text and "RX        $abc\\r\\n" in text
    assert "Re-run just this case: sockspec run --reference evented --only CH-CMD-3 -k" in text and "--seed" in text


def test_passing_checks_exit_0(pytester: pytest.Pytester) -> None:
    result = run(pytester, "-k", "ping_passes or measures")
    assert result.ret == 0


def test_a_broken_should_fails_the_run_only_when_strict(pytester: pytest.Pytester) -> None:
    assert run(pytester, "-k", "ping_passes or a_should").ret == 0
    assert run(pytester, "-k", "ping_passes or a_should", "--sockspec-strict").ret == 1


def test_an_undeclared_feature_is_unsupported_not_passed(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.json"
    result = run(pytester, "-k", "urgent", "--declare", "features=framed", "--json", str(out))
    assert verdicts(str(out)) == {"CH-URGENT-3": "UNSUPPORTED"}
    result.assert_outcomes(skipped=1)
    assert result.ret == 0


def test_junit_files_broken_requirements_as_failures_and_harness_problems_as_errors(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.xml"
    run(pytester, "--junit", str(out))
    cases = {case.get("name", "").split(" ")[0]: case for case in ET.parse(out).getroot().iter("testcase")}
    assert cases["CH-CMD-3"].find("failure") is not None and cases["CH-CMD-3"].find("error") is None
    assert cases["CH-CMD-6"].find("error") is not None
    assert cases["CH-CMD-2"].find("failure") is None and cases["CH-CMD-2"].find("error") is None
    assert cases["CH-TIMEOUT-2"].find("failure") is None, "NON-STRICT is not a failure unless strict"


def test_pytest_names_an_error_verdict_an_error_not_a_failed_check(pytester: pytest.Pytester) -> None:
    result = run(pytester, "-rfE")
    output = result.stdout.str()
    assert "ERROR test_checks.py::test_the_harness_breaks[evented]" in output, output[-3000:]
    assert "FAILED test_checks.py::test_the_harness_breaks" not in output
    assert "FAILED test_checks.py::test_echo_expectation_is_wrong_on_purpose[evented]" in output
    result.assert_outcomes(passed=4, failed=1, errors=1)


def test_only_selects_checks_by_requirement_id(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.json"
    run(pytester, "--only", "CH-CMD-2,CH-CONC-*", "--json", str(out))
    assert set(verdicts(str(out))) == {"CH-CMD-2", "CH-CONC-1"}


def test_usage_errors_exit_2_with_a_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    for args, message in (
        ((), "no target"),
        (("--reference", "nope"), "unknown architecture"),
        (("--address", "no-port"), "HOST:PORT"),
        (("--reference", "evented", "--declare", "oops"), "KEY=VALUE"),
        (("--reference", "evented", "--only", "CH-NOPE-*"), "no requirement matches"),
        (("--reference", "evented", "--declare", "features=bogus"), "unknown feature"),
        (("--reference", "evented", "--json", "/missing/dir/out.json"), "no such directory"),
    ):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        assert result.ret == 2, (args, result.ret)
        assert message in result.stdout.str() + result.stderr.str(), args


def test_a_target_that_cannot_start_is_explained_once_before_any_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--cmd", "python3 -c 'import sys; sys.exit(3)'", "--ready-timeout", "5"
    )
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, output
    assert output.count("status 3") == 1, output
    assert "passed" not in output and "failed" not in output, "no check runs against a target that cannot start"


def test_results_are_the_same_under_xdist(pytester: pytest.Pytester) -> None:
    out = pytester.path / "out.json"
    run(pytester, "-n", "2", "--declare", "features=framed", "--json", str(out), "--seed", "7", subprocess=True)
    report = json.loads(out.read_text())
    assert report["summary"]["seed"] == 7
    assert {r["id"]: r["verdict"] for r in report["targets"][0]["results"]} == {
        "CH-CMD-2": "PASS",
        "CH-CMD-3": "FAIL",
        "CH-TIMEOUT-2": "NON-STRICT",
        "CH-CMD-6": "ERROR",
        "CH-URGENT-3": "UNSUPPORTED",
        "CH-CONC-1": "INFO",
    }


@pytest.mark.parametrize("workers", [(), ("-n", "2")])
def test_a_check_module_that_cannot_be_imported_is_never_a_pass(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_broken="def broken(:\n")
    result = run(pytester, "--only", "CH-CMD-2", *workers, subprocess=True)
    assert result.ret == 2, result.stdout.str()[-2000:]
