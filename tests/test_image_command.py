"""``sockspec image``: the command builds the suite image, and that image checks
a reference server by address, the way docs/ci.md tells a CI author to run it
(``docker run --network NET sockspec-suite:bookworm sockspec run --address
IP:PORT``). Real engine, real containers on the project's own network, all
labelled and removed; bad input gets one line and exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import docker
from suite import profiles, requirements
from suite.docker import engine as docker_engine
from suite.docker import images
from tests.docker_support import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "suite" / "report" / "schema"


def sockspec(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def docker_cli_or_skip() -> str:
    """The docker command docs/ci.md uses; missing, the test skips (fails in CI), as docker_or_skip does."""
    found = shutil.which("docker")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the docker command is not installed")
        pytest.skip("the docker command is not installed")
    return found


@dataclass(frozen=True)
class Built:
    result: subprocess.CompletedProcess[str]
    seconds: float
    replaced: str  # the id of the image the build took the tag from


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_or_skip()


@pytest.fixture(scope="module")
def built(engine: Any) -> Built:
    """``sockspec image build --base bookworm``, run once for the module as a CI job would run it,
    over a stand-in for an older suite image (the base with one label more), which it must replace."""
    base = images.load_bases()["bookworm"]
    base_name = images.ensure_base(engine, base, log=lambda line: None)
    previous = image_id(engine, f"{images.SUITE_REPOSITORY}:{base.key}")
    stand_in, _ = engine.images.build(
        fileobj=io.BytesIO(f"FROM {base_name}\nLABEL org.sockspec.test=stand-in\n".encode()),
        tag=f"{images.SUITE_REPOSITORY}:{base.key}",
        labels={docker_engine.PROJECT_LABEL: docker_engine.PROJECT},
        rm=True,
    )
    started = time.monotonic()
    result = sockspec("image", "build", "--base", base.key, timeout=900)
    elapsed = time.monotonic() - started
    # The stand-in took the tag of the image before it, which the build cannot
    # know of: removed only now, so that the build could still use its layers,
    # or given its tag back if the build failed (the stand-in is no suite).
    with contextlib.suppress(docker.errors.APIError):
        if result.returncode != 0 and previous is not None:
            engine.images.get(previous).tag(images.SUITE_REPOSITORY, base.key)
            engine.images.remove(stand_in.id)
        elif previous is not None and previous != image_id(engine, f"{images.SUITE_REPOSITORY}:{base.key}"):
            engine.images.remove(previous)
    return Built(result, elapsed, stand_in.id)


def image_id(engine: Any, name: str) -> str | None:
    try:
        return str(engine.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


@pytest.fixture
def run_labels(engine: Any) -> Iterator[dict[str, str]]:
    """Labels for this test's containers and network; whatever carries them is removed afterwards."""
    run_id = docker_engine.new_run_id()
    yield docker_engine.labels(run_id)
    docker_engine.sweep(engine, run_id)
    selector = {"label": [f"{docker_engine.RUN_LABEL}={run_id}"]}
    left = [c.name for c in engine.containers.list(all=True, filters=selector)]
    left += [n.name for n in engine.networks.list(filters=selector)]
    assert left == [], f"left behind: {left}"


def test_image_build_prints_the_image_name_alone_on_stdout(engine: Any, built: Built) -> None:
    assert built.result.returncode == 0, built.result.stderr[-3000:]
    # Only the name on stdout, so that `IMAGE=$(sockspec image build)` works; progress is on stderr.
    assert built.result.stdout == "sockspec-suite:bookworm\n", built.result.stdout[-2000:]
    assert "sockspec-suite:bookworm" in built.result.stderr
    labels = engine.images.get("sockspec-suite:bookworm").labels
    assert labels.get(docker_engine.PROJECT_LABEL) == docker_engine.PROJECT, labels
    print(f"sockspec image build: {built.seconds:.1f} s")


def test_image_build_removes_the_image_it_replaces(engine: Any, built: Built) -> None:
    assert built.result.returncode == 0, built.result.stderr[-3000:]
    assert engine.images.get("sockspec-suite:bookworm").id != built.replaced
    # Otherwise every rebuild would leave one more untagged image of the project behind.
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(built.replaced)


def test_the_built_image_checks_a_reference_server_by_address(
    engine: Any, built: Built, run_labels: dict[str, str], tmp_path: Path
) -> None:
    docker = docker_cli_or_skip()
    assert built.result.returncode == 0, built.result.stderr[-3000:]
    image = built.result.stdout.strip()
    server_image = images.build_server_image(engine, images.load_bases()["bookworm"], log=lambda line: None)
    network = engine.networks.create(f"sockspec-{run_labels[docker_engine.RUN_LABEL]}", labels=run_labels)
    server = engine.containers.run(
        server_image, ["evented", "--host", "0.0.0.0", "--port", "4481"],
        detach=True, network=network.name, labels=run_labels,
    )  # fmt: skip
    server.reload()
    address = server.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    # The command docs/ci.md gives, with the run's labels so that the sweep finds
    # the container should `--rm` not get to remove it (a timeout, an interrupt).
    command = [
        docker, "run", "--rm", "--network", network.name,
        *[arg for key, value in run_labels.items() for arg in ("--label", f"{key}={value}")],
        "--volume", f"{tmp_path}:/reports", image,
        "sockspec", "run", "--address", f"{address}:4481", "--only", "CH-CMD-*,CH-FRAME-2",
        "--json", "/reports/report.json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    schema = json.loads((SCHEMAS / f"report-{report['schema']}.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema)
    (target,) = report["targets"]
    assert target["target"] == f"--address {address}:4481", target["target"]
    verdicts = {entry["id"]: entry["verdict"] for entry in target["results"]}
    every_cmd_requirement = {requirement for requirement in requirements.load() if requirement.startswith("CH-CMD-")}
    assert every_cmd_requirement | {"CH-FRAME-2"} <= verdicts.keys(), sorted(verdicts)
    broken = {requirement: verdict for requirement, verdict in verdicts.items() if verdict in ("FAIL", "ERROR")}
    assert broken == {}, output
    assert list(verdicts.values()).count("PASS") >= len(verdicts) - 1, verdicts  # CH-CMD-15 is not applicable
    assert report["summary"]["exit_code"] == 0


@pytest.mark.parametrize("profile", sorted(profiles.PROFILES))
def test_the_built_image_carries_every_profiles_spec(built: Built, run_labels: dict[str, str], profile: str) -> None:
    """A wheel without a spec file imports, then fails at collection: every
    profile's first requirement must be explainable inside the image."""
    docker = docker_cli_or_skip()
    assert built.result.returncode == 0, built.result.stderr[-3000:]
    first = next(iter(requirements.load(profile=profile)))
    labels = [arg for key, value in run_labels.items() for arg in ("--label", f"{key}={value}")]
    command = [docker, "run", "--rm", *labels, built.result.stdout.strip(), "sockspec", "explain", first]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert first in result.stdout, result.stdout


def test_image_list_shows_the_built_image_with_its_labels(built: Built) -> None:
    assert built.result.returncode == 0, built.result.stderr[-3000:]
    listing = sockspec("image", "list")
    assert listing.returncode == 0, listing.stderr
    assert "sockspec-suite:bookworm" in listing.stdout, listing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("image", "build", "--base", "nope"), f"unknown base 'nope'; known: {', '.join(images.load_bases())}"),
        (("image", "build", "--base"), "expected one argument"),
        (("image", "build", "--bogus"), "unrecognized arguments: --bogus"),
        (("image",), "required: ACTION"),
        (("image", "push"), "invalid choice: 'push'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_nothing_built(args: tuple[str, ...], message: str) -> None:
    result = sockspec(*args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_docker_engine_image_build_exits_2_saying_so(tmp_path: Path) -> None:
    # An engine address where nothing listens: docker-py finds no engine, as on a runner without Docker.
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}"}
    for action in ("build", "list"):
        result = sockspec("image", action, env=env)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert f"sockspec image {action}: needs a Docker engine" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_image_build_help_names_the_default_base() -> None:
    default = next(iter(images.load_bases()))
    result = sockspec("image", "build", "--help")
    assert result.returncode == 0, result.stderr
    assert f"(default: {default}, the first listed)" in " ".join(result.stdout.split())
