"""Containerised runs: images, the architecture x image matrix, the suite
image, and cleanup after normal and interrupted runs. Real Docker engine,
real containers; skipped without an engine, failing instead in CI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from suite.docker import engine as docker_engine
from suite.docker import images
from tests.docker_support import docker_or_skip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine() -> object:
    return docker_or_skip()


def leftovers(engine: object) -> list[str]:
    return docker_engine.leftovers(engine)


def test_a_second_build_reuses_every_layer(engine: object) -> None:
    base = images.load_bases()["bookworm"]
    first = images.build_server_image(engine, base, log=lambda line: None)
    first_id = engine.images.get(first).id  # type: ignore[attr-defined]
    second = images.build_server_image(engine, base, log=lambda line: None)
    assert engine.images.get(second).id == first_id, "expected the cached image, not a rebuild"  # type: ignore[attr-defined]


def test_every_image_is_labelled_with_the_project(engine: object) -> None:
    for base in images.load_bases().values():
        tag = images.build_server_image(engine, base, log=lambda line: None)
        labels = engine.images.get(tag).labels  # type: ignore[attr-defined]
        assert labels.get(docker_engine.PROJECT_LABEL) == docker_engine.PROJECT, (tag, labels)


MATRICES = [
    # CI's: an evented server and a forking one, each in both images, and the client.
    pytest.param("evented,process-per-connection", 2, id="two-architectures"),
    # The whole matrix, about ten minutes: bash scripts/test.sh -m extended.
    pytest.param("all", 7, id="seven-architectures", marks=pytest.mark.extended),
]


@pytest.mark.parametrize(("arch", "servers"), MATRICES)
def test_the_matrix_of_architectures_and_the_client_by_two_images_passes_every_must(
    engine: object, tmp_path: Path, arch: str, servers: int
) -> None:
    report = tmp_path / "matrix.json"
    command = [
        sys.executable, "-m", "suite.cli", "matrix",
        "--arch", arch, "--images", "bookworm,trixie", "--json", str(report), "-n", "2",
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    elapsed = time.monotonic() - started
    tail = (result.stdout + result.stderr)[-5000:]
    data = json.loads(report.read_text())
    cells = data["matrix"]["cells"]
    expected = 2 * (servers + 1)
    assert len(cells) == expected, (
        f"expected {servers} servers and the reference client on 2 images, got {len(cells)} cells"
    )
    assert sorted(c["arch"] for c in cells if c["kind"] == "client") == ["reference-client"] * 2
    failing = [
        f"{t['name']}: {r['id']} {r['verdict']} {r['detail']}"
        for t in data["targets"]
        for r in t["results"]
        if r["verdict"] in ("FAIL", "ERROR")
    ]
    assert not failing, "\n".join(failing) + "\n" + tail
    for cell in cells:
        assert cell["passes_every_must"], cell
        assert cell["python"] and cell["openssl"] and cell["image_name"], cell
    assert {c["python"][:4] for c in cells} == {"3.11", "3.13"}, "bookworm has Python 3.11 and trixie 3.13"
    assert result.returncode == 0, tail
    assert leftovers(engine) == [], "the run left Docker objects behind"
    print(f"matrix: {expected} cells in {elapsed:.0f} s")


@pytest.mark.parametrize(
    "targets",
    [("--image", "bookworm:all"), ("--client-reference", "--client-image", "bookworm")],
    ids=["servers", "clients"],
)
def test_an_interrupted_run_leaves_no_container_or_network(
    engine: object, tmp_path: Path, targets: tuple[str, ...]
) -> None:
    command = [sys.executable, "-m", "suite.cli", "run", *targets, "-n", "2"]
    since = int(time.time()) - 1
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait for the engine to report the run's first container start (or give up at `until`).
        starts = engine.events(  # type: ignore[attr-defined]
            since=since,
            until=since + 120,
            decode=True,
            filters={
                "type": "container",
                "event": "start",
                "label": f"{docker_engine.PROJECT_LABEL}={docker_engine.PROJECT}",
            },
        )
        started = next(iter(starts), None)
        assert started is not None, "the run never started a container"
        # The first may be a short-lived probe of the image; wait for one that stays up.
        deadline = time.monotonic() + 60
        while not _run_containers(engine):
            assert time.monotonic() < deadline, "no container of the run stayed up"
            threading.Event().wait(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert leftovers(engine) == [], "an interrupted run left Docker objects behind"


def _run_containers(engine: object) -> list[object]:
    return engine.containers.list(filters={"label": [f"{docker_engine.PROJECT_LABEL}={docker_engine.PROJECT}"]})  # type: ignore[attr-defined]
