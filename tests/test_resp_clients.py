"""redis-cli, a real RESP client, measured by the RESP2 client checks
(PROTOCOL-RESP2.md, section 12). Its verdicts are what they are, and
docs/resp2.md reports them: this test asserts that each requirement was
judged (no harness ERROR, nothing left UNSUPPORTED), and that the verdicts
are still the ones the table gives, so that the table cannot go stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from suite import requirements
from tests.redis_support import redis_or_skip
from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]
PLAIN = "redis-cli -h {host} -p {port} {cmd}"
TLS = "tls=redis-cli --tls --cacert {ca} -h {host} -p {port} {cmd}"
# docs/resp2.md, "redis-cli 7.0 as a client": no connect or read timeout, and no check of the name.
MEASURED = {
    "R2-CLIENT-1": "PASS",
    "R2-CLIENT-2": "PASS",
    "R2-CLIENT-3": "NON-STRICT",
    "R2-CLIENT-4": "NON-STRICT",
    "R2-CLIENT-5": "PASS",
    "R2-CLIENT-6": "FAIL",
}


def test_redis_cli_is_measured_on_every_resp2_client_requirement(tmp_path: Path) -> None:
    redis_or_skip("redis-cli")
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "suite.cli", "run", "--profile", "resp2", "--client-cmd", PLAIN]
    command += ["--client-cmd-for", TLS, "--json", str(report), "--seed", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    tail = (result.stdout + result.stderr)[-4000:]
    data = json.loads(report.read_text())
    validate_report(data)
    (target,) = data["targets"]
    assert target["kind"] == "client"
    verdicts = {r["id"]: r["verdict"] for r in target["results"]}
    every = {i for i, r in requirements.load(profile="resp2").items() if r.area == "CLIENT"}
    assert set(verdicts) == every, tail
    assert verdicts == MEASURED, f"redis-cli's verdicts changed; update docs/resp2.md:\n{verdicts}\n{tail}"
    assert result.returncode == 1, tail  # R2-CLIENT-6 is a MUST it breaks
