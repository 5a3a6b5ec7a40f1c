"""The CI examples (examples/) and docs/ci.md stay true: every workflow file
parses as YAML, the GitHub workflow shards, merges and keeps its reports, the
GitLab job does the same with ``parallel``, and every ``sockspec`` command in
a workflow script or a shell block of docs/ci.md is one the real parser
accepts. The commands are parsed only, never run."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from suite import configuration
from suite.cli import _parser
from suite.configuration import UsageProblem

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GITHUB_WORKFLOW = EXAMPLES / "github-actions" / "sockspec.yml"
GITLAB_JOBS = EXAMPLES / "gitlab-ci" / "sockspec.gitlab-ci.yml"
CI_DOC = REPO / "docs" / "ci.md"
WORKFLOW_FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yml", ".yaml"))

# Plausible values for what CI fills in. An expression or variable missing
# here fails the test: give it a value on purpose rather than guess one.
GITHUB_EXPRESSIONS = {"matrix.shard": "2", "github.run_id": "9876543210"}
CI_VARIABLES = {
    "CI_NODE_INDEX": "2",
    "CI_NODE_TOTAL": "3",
    "CI_PIPELINE_ID": "424242",
    "PWD": "/home/runner/work/server",
    "SERVER_IP": "172.18.0.2",
    "GITHUB_ENV": "/home/runner/env",
    "GITHUB_STEP_SUMMARY": "/home/runner/summary",
}
SHELL_OPERATORS = set("();<>|&")
SCRIPT_KEYS = ("run", "script", "before_script", "after_script")


@dataclass(frozen=True)
class Command:
    source: str  # file and job (or line) it came from
    line: str  # the command line as written, after the values were filled in
    args: list[str]  # what follows `sockspec`

    def __str__(self) -> str:
        return f"{self.source}: sockspec {shlex.join(self.args)}"


def fill_in(text: str, variables: dict[str, str]) -> str:
    """``${{ expr }}`` and ``$VAR`` / ``${VAR}`` replaced by plausible values; KeyError names an unknown one."""

    def expression(match: re.Match[str]) -> str:
        return GITHUB_EXPRESSIONS[match.group(1)]

    def variable(match: re.Match[str]) -> str:
        return variables[match.group(1) or match.group(2)]

    text = re.sub(r"\$\{\{\s*(.+?)\s*\}\}", expression, text)
    return re.sub(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))", variable, text)


def logical_lines(script: str) -> Iterator[tuple[int, str]]:
    """(number of its first line, counted from 0, text) of each line, continuations joined."""
    first, pending = 0, ""
    for number, physical in enumerate(script.splitlines()):
        if not pending:
            first = number
        if physical.endswith("\\"):
            pending += physical[:-1] + " "
            continue
        yield first, pending + physical
        pending = ""
    if pending:
        yield first, pending


def sockspec_commands(script: str, source: str, variables: dict[str, str], first_line: int = 0) -> Iterator[Command]:
    """Every ``sockspec ...`` in a shell script: a line's own command, or one
    after ``docker run IMAGE`` or inside ``$(...)``, up to the next shell operator."""
    for number, line in logical_lines(script):
        if not re.search(r"(^|[\s;&|(])sockspec\s", line):
            continue
        where = f"{source}:{first_line + number}" if first_line else source
        filled = fill_in(line, variables)
        lexer = shlex.shlex(filled, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for start, token in enumerate(tokens):
            if token != "sockspec":
                continue
            args: list[str] = []
            for arg in tokens[start + 1 :]:
                if set(arg) <= SHELL_OPERATORS:
                    break
                args.append(arg)
            yield Command(where, filled.strip(), args)


def scripts(document: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(where, script) for every ``run:`` / ``script:`` in a workflow, at any depth."""
    if isinstance(document, dict):
        for key, value in document.items():
            inner = f"{where}/{key}" if where else str(key)
            if key in SCRIPT_KEYS and isinstance(value, str):
                yield inner, value
            elif key in SCRIPT_KEYS and isinstance(value, list):
                yield inner, "\n".join(str(line) for line in value)
            else:
                yield from scripts(value, inner)
    elif isinstance(document, list):
        for n, item in enumerate(document):
            yield from scripts(item, f"{where}[{n}]")


def shell_blocks(markdown: str) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of every ```sh / ```bash / ```shell block."""
    yield from fenced_blocks(markdown, ("sh", "bash", "shell"))


def fenced_blocks(markdown: str, languages: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL):
        if match.group(1) in languages:
            yield markdown[: match.start()].count("\n") + 2, match.group(2)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def every_command() -> list[Command]:
    found: list[Command] = []
    for path in WORKFLOW_FILES:
        document = load(path)
        # A workflow's own env / variables are in scope for its scripts, as CI makes them.
        variables = {**CI_VARIABLES, **(document.get("env") or {}), **(document.get("variables") or {})}
        for where, script in scripts(document):
            found += sockspec_commands(script, f"{path.relative_to(REPO)}:{where}", variables)
    for line, block in shell_blocks(CI_DOC.read_text(encoding="utf-8")):
        documented = {
            **CI_VARIABLES,
            "SERVER_CMD": "python3 server.py --port {port} --idle {idle}",
            "SERVER_NAME": "my-server",
        }
        found += sockspec_commands(block, "docs/ci.md", documented, first_line=line)
    return found


def parse(args: list[str]) -> Any:
    """What ``sockspec ARGS`` would run with: the real parser, and the values it
    leaves to the run's own checks where a CI line would get them wrong."""
    options = _parser().parse_args(args)
    if getattr(options, "shard", None):
        configuration.parse_shard(options.shard)
    return options


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of ``parser`` and of its subcommands, at any depth."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= option_strings(subparser)
    return found


COMMANDS = every_command()
OPTION_STRINGS = option_strings(_parser())


def test_there_are_example_workflows() -> None:
    assert GITHUB_WORKFLOW in WORKFLOW_FILES and GITLAB_JOBS in WORKFLOW_FILES, WORKFLOW_FILES


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_file_parses_as_yaml(path: Path) -> None:
    assert isinstance(load(path), dict), f"{path}: not a mapping"


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_sockspec_command_parses_with_the_real_parser(command: Command) -> None:
    try:
        options = parse(command.args)
    except UsageProblem as problem:
        pytest.fail(f"{command.source}: {command.line}\nsockspec rejects it: {problem}")
    assert options.command is not None, command
    # argparse also takes a prefix (`--htm` for `--html`); what we publish spells each option in full.
    abbreviated = [arg for arg in command.args if arg.startswith("--") and arg.split("=")[0] not in OPTION_STRINGS]
    assert abbreviated == [], f"{command.source}: spell these options in full: {abbreviated}"


def test_the_commands_found_cover_every_shape_the_docs_promise() -> None:
    # Guards the extraction itself: were it to find nothing, the test above would pass vacuously.
    lines = [" ".join(c.args) for c in COMMANDS]
    for source in ("examples/github-actions/", "examples/gitlab-ci/", "docs/ci.md"):
        assert any(c.source.startswith(source) for c in COMMANDS), f"no sockspec command found in {source}"
    for shape in (
        r"^run --cmd .* --shard \d+/3 .*--json shard-\d+\.json",
        r"^merge report\.json shard-\*\.json --html report/ --junit junit\.xml$",
        r"^image build --base bookworm$",
        r"^image build$",
        r"^run --address 172\.18\.0\.2:4481 .*--allow-unchecked",
    ):
        assert any(re.search(shape, line) for line in lines), f"no command like {shape!r} in:\n" + "\n".join(lines)
    assert any("sockspec-suite:bookworm sockspec run --address" in c.line for c in COMMANDS), "docker run variant"


@pytest.mark.parametrize(
    "line",
    [
        "sockspec run --cmd 'python3 server.py --port {port} --idle {idle}' --shards 1/3",  # misspelt option
        "sockspec run --cmd 'python3 server.py --port {port} --idle {idle}' --shard 4/3",  # share out of range
        "sockspec merge report.json",  # no shard reports
        "sockspec image build --base wheezy",  # unknown base
        "sockspec imagine build",  # unknown command
    ],
)
def test_a_command_sockspec_would_reject_fails_the_check(line: str) -> None:
    (command,) = sockspec_commands(line, "test", CI_VARIABLES)
    with pytest.raises(UsageProblem):
        parse(command.args)


def test_an_unknown_variable_in_a_command_fails_instead_of_being_guessed() -> None:
    with pytest.raises(KeyError, match="NOT_A_CI_VARIABLE"):
        list(sockspec_commands("sockspec run --seed $NOT_A_CI_VARIABLE", "test", CI_VARIABLES))


def test_commands_are_found_after_docker_run_and_inside_command_substitution() -> None:
    script = 'IMAGE=$(sockspec image build) && docker run --rm "$IMAGE" sockspec run --address "$SERVER_IP:1" > out'
    found = [c.args for c in sockspec_commands(script, "test", {**CI_VARIABLES, "IMAGE": "img"})]
    assert found == [["image", "build"], ["run", "--address", "172.18.0.2:1"]]


def test_the_github_workflow_shards_merges_and_keeps_its_reports() -> None:
    workflow = load(GITHUB_WORKFLOW)
    assert "push" in workflow[True] and "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    jobs = workflow["jobs"]
    assert set(jobs) == {"conformance", "report", "suite-image", "conformance-in-docker"}

    shards = jobs["conformance"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1)), shards
    assert jobs["conformance"]["strategy"]["fail-fast"] is False
    run = " ".join(step.get("run", "") for step in jobs["conformance"]["steps"])
    assert f"--shard ${{{{ matrix.shard }}}}/{len(shards)}" in run, "the shard count must match the matrix"
    assert "--seed ${{ github.run_id }}" in run, "every shard needs the same seed"
    shard_upload = uses(jobs["conformance"], "actions/upload-artifact")
    assert (
        shard_upload["if"] == "${{ !cancelled() }}" and "shard-${{ matrix.shard }}.json" in shard_upload["with"]["path"]
    )

    report = jobs["report"]
    assert report["needs"] == "conformance" and "!cancelled()" in report["if"]
    download = uses(report, "actions/download-artifact")["with"]
    assert download["pattern"] == "sockspec-shard-*" and download["merge-multiple"] is True
    kept = uses(report, "actions/upload-artifact")["with"]["path"].split()
    assert {"report.json", "report/", "junit.xml"} <= set(kept), kept

    assert jobs["conformance-in-docker"]["needs"] == "suite-image"
    assert any("sockspec image build" in step.get("run", "") for step in jobs["suite-image"]["steps"])
    docker_steps = " ".join(step.get("run", "") for step in jobs["conformance-in-docker"]["steps"])
    assert "--network sockspec-ci" in docker_steps
    assert not re.search(r"docker run [^&|;]*\s(-p|--publish)[\s=]", docker_steps), "by IP, never a published port"
    assert "setup-python" not in str(jobs["conformance-in-docker"]), "the Docker variant runs without Python"
    for job in jobs.values():
        for step in job["steps"]:
            if "artifact" in step.get("uses", ""):
                assert step["uses"].endswith("@v4"), step  # `pattern` and `merge-multiple` need v4


def uses(job: dict[str, Any], action: str) -> dict[str, Any]:
    (step,) = [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]
    return step


def test_the_gitlab_jobs_shard_with_parallel_and_report_the_merged_junit() -> None:
    pipeline = load(GITLAB_JOBS)
    shards, report = pipeline["sockspec"], pipeline["sockspec-report"]
    assert isinstance(shards["parallel"], int) and shards["parallel"] > 1
    script = " ".join(shards["script"])
    assert '--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"' in script and '--seed "$CI_PIPELINE_ID"' in script
    assert shards["artifacts"]["when"] == "always" and "shard-*.json" in shards["artifacts"]["paths"]
    assert "reports" not in shards["artifacts"], "only the merged JUnit is reported (a shard's would count twice)"
    assert report["needs"] == [{"job": "sockspec", "artifacts": True}] and report["when"] == "always"
    assert report["artifacts"]["reports"] == {"junit": "junit.xml"}
    assert {"report/", "report.json", "junit.xml"} <= set(report["artifacts"]["paths"])
    stages = pipeline["stages"]
    assert stages.index(shards["stage"]) < stages.index(report["stage"])


def test_the_docs_schema_recipe_accepts_a_real_report_and_rejects_a_broken_one(tmp_path: Path) -> None:
    (recipe,) = [block for _, block in fenced_blocks(CI_DOC.read_text(encoding="utf-8"), ("python",))]
    report = tmp_path / "report.json"
    run = [
        sys.executable,
        "-m",
        "suite.cli",
        "run",
        "--reference",
        "evented",
        "--only",
        "CH-CMD-1",
        "--json",
        str(report),
    ]
    made = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]

    def recipe_on_the_report() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", recipe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )

    accepted = recipe_on_the_report()
    assert accepted.returncode == 0, accepted.stderr
    broken = json.loads(report.read_text(encoding="utf-8"))
    broken["targets"][0]["results"][0]["verdict"] = "MAYBE"
    report.write_text(json.dumps(broken), encoding="utf-8")
    rejected = recipe_on_the_report()
    assert rejected.returncode != 0 and "ValidationError" in rejected.stderr, rejected.stderr[-2000:]
