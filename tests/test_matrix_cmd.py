"""Your own server in the image matrix: `sockspec matrix --cmd TEMPLATE` runs it
inside each image with the working directory mounted read-only, and
`--dockerfile PATH` builds its own image FROM each base first. Tried with a
student's asyncio server, a Node.js server and one whose behaviour depends on
the Python it runs on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import docker_or_skip
from tests.report_support import validate_report
from tests.test_front_door import QUICK, REPO, sockspec

SERVERS = REPO / "tests" / "servers"
IMAGES = "bookworm,trixie"


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_or_skip()


def matrix(*args: str, cwd: Path, report: Path) -> tuple[int, str, dict[str, Any]]:
    result, _ = sockspec("matrix", "--images", IMAGES, *args, "--json", str(report), cwd=cwd, timeout=900)
    data = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, result.stdout + result.stderr, data


def cells(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cell["image"]: cell for cell in report["matrix"]["cells"]}


def test_a_users_python_server_runs_in_both_images(engine: Any, tmp_path: Path) -> None:
    code, output, report = matrix(
        "--cmd", "python3 asyncio_student.py --port {port} --idle {idle} --host {host}",
        "--only", "CH-FRAME-1,CH-CMD-*,CH-CONC-1",
        cwd=SERVERS, report=tmp_path / "m.json",
    )  # fmt: skip
    assert code == 0, output[-3000:]
    validate_report(report)
    found = cells(report)
    assert set(found) == {"bookworm", "trixie"}
    assert all(cell["passes_every_must"] and cell["counts"]["PASS"] > 10 for cell in found.values())
    assert found["bookworm"]["python"].startswith("3.11") and found["trixie"]["python"].startswith("3.13")
    assert all(cell["libc"].startswith("glibc ") for cell in found.values())
    assert report["matrix"]["differences"] == []
    assert "glibc" in output  # the terminal table names each image's runtime
    for target in report["targets"]:
        assert target["target"].startswith("--cmd ") and "--cmd-image" in target["target"]


def test_a_node_server_built_from_its_dockerfile_runs_in_both_images(engine: Any, tmp_path: Path) -> None:
    node = SERVERS / "node_student"
    code, output, report = matrix(
        "--cmd", "node server.js --port {port} --host {host}", "--dockerfile", str(node / "Dockerfile"),
        "--only", "CH-FRAME-1,CH-FRAME-3,CH-CMD-*",
        cwd=tmp_path, report=tmp_path / "m.json",
    )  # fmt: skip
    assert code == 0, output[-3000:]
    found = cells(report)
    assert set(found) == {"bookworm", "trixie"}
    assert all(cell["passes_every_must"] for cell in found.values())
    assert all(cell["image_name"].startswith("sockspec-user:") for cell in found.values())


def test_where_the_images_disagree_that_difference_comes_first(engine: Any, tmp_path: Path) -> None:
    code, output, report = matrix(
        "--cmd", "python3 differs_by_python.py --port {port} --host {host}", "--only", "CH-CMD-1",
        cwd=SERVERS, report=tmp_path / "m.json",
    )  # fmt: skip
    assert code == 1, output[-3000:]
    (difference,) = [d for d in report["matrix"]["differences"] if d["id"] == "CH-CMD-1"]
    assert difference["verdicts"] == {"bookworm": "FAIL", "trixie": "PASS"}
    assert output.index("where the images disagree") < output.index("server x image")


def test_a_server_bound_to_its_own_loopback_is_told_to_bind_host(engine: Any, tmp_path: Path) -> None:
    code, output, report = matrix(
        "--cmd", "python3 asyncio_student.py --port {port}", "--only", "CH-CMD-1", "--images", "bookworm",
        cwd=SERVERS, report=tmp_path / "m.json",
    )  # fmt: skip
    assert code == 2, output[-3000:]
    (target,) = report["targets"]
    for result in target["results"]:  # CH-CMD-1 and the CH-ERR-2 its check also covers
        assert result["verdict"] == "ERROR"
        assert "pass {host}" in result["detail"] and "refuses connections" in result["detail"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("matrix", "--dockerfile", "Dockerfile"), "--dockerfile needs --cmd"),
        (("run", "--cmd-image", "bookworm"), "give the --cmd too"),
        (("run", "--cmd", "python3 s.py --port {port}", "--dockerfile", "D"), "give --cmd-image"),
        (("run", "--cmd", "python3 s.py --port {port}", "--cmd-image", "bookworm", "--dockerfile", "nope"), "no such"),
        (("run", "--cmd", "python3 s.py --port {port}", "--cmd-image", "jessie"), "jessie"),
    ],
)
def test_bad_image_options_get_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result, took = sockspec(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-1000:]
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert took < QUICK


def test_on_a_remote_engine_the_process_tree_is_unsupported_never_misread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote engine's pids belong to another machine: read here, they would name some unrelated process."""
    from suite.probe import Unsupported
    from suite.targets.container import ContainerProcess

    monkeypatch.setenv("DOCKER_HOST", "tcp://build-farm.example:2376")
    process = ContainerProcess(None, "sockspec-base:bookworm", ["true"], network="n", labels={})
    with pytest.raises(Unsupported, match="remote Docker engine"):
        _ = process.pid
