"""The student guide keeps its promises: its skeleton passes the FRAME area,
a student's asyncio server (tests/servers/asyncio_student.py) reaches `core`
with only the optional features it leaves out UNSUPPORTED, and every template
and option the guide shows is one the suite accepts."""

from __future__ import annotations

import json
import re
import shlex
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from suite import requirements
from suite.targets.factory import PLACEHOLDERS

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "student-guide.md"
SKELETON = "docs/skeleton/server.py"
ASYNCIO_STUDENT = "tests/servers/asyncio_student.py"


def run_suite(template: str, report: Path, *extra: str, timeout: float) -> tuple[dict[str, Any], str]:
    """``sockspec run --cmd TEMPLATE --json REPORT --seed 1``: the report's one target, and the output's tail."""
    command = [
        sys.executable,
        "-m",
        "suite.cli",
        "run",
        "--cmd",
        template,
        "--json",
        str(report),
        "--seed",
        "1",
        *extra,
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    tail = (result.stdout + result.stderr)[-4000:]
    assert report.exists(), f"no JSON report (exit {result.returncode}):\n{tail}"
    return json.loads(report.read_text())["targets"][0], tail


def ids_with(target: dict[str, Any], *verdicts: str) -> list[str]:
    return sorted(r["id"] for r in target["results"] if r["verdict"] in verdicts)


# ---- the skeleton -------------------------------------------------------------------------


def test_the_skeleton_passes_the_core_of_the_frame_area(tmp_path: Path) -> None:
    template = f"{shlex.quote(sys.executable)} {SKELETON} --port {{port}}"
    target, tail = run_suite(template, tmp_path / "report.json", "--only", "CH-FRAME-*", timeout=300)
    assert not ids_with(target, "FAIL", "ERROR"), f"the skeleton fails FRAME:\n{tail}"
    assert ids_with(target, "PASS"), f"nothing passed:\n{tail}"
    # It declares no optional feature, so framed mode's requirements are UNSUPPORTED, not failures.
    framed = sorted(i for i, r in requirements.load().items() if i.startswith("CH-FRAME-") and "framed" in r.features)
    assert ids_with(target, "UNSUPPORTED") == framed


# ---- a student's asyncio server ---------------------------------------------------------------

LEFT_OUT = {"tls", "starttls", "urgent"}  # asyncio cannot see urgent data; no TLS in this server
# Not applicable to its configuration: it declares framed (CH-CMD-15 is for servers that do not)
# and overflow=busy (CH-LIMIT-4 is for queueing servers).
NOT_APPLICABLE = {"CH-CMD-15", "CH-LIMIT-4"}


@pytest.mark.slow
def test_a_students_asyncio_server_reaches_core(tmp_path: Path) -> None:
    template = f"{shlex.quote(sys.executable)} {ASYNCIO_STUDENT} --port {{port}} --idle {{idle}}"
    target, tail = run_suite(template, tmp_path / "report.json", timeout=900)
    assert not ids_with(target, "FAIL", "ERROR"), f"requirements broken:\n{tail}"
    assert target["conformance"] == "core", tail
    server_requirements = {i: r for i, r in requirements.load().items() if r.area != "CLIENT"}
    expected = {i for i, r in server_requirements.items() if LEFT_OUT & set(r.features)} | NOT_APPLICABLE
    assert set(ids_with(target, "UNSUPPORTED")) == expected


# ---- what the guide shows --------------------------------------------------------------------

GUIDE_TEXT = GUIDE.read_text(encoding="utf-8")
TEMPLATE = re.compile(r"--cmd '([^'\n]*)'")
TEMPLATES = TEMPLATE.findall(GUIDE_TEXT)
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
SHORT_OPTION = re.compile(r"(?<![\w-])-[a-zA-Z](?![\w-])")


def sockspec_help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli", *command, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_the_guide_shows_templates() -> None:
    assert len(TEMPLATES) >= 4, "the guide should show the skeleton's, a C, a Node and a TLS template"


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_in_the_guide_uses_only_known_placeholders(template: str) -> None:
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    assert used <= set(PLACEHOLDERS), f"{template!r}: unknown placeholders {sorted(used - set(PLACEHOLDERS))}"
    assert "{port}" in template, f"{template!r}: without {{port}} the suite cannot choose the port"
    shlex.split(template.format(**{name: "x" for name in PLACEHOLDERS}))  # splits as the suite splits it


def test_every_sockspec_option_in_the_guide_exists() -> None:
    server_flags = {flag for template in TEMPLATES for flag in LONG_OPTION.findall(template)}
    outside_templates = re.sub(TEMPLATE, "--cmd ''", GUIDE_TEXT)  # a template's flags are the server's own
    mentioned = set(LONG_OPTION.findall(outside_templates)) - server_flags
    # Short options: on sockspec command lines, and alone in a code span (`-v`).
    for line in outside_templates.splitlines():
        if "sockspec run" in line:
            mentioned |= set(SHORT_OPTION.findall(line))
    mentioned |= set(re.findall(r"`(-[a-zA-Z])`", GUIDE_TEXT))
    offered = set(LONG_OPTION.findall(sockspec_help("run"))) | set(SHORT_OPTION.findall(sockspec_help("run")))
    assert mentioned, "the guide mentions no option at all?"
    assert mentioned <= offered, (
        f"the guide mentions options 'sockspec run' does not have: {sorted(mentioned - offered)}"
    )


def test_every_sockspec_command_in_the_guide_exists() -> None:
    code = re.findall(r"```.*?```|`[^`\n]+`", GUIDE_TEXT, re.DOTALL)  # code blocks and spans, not prose
    mentioned = {name for snippet in code for name in re.findall(r"\bsockspec ([a-z]+)", snippet)}
    commands = set(re.findall(r"^\s{4}([a-z]+)\s", sockspec_help(), re.MULTILINE))
    assert mentioned, "the guide shows no sockspec command?"
    assert mentioned <= commands, (
        f"the guide mentions sockspec commands that do not exist: {sorted(mentioned - commands)}"
    )
