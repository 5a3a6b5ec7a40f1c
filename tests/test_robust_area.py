"""The ROBUST area as a user runs it: at its default size against two
architectures (a reactor and a forking server), with every attack's
measurements in the report; against a server given by address, where the
requirements judged by memory and descriptors are UNSUPPORTED, never a PASS;
--robust-scale making an attack larger, and its bad values refused before
anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.targets.process import ServerProcess
from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]
MEMORY_JUDGED = ("CH-ROBUST-2", "CH-ROBUST-4")


def sockspec(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "suite.cli", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_area_at_its_default_size_passes_two_architectures_and_reports_its_figures(tmp_path: Path) -> None:
    report = tmp_path / "robust.json"
    started = time.monotonic()
    result = sockspec(
        *("run", "--reference", "evented,process-per-connection", "--only", "CH-ROBUST-*"),
        *("-n", "2", "--seed", "3", "--json", str(report)),
    )
    took = time.monotonic() - started
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, tail
    data = json.loads(report.read_text())
    validate_report(data)
    for target in data["targets"]:
        verdicts = {r["id"]: r["verdict"] for r in target["results"]}
        assert verdicts == {f"CH-ROBUST-{n}": "PASS" for n in range(1, 6)}, (target["name"], verdicts)
        measured = {(m["requirement"], m["name"]) for m in target["measurements"]}
        for n in range(1, 6):  # a legitimate client ran beside every attack
            assert (f"CH-ROBUST-{n}", "legitimate client's p99 round trip") in measured, (target["name"], n)
        assert ("CH-ROBUST-1", "GETs executed for a client that never reads") in measured
        assert ("CH-ROBUST-4", "open descriptors, after less before") in measured
    # Two targets on two workers: about one target's minute (measured: 25 to 35 s on two cores).
    assert took < 120, f"the area took {took:.0f} s for two targets"


def test_against_an_address_the_memory_requirements_are_unsupported_with_the_reason(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "reference_servers", "evented", "--port", "0", "--max-connections", "32"]
    with ServerProcess(argv, cwd=str(REPO)) as server:
        endpoint = server.start(timeout=15.0)
        report = tmp_path / "address.json"
        only = ",".join(MEMORY_JUDGED)
        result = sockspec("run", "--address", f"{endpoint.host}:{endpoint.port}", "--only", only, "--json", str(report))
    data = json.loads(report.read_text())
    results = {r["id"]: r for r in data["targets"][0]["results"]}
    for requirement_id in MEMORY_JUDGED:
        assert results[requirement_id]["verdict"] == "UNSUPPORTED", results[requirement_id]
        assert "--address" in results[requirement_id]["detail"], results[requirement_id]["detail"]
    assert data["targets"][0]["unchecked"] == list(MEMORY_JUDGED), "a MUST nobody checked must not pass a gate"
    assert result.returncode == 2, (result.stdout + result.stderr)[-2000:]


def test_robust_scale_makes_the_attacks_larger(tmp_path: Path) -> None:
    report = tmp_path / "scaled.json"
    result = sockspec(
        *("run", "--reference", "evented", "--only", "CH-ROBUST-4", "--robust-scale", "2", "--json", str(report))
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    measured = {m["name"]: m["value"] for m in json.loads(report.read_text())["targets"][0]["measurements"]}
    assert measured["short connections made and closed"] == 2 * 3 * 1500, "twice the default's three rounds of 1,500"


@pytest.mark.parametrize("value", ["0.5", "0", "-2", "nan", "inf", "lots"])
def test_a_bad_robust_scale_gets_one_line_and_exit_2(value: str) -> None:
    result = sockspec("run", "--reference", "evented", "--robust-scale", value, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "--robust-scale" in lines[0], result.stderr
    assert "READY" not in result.stdout
