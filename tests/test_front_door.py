"""The first hour with the suite, as a user with a server of their own meets it.

Each test runs the installed ``sockspec`` command from a scratch directory
(never the project's checkout), as a user would: bad options get one line
and exit 2 before anything starts; a target that cannot start gets one
paragraph and exit 2 within its readiness timeout plus a few seconds;
SIGINT and SIGTERM leave no process behind and an honest report; nothing
is left in the user's directory but the reports asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from suite.targets.factory import reference_template
from suite.targets.process import free_port

REPO = Path(__file__).resolve().parents[1]
SOCKSPEC = str(Path(sys.executable).with_name("sockspec"))
PYTHON = shlex.quote(sys.executable)
# Bad input is answered before anything starts: well inside this.
QUICK = 20.0


def sockspec(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [SOCKSPEC, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return result, time.monotonic() - started


# ---- every option checked before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--json", "/missing/dir/r.json"), "no such directory: /missing/dir"),
        (("--junit", "/missing/dir/r.xml"), "no such directory: /missing/dir"),
        (("--json", "/tmp"), "is a directory"),
        (("--declare", "features=bogus"), "unknown feature 'bogus'"),
        (("--declare", "concurrency=abc"), "concurrency wants a positive integer"),
        (("--declare", "max_conections=4"), "did you mean max_connections"),
        (("--declare", "overflow=drop"), "overflow wants busy or queue"),
        (("-n", "-3"), "positive number of workers"),
        (("-n", "abc"), "positive number of workers"),
        (("--only", "CH-NOPE-99"), "--only CH-NOPE-99: no requirement matches"),
        (("--only", "CH-FRAME-177"), "did you mean CH-FRAME-17"),
        (("--check-timeout", "0"), "--check-timeout wants a positive number"),
        (("--ready-timeout", "-1"), "--ready-timeout wants a positive number"),
    ],
)
def test_a_bad_option_gets_one_line_and_exit_2_before_anything_starts(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result, elapsed = sockspec("run", "--reference", "evented", *args, cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, f"expected exit 2, got {result.returncode}: {result.stderr}"
    assert len(lines) == 1 and message in lines[0], f"expected one line with {message!r}, got:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    assert "READY" not in result.stdout, "a server was started before the options were checked"
    assert elapsed < QUICK


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("no-such-server --port {port}", "no program named 'no-such-server' on PATH"),
        ("./missing-server --port {port}", "no such program: ./missing-server"),
        ("python3 server.py --port {prot}", "unknown placeholder {prot}"),
        ("python3 'server.py --port {port}", "No closing quotation"),
    ],
)
def test_a_template_that_cannot_start_is_refused_at_once(template: str, message: str, tmp_path: Path) -> None:
    result, elapsed = sockspec("run", "--cmd", template, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert elapsed < QUICK


def test_only_is_case_insensitive(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result, _ = sockspec("run", "--reference", "evented", "--only", "ch-cmd-2", "--json", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [r["id"] for r in json.loads(report.read_text())["targets"][0]["results"]]
    assert ids == ["CH-CMD-2"]


# ---- preflight: a target that cannot start or answer -----------------------------------------


def test_a_closed_address_gets_one_paragraph_quickly(tmp_path: Path) -> None:
    port = free_port()
    result, elapsed = sockspec("run", "--address", f"127.0.0.1:{port}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"127.0.0.1:{port}" in output and "refused" in output, output
    assert "Nothing was checked" in output, output
    assert "Traceback" not in output
    assert len(output.splitlines()) <= 12, output
    assert elapsed < QUICK


def test_a_server_that_exits_at_start_is_explained_with_its_status_and_stderr(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text("import sys\nprint('Traceback: boom at start', file=sys.stderr)\nsys.exit(3)\n")
    result, elapsed = sockspec("run", "--cmd", f"{PYTHON} {server} --port {{port}}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "status 3" in output and "boom at start" in output, output
    assert "b'" not in output, "stderr must be shown as text, not as a bytes literal"
    assert output.count("boom at start") == 1, "one explanation, not one per check"
    assert elapsed < QUICK


def test_a_never_ready_server_costs_the_readiness_timeout_once(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    ready_timeout = 3.0
    result, elapsed = sockspec(
        "run", "--cmd", f"{PYTHON} {server} --port {{port}}", "--ready-timeout", str(ready_timeout), cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "READY cloudhash/1" in output, f"the explanation names the READY line it waited for:\n{output}"
    assert elapsed < ready_timeout + 5, f"{elapsed:.1f} s"
    assert not _processes_running(str(server))


# ---- clean interrupts --------------------------------------------------------------------------


INTERRUPTS = [
    pytest.param(entry, signum, workers, id=f"{entry}-{signum.name}-{'xdist' if workers else 'serial'}")
    for entry, signum, workers in [
        ("sockspec", signal.SIGINT, ()),
        ("sockspec", signal.SIGTERM, ()),
        ("sockspec", signal.SIGINT, ("-n", "2")),
        ("sockspec", signal.SIGTERM, ("-n", "2")),
        ("pytest", signal.SIGTERM, ()),
        ("pytest", signal.SIGINT, ("-n", "2")),
    ]
]


@pytest.mark.slow
@pytest.mark.parametrize(("entry", "signum", "workers"), INTERRUPTS)
def test_an_interrupted_run_leaves_no_process_and_an_honest_report(
    entry: str, signum: signal.Signals, workers: tuple[str, ...], tmp_path: Path
) -> None:
    marker = f"sockspec-test-{uuid.uuid4().hex}"
    report = tmp_path / "report.json"
    target = ["--cmd", reference_template("thread-per-connection"), "--json", str(report), *workers]
    if entry == "sockspec":
        command = [SOCKSPEC, "run", *target]
    else:  # the plugin under plain pytest
        command = [sys.executable, "-m", "pytest", str(REPO / "suite" / "checks"), "-p", "no:cacheprovider", *target]
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, "SOCKSPEC_TEST_MARKER": marker, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # In the middle of the run: once checks have started their own servers.
        _wait_for(lambda: len(_servers_of(marker)) >= 2, 60, "the run to start its servers")
        os.kill(run.pid, signum)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    text = output.decode(errors="replace")
    assert run.returncode == 130, f"expected 130 after {signum.name}, got {run.returncode}:\n{text}"
    _wait_for(
        lambda: not _servers_of(marker),
        10,
        "every server the run started to be gone",
        lambda: f"{_describe(_servers_of(marker))}\nthe run printed:\n{text[-3000:]}",
    )
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    assert data["summary"]["exit_code"] != 0
    assert all(t["conformance"] in (None, "interrupted") for t in data["targets"]), data["targets"]
    assert "Traceback" not in text


def _servers_of(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if (process.info["cmdline"] or [])[1:3] == ["-m", "reference_servers"] and (
                process.environ().get("SOCKSPEC_TEST_MARKER") == marker
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _processes_running(needle: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if needle in " ".join(process.info["cmdline"] or []) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def _describe(processes: list[psutil.Process]) -> str:
    """Who survived, with what an investigation needs: its age, group and parent."""
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            lines.append(
                f"pid {process.pid} pgid {os.getpgid(process.pid)} age {time.time() - process.create_time():.1f} s "
                f"status {process.status()} parent {parent.pid if parent else None} "
                f"({' '.join(parent.cmdline()[:4]) if parent else ''}): {' '.join(process.cmdline())}"
            )
    return "\n".join(lines)


def _wait_for(condition: object, deadline: float, what: str, describe: object = None) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)  # polling a condition, with a deadline
    found = f"; still there:\n{describe()}" if describe is not None else ""  # type: ignore[operator]
    raise AssertionError(f"timed out after {deadline} s waiting for {what}{found}")


# ---- nothing left behind; re-runs from anywhere -------------------------------------------------


def test_a_run_leaves_only_the_reports_asked_for(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # CH-STORE-2 runs Hypothesis, which would otherwise leave ./.hypothesis behind.
    result, _ = sockspec("run", "--reference", "evented", "--only", "CH-STORE-2", "--json", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_printed_rerun_line_reproduces_the_failure_from_another_directory(tmp_path: Path) -> None:
    student = REPO / "tests" / "servers" / "no_pipelining_socketserver.py"
    report = tmp_path / "report.json"
    result, _ = sockspec(
        "run", "--cmd", f"{PYTHON} {student} --port {{port}}", "--only", "CH-FRAME-17", "--json", str(report),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    [failing] = [r for r in json.loads(report.read_text())["targets"][0]["results"] if r["verdict"] == "FAIL"]
    rerun = failing["checks"][0]["rerun"]
    assert rerun.startswith("sockspec run ") and "--seed" in rerun, rerun
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again, _ = sockspec(*shlex.split(rerun)[1:], "--json", str(elsewhere / "again.json"), cwd=elsewhere)
    assert again.returncode == 1, again.stdout + again.stderr
    verdicts = {
        r["id"]: r["verdict"] for r in json.loads((elsewhere / "again.json").read_text())["targets"][0]["results"]
    }
    assert verdicts == {"CH-FRAME-17": "FAIL"}


# ---- small commands ------------------------------------------------------------------------------


def test_list_shows_the_requirements_a_pattern_selects(tmp_path: Path) -> None:
    result, _ = sockspec("list", "ch-tls-*", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CH-TLS-1" in result.stdout and "CH-FRAME-1 " not in result.stdout
    assert "MUST" in result.stdout and "tls" in result.stdout


def test_explain_prints_the_requirement_text_and_suggests_for_a_typo(tmp_path: Path) -> None:
    result, _ = sockspec("explain", "ch-frame-17", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CH-FRAME-17 (MUST) — Pipelined requests are all answered, in order")
    assert "in the order the requests were sent" in result.stdout
    typo, _ = sockspec("explain", "CH-FRAM-17", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean CH-FRAME-17" in typo.stderr, typo.stderr


def test_version(tmp_path: Path) -> None:
    result, _ = sockspec("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("sockspec "), result.stdout + result.stderr


# ---- a target that dies during the run -----------------------------------------------------------


def test_a_server_that_outlives_sigint_fails_life_9_naming_what_is_left(tmp_path: Path) -> None:
    server = REPO / "tests" / "servers" / "ignores_sigint.py"
    result, _ = sockspec("run", "--cmd", f"{PYTHON} {server} --port {{port}}", "--only", "CH-LIFE-9", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the server was still running" in output and "after SIGINT" in output, output
    assert re.search(r"still running: pid \d+ \w+ in \S+", output), "the failure names the processes left: " + output
    assert "A likely cause" not in output, "one thread, SIGINT ignored: no thread could have taken it"


def test_a_stop_taken_by_a_worker_thread_is_explained(tmp_path: Path) -> None:
    """A threaded server whose connection thread takes SIGINT (certain here, now and
    then in a real one): its handler never runs. The failure names the threads."""
    server = REPO / "tests" / "servers" / "stop_taken_by_a_thread.py"
    result, _ = sockspec("run", "--cmd", f"{PYTHON} {server} --port {{port}}", "--only", "CH-LIFE-9", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the server was still running" in output and "after SIGINT" in output, output
    assert re.search(r"A likely cause: pid \d+ handles SIGINT, and its other thread does not block it", output), (
        "the failure points at the threads: " + output
    )


def test_a_stop_that_accept_sleeps_through_is_explained(tmp_path: Path) -> None:
    """A server whose handler only sets a flag, read by a loop asleep in accept():
    it would stop at the next client. The failure points at the accept."""
    server = REPO / "tests" / "servers" / "stops_at_the_next_client.py"
    result, _ = sockspec("run", "--cmd", f"{PYTHON} {server} --port {{port}}", "--only", "CH-LIFE-9", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the server was still running" in output and "after SIGINT" in output, output
    assert re.search(
        r"A likely cause: pid \d+ handles SIGINT, yet its main thread still sleeps in accept\(\)", output
    ), "the failure points at the accept: " + output
    assert "does not block it" not in output, "its threads block the stop signals: no thread hint"


def test_a_node_server_that_overruns_gets_no_hint_about_python(tmp_path: Path) -> None:
    """The Node student server waits for its connections to close before it exits,
    so it overruns CH-LIFE-9. Node has threads open to SIGTERM by design, and its
    handlers do not depend on the main thread: the Python hint must not appear."""
    server = REPO / "tests" / "servers" / "node_student" / "server.js"
    result, _ = sockspec("run", "--cmd", f"node {server} --port {{port}}", "--only", "CH-LIFE-9", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the server was still running" in output, output
    assert "A likely cause" not in output, output


def test_a_target_that_exits_during_the_run_is_named_as_the_cause(tmp_path: Path) -> None:
    """The server crashes (status 3, a traceback) at its first INCR: what fails after
    that says so, with its stderr, once; nothing reads as a plain "refused"."""
    server = REPO / "tests" / "servers" / "crashes_on_incr.py"
    report = tmp_path / "report.json"
    result, _ = sockspec(
        "run", "--cmd", f"{PYTHON} {server} --port {{port}}", "--only", "CH-CMD-*", "--json", str(report), cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    results = json.loads(report.read_text())["targets"][0]["results"]
    failed = [r for r in results if r["verdict"] == "FAIL"]
    assert failed, output
    after = [r for r in failed if r["detail"].startswith("the server exited with status 3")]
    # The INCR that crashes it (CH-CMD-7) may be judged before the exit is seen; those after it never are.
    assert {"CH-CMD-8", "CH-CMD-9"} <= {r["id"] for r in after}, [r["detail"] for r in failed]
    assert "Fix first: the target stopped during the run" in output
    assert output.count("ValueError: invalid literal for int()") == 1, "the exit is explained once, with its stderr"


# ---- a level only for what was checked ------------------------------------------------------------


@pytest.mark.slow
def test_a_must_that_could_not_be_checked_is_no_pass(tmp_path: Path) -> None:
    """Without the DNS scenarios (--no-dns), six core MUSTs of a client are not
    checked: no level is claimed and the run exits 2, unless --allow-unchecked."""
    report = tmp_path / "report.json"
    result, _ = sockspec("run", "--client-reference", "--no-dns", "--json", str(report), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    data = json.loads(report.read_text())
    [client] = data["targets"]
    assert client["conformance"] == "unchecked"
    assert client["unchecked"] == [f"CH-CLIENT-{n}" for n in range(1, 7)]
    assert "could not be checked" in client["level"] and "--no-dns" in client["level"]
    assert "--allow-unchecked" in output
    accepted, _ = sockspec("run", "--client-reference", "--no-dns", "--allow-unchecked", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_a_template_without_idle_leaves_the_timeout_checks_unsupported_never_failed(tmp_path: Path) -> None:
    """Started without {idle}, the server keeps its own timer: judging CH-TIMEOUT-10 as if the timer had been
    disabled would blame the server for the suite's own choice."""
    student = REPO / "tests" / "servers" / "asyncio_student.py"
    report = tmp_path / "report.json"
    result, _ = sockspec(
        "run", "--cmd", f"{PYTHON} {student} --port {{port}}", "--only", "CH-TIMEOUT-*", "--json", str(report),
        cwd=tmp_path,
    )  # fmt: skip
    results = {r["id"]: r for r in json.loads(report.read_text())["targets"][0]["results"]}
    assert all(r["verdict"] == "UNSUPPORTED" for r in results.values()), {i: r["verdict"] for i, r in results.items()}
    assert "has no {idle} placeholder" in results["CH-TIMEOUT-10"]["detail"]
    assert result.returncode == 2  # MUSTs the run could not check: never a silent pass


def test_a_parallel_run_opens_with_what_the_server_announced_and_no_worker_chatter(tmp_path: Path) -> None:
    student = REPO / "tests" / "servers" / "asyncio_student.py"
    result, _ = sockspec(
        "run", "--cmd", f"{PYTHON} {student} --port {{port}}", "--only", "CH-FRAME-1", "-n", "2", cwd=tmp_path
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[0].startswith("sockspec: asyncio_student: answers at 127.0.0.1:"), lines[:3]
    assert lines[1].startswith("FRAME"), lines[:3]  # xdist's "bringing up nodes..." no longer comes between
    assert "bringing up nodes" not in result.stdout
