"""The suite against the mutant catalogue: every mutant server must fail,
with a failing requirement in each area its bug breaks.

Each run is limited (--only) to the areas the mutant is expected to break,
which keeps the catalogue quick; the full suite against the correct servers
is tests/test_specificity.py.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from suite.targets.factory import reference_template
from tests.mutants import MUTANTS
from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_suite_fails_the_mutant_in_the_expected_area(name: str, tmp_path: Path) -> None:
    mutant = MUTANTS[name]
    program = f"{shlex.quote(sys.executable)} -m tests.mutants {name}"
    report = tmp_path / "report.json"
    only = ",".join(f"CH-{area}-*" for area in mutant.expected_areas)
    command = [
        sys.executable, "-m", "suite.cli", "run",
        "--cmd", reference_template(mutant.arch, program),
        "--only", only,
        "--json", str(report),
        "--seed", "1",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 1, f"expected the suite to fail {name} (exit 1), got exit {result.returncode}:\n{tail}"
    data = json.loads(report.read_text())
    validate_report(data)  # every mutant's run follows the published schema
    results = data["targets"][0]["results"]
    failing = sorted(r["id"] for r in results if r["verdict"] in ("FAIL", "NON-STRICT"))
    errors = sorted(r["id"] for r in results if r["verdict"] == "ERROR")
    assert not errors, f"{name}: harness errors, not verdicts: {errors}\n{tail}"
    for area in mutant.expected_areas:
        assert any(i.startswith(f"CH-{area}-") for i in failing), (
            f"{name} ({mutant.description}): expected a failing requirement in {area}, got {failing}"
        )
