"""The client checks judged themselves: the reference client passes every one
of them, here and in both images, and every client mutant fails the
requirements its bug breaks.

The DNS scenarios need Docker; without it these tests skip (and fail in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from suite import requirements
from suite.clients.spec import MAIN, REFERENCE_FLAGS, reference_template
from tests.client_mutants import CLIENT_MUTANTS
from tests.docker_support import docker_or_skip
from tests.report_support import validate_report

REPO = Path(__file__).resolve().parents[1]
CLIENT_IDS = sorted(
    (i for i, r in requirements.load().items() if r.area == "CLIENT"), key=lambda i: int(i.rsplit("-", 1)[1])
)


def _run(args: list[str], report: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    command = [sys.executable, "-m", "suite.cli", "run", *args, "--json", str(report), "--seed", "1"]
    environment = {**os.environ, **(env or {})}
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False, env=environment
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert report.exists(), f"no report (exit {result.returncode}):\n{tail}"
    data = json.loads(report.read_text())
    validate_report(data)
    return result.returncode, data, tail


def _client_args(program: str) -> list[str]:
    """--client-cmd and --client-cmd-for for a program with the reference client's flags."""
    args: list[str] = []
    for feature, flags in REFERENCE_FLAGS.items():
        template = reference_template(program, flags)  # requests as -c flags: several can be passed
        args += ["--client-cmd", template] if feature == MAIN else ["--client-cmd-for", f"{feature}={template}"]
    return args


def test_the_reference_client_passes_every_client_check_here_and_in_both_images(tmp_path: Path) -> None:
    docker_or_skip()
    code, data, tail = _run(["--client-reference", "--client-image", "all", "-n", "2"], tmp_path / "report.json")
    targets = {t["name"]: t for t in data["targets"]}
    assert set(targets) == {"client-reference", "client@bookworm", "client@trixie"}, tail
    for name, target in targets.items():
        assert target["kind"] == "client"
        verdicts = {r["id"]: (r["verdict"], r["detail"]) for r in target["results"]}
        assert sorted(verdicts, key=lambda i: int(i.rsplit("-", 1)[1])) == CLIENT_IDS, name
        not_passed = {i: v for i, v in verdicts.items() if v[0] != "PASS"}
        assert not not_passed, f"{name}: {not_passed}\n{tail}"
        assert target["conformance"] == "full", name
    matrix = data["matrix"]
    assert {(c["arch"], c["image"]) for c in matrix["cells"]} == {
        ("reference-client", "bookworm"),
        ("reference-client", "trixie"),
    }
    assert code == 0, tail


def test_a_client_that_speaks_tls_in_every_scenario_passes_too(tmp_path: Path) -> None:
    """One template with {ca} for everything: the suite's servers meet TLS in
    the DNS, timeout, truncation, framed and urgent scenarios as well."""
    docker_or_skip()
    program = "python3 -m reference_client --tls --ca {ca}"
    args = ["--client-cmd", reference_template(program, "")]
    args += ["--client-cmd-for", f"framed={reference_template(program, '--framed ')}"]
    args += ["--client-cmd-for", f"urgent={reference_template(program, '--abort-after 150 ')}"]
    starttls = reference_template("python3 -m reference_client", "--starttls --ca {ca} ")
    args += ["--client-cmd-for", f"starttls={starttls}"]
    code, data, tail = _run([*args, "-n", "2"], tmp_path / "report.json")
    (target,) = data["targets"]
    not_passed = {r["id"]: (r["verdict"], r["detail"]) for r in target["results"] if r["verdict"] != "PASS"}
    assert not not_passed, f"{not_passed}\n{tail}"
    assert len(target["results"]) == len(CLIENT_IDS)
    assert code == 0, tail


@pytest.mark.parametrize(
    ("flags", "env", "reason"),
    [
        (["--no-dns"], {}, "--no-dns was given"),
        ([], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "no Docker engine answers"),
    ],
    ids=["no-dns", "no-engine"],
)
def test_without_docker_the_dns_scenarios_are_unsupported_with_the_reason(
    tmp_path: Path, flags: list[str], env: dict[str, str], reason: str
) -> None:
    dns_ids = [f"CH-CLIENT-{n}" for n in range(1, 6)]
    code, data, tail = _run(
        ["--client-reference", *flags, "--only", ",".join(dns_ids)], tmp_path / "report.json", env=env
    )
    results = {r["id"]: r for r in data["targets"][0]["results"]}
    for result in (results[i] for i in dns_ids):
        assert result["verdict"] == "UNSUPPORTED" and reason in result["detail"], (result, tail)
    assert data["targets"][0]["unchecked"] == dns_ids, tail
    assert code == 2, f"MUSTs that could not be checked are no pass: expected exit 2\n{tail}"


def test_a_plaintext_client_whose_template_takes_a_ca_is_not_failed_on_tls(tmp_path: Path) -> None:
    """{ca} alone is no promise of TLS: a client that then speaks plaintext
    offers no TLS (UNSUPPORTED); only an explicit TLS template makes it a failure."""
    template = "python3 -m reference_client --ca {ca} {host} {port} {cmd}"
    code, data, tail = _run(["--client-cmd", template, "--only", "CH-CLIENT-14", "--no-dns"], tmp_path / "a.json")
    assert [r["verdict"] for r in data["targets"][0]["results"]] == ["UNSUPPORTED"], tail
    assert code == 0, tail
    insisting = ["--client-cmd", template, "--client-cmd-for", f"tls={template}"]
    code, data, tail = _run([*insisting, "--only", "CH-CLIENT-14", "--no-dns"], tmp_path / "b.json")
    assert [r["verdict"] for r in data["targets"][0]["results"]] == ["FAIL"], tail
    assert code == 1, tail


@pytest.mark.parametrize("name", sorted(CLIENT_MUTANTS))
def test_the_client_checks_fail_the_mutant_on_its_requirements(name: str, tmp_path: Path) -> None:
    docker_or_skip()
    mutant = CLIENT_MUTANTS[name]
    args = _client_args(f"python3 -m tests.client_mutants {name}")
    code, data, tail = _run([*args, "--only", ",".join(mutant.requirements)], tmp_path / "report.json")
    (target,) = data["targets"]
    verdicts = {r["id"]: r["verdict"] for r in target["results"]}
    errors = [i for i, v in verdicts.items() if v == "ERROR"]
    assert not errors, f"{name}: harness errors, not verdicts: {errors}\n{tail}"
    for requirement_id in mutant.requirements:
        assert verdicts.get(requirement_id) == "FAIL", (
            f"{name} ({mutant.description}): expected {requirement_id} to FAIL, got {verdicts}\n{tail}"
        )
    assert code == 1, tail
