"""The whole suite against all seven reference servers: every MUST holds.

This is the suite's specificity: a check that fails a correct server is a
bug in the check (or in the server), and either way it shows here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = 7


def test_all_seven_reference_servers_pass_every_must(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # The default workers, as a user gets them (four for a whole run).
    command = [sys.executable, "-m", "suite.cli", "run", "--reference", "all", "--json", str(report)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    tail = (result.stdout + result.stderr)[-6000:]
    data = json.loads(report.read_text())
    validate_report(data)
    broken = [
        f"{target['name']}: {r['id']} {r['verdict']} {r['detail']}"
        for target in data["targets"]
        for r in target["results"]
        if r["verdict"] in ("FAIL", "ERROR", "NON-STRICT")
    ]
    assert not broken, "reference servers fail checks:\n" + "\n".join(broken) + "\n" + tail
    assert result.returncode == 0, tail
    assert len(data["targets"]) == ARCHITECTURES
    assert all(target["conformance"] == "full" for target in data["targets"]), [
        (t["name"], t["conformance"]) for t in data["targets"]
    ]
