"""`sockspec bench`: the smoke benchmark CI runs, and what the benchmark owes
its users besides figures.

The smoke run is one architecture and redis-server (the baseline), a tiny
matrix, both load generators (the suite's own and redis-benchmark), all the
outputs. It asserts structure and sanity: every cell measured, requests
answered, no wrong reply, the JSON valid against its schema, the tables
printed, the plot drawn. It never asserts a speed: speed belongs to
benchmarks, not to tests (docs/benchmarks.md has the figures).

Besides it: a server that answers wrongly or dies under load is reported as
such; C10K holds for evented and hybrid; bad input gets one line and exit 2;
an interrupt leaves no process behind and writes the figures so far.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from suite import cli
from suite.bench import driver, latency, report
from suite.bench.workload import workload
from tests.redis_support import redis_or_skip
from tests.test_front_door import REPO, SOCKSPEC, _wait_for
from tests.test_reference_servers import running_server

SERVERS = REPO / "tests" / "servers"
PYTHON = sys.executable
SMOKE = (
    *("--reference", "evented", "--connections", "1,8", "--pipeline", "1,8"),
    *("--commands", "ping,get", "--duration", "0.2"),
)


def bench(
    *args: str, cwd: Path, marker: str = "", timeout: float = 120, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SOCKSPEC, "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "SOCKSPEC_TEST_MARKER": marker},
        preexec_fn=preexec,
    )


def processes_of(marker: str) -> list[psutil.Process]:
    """Every process alive that a run marked with ``marker`` started (servers, drivers, redis-benchmark)."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            alive = process.info["status"] != psutil.STATUS_ZOMBIE
            if alive and process.environ().get("SOCKSPEC_TEST_MARKER") == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


# ---- the smoke benchmark ---------------------------------------------------------------------


class Smoke:
    def __init__(self, run: subprocess.CompletedProcess[str], directory: Path, marker: str, seconds: float) -> None:
        self.run = run
        self.report: dict[str, Any] = json.loads((directory / "bench.json").read_text())
        self.page = (directory / "html" / "bench.html").read_text()
        self.marker = marker
        self.seconds = seconds

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["targets"] if t["name"] == name)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    redis_or_skip("redis-server")
    redis_or_skip("redis-benchmark")
    directory = tmp_path_factory.mktemp("bench")
    marker = f"sockspec-bench-{uuid.uuid4().hex}"
    started = time.monotonic()
    run = bench(*SMOKE, "--json", "bench.json", "--html", "html", cwd=directory, marker=marker)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stderr}\n{run.stdout}"
    return Smoke(run, directory, marker, time.monotonic() - started)


def test_the_smoke_benchmark_measures_every_cell_of_both_servers(smoke: Smoke) -> None:
    assert [(t["name"], t["kind"]) for t in smoke.report["targets"]] == [
        ("evented", "reference"),
        ("redis-server", "baseline"),
    ]
    for target in smoke.report["targets"]:
        assert target["problem"] is None, target["problem"]
        cells = {(c["command"], c["pipeline"], c["connections"]) for c in target["cells"]}
        assert cells == {(c, p, n) for c in ("ping", "get") for p in (1, 8) for n in (1, 8)}, target["name"]
        for cell in target["cells"]:
            where = f"{target['name']} {cell['command']} P{cell['pipeline']} x{cell['connections']}"
            assert cell["replies"] > 0 and cell["throughput"] > 0, where
            assert cell["errors"] == cell["closed"] == cell["starved"] == 0, where
            assert 0 < cell["p50"] <= cell["p99"], where
            assert cell["rss"] > 0 and cell["threads"] >= 1 and cell["processes"] >= 1, where
        assert target["churn"]["completed"] > 0 and target["churn"]["errors"] == 0, target["name"]
        assert target["idle_rss"] > 0 and target["idle_pss"] > 0
        assert set(target["pss"]) == {"1", "8"} and all(size > 0 for size in target["pss"].values())


def test_the_report_is_valid_against_its_published_schema(smoke: Smoke) -> None:
    jsonschema.Draft202012Validator(report.schema()).validate(smoke.report)
    assert smoke.report["interrupted"] is False
    assert smoke.report["machine"]["descriptors"]["soft"] >= smoke.report["method"]["server_room"]


def test_redis_benchmark_stands_beside_the_suites_generator(smoke: Smoke) -> None:
    """PING for the CloudHash/1 server (ping_inline), every command for the RESP2 baseline."""
    seen = {}
    for target in smoke.report["targets"]:
        for cell in target["cells"]:
            other = cell["redis_benchmark"]
            if other is not None:
                assert other["problem"] is None and other["throughput"] > 0 and other["p50"] > 0, other
                seen.setdefault(target["name"], set()).add(other["test"])
    assert seen == {"evented": {"ping_inline"}, "redis-server": {"ping_mbulk", "get"}}


def test_the_tables_are_printed(smoke: Smoke) -> None:
    out = smoke.run.stdout
    for title in ("PING, pipeline 1:", "GET, pipeline 8:", "connection churn", "beside redis-benchmark"):
        assert title in out, out
    assert "evented" in out and "redis-server" in out
    assert "Traceback" not in smoke.run.stderr


def test_the_page_plots_a_line_per_server_with_the_baseline_dashed(smoke: Smoke) -> None:
    plots = smoke.page.count('<svg class="plot"')
    assert plots == 4  # PING and GET, at depths 1 and 8
    assert smoke.page.count('<polyline class="series"') == plots
    assert smoke.page.count('<polyline class="series baseline"') == plots
    assert "<script" not in smoke.page


def test_the_smoke_run_leaves_nothing_running(smoke: Smoke) -> None:
    assert processes_of(smoke.marker) == []


# ---- a server that misbehaves under load ---------------------------------------------------------


def test_wrong_replies_are_counted_and_shown_as_text(tmp_path: Path) -> None:
    """INCR answered with markup: every reply is an error, the first kept, escaped in the page."""
    server = f"{PYTHON} {SERVERS / 'replies_with_markup.py'} --port {{port}}"
    run = bench(
        *("--cmd", server, "--baseline", "none", "--connections", "2", "--pipeline", "1"),
        *("--commands", "ping,incr", "--duration", "0.1", "--no-churn", "--redis-benchmark", "none"),
        *("--json", "r.json", "--html", "html"),
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr
    cells = {c["command"]: c for c in json.loads((tmp_path / "r.json").read_text())["targets"][0]["cells"]}
    assert cells["ping"]["errors"] == 0 and cells["ping"]["replies"] > 0
    assert cells["incr"]["replies"] == 0 and cells["incr"]["errors"] > 0
    assert cells["incr"]["example_error"].startswith("<script>")
    page = (tmp_path / "html" / "bench.html").read_text()
    assert "&lt;script&gt;alert(1)" in page and "<script>alert" not in page


def test_a_server_that_dies_under_load_is_named_with_its_exit(tmp_path: Path) -> None:
    server = f"{PYTHON} {SERVERS / 'crashes_on_incr.py'} --port {{port}}"
    run = bench(
        *("--cmd", server, "--baseline", "none", "--connections", "2", "--pipeline", "1"),
        *("--commands", "ping,incr,get", "--duration", "0.1", "--redis-benchmark", "none", "--json", "r.json"),
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert "stopped under load" in target["problem"] and "status 3" in target["problem"]
    assert [c["command"] for c in target["cells"]] == ["ping", "incr"]  # nothing measured after the exit
    assert target["cells"][1]["closed"] == 2


def test_a_running_server_is_measured_and_its_memory_is_unsupported(tmp_path: Path) -> None:
    with running_server("evented", "--max-connections", "64") as (_, endpoint):
        run = bench(
            *("--address", f"localhost:{endpoint.port}", "--baseline", "none", "--connections", "2"),
            *("--pipeline", "1", "--commands", "ping", "--duration", "0.1", "--redis-benchmark", "none"),
            *("--json", "r.json"),
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["kind"] == "address" and "UNSUPPORTED" in target["unsupported"]
    cell = target["cells"][0]
    assert cell["replies"] > 0 and cell["rss"] is None and cell["threads"] is None
    assert target["idle_rss"] is None and target["pss"] == {}


# ---- C10K ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evented_and_hybrid_hold_ten_thousand_connections(tmp_path: Path) -> None:
    needed = 10_000 + 2 * 600  # the server's and the client's sockets, and some for each
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"C10K needs {needed} descriptors per process; the hard limit here is {hard}")
    run = bench("--c10k", "--reference", "evented,hybrid", "--baseline", "none", "--json", "c10k.json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "c10k.json").read_text())["c10k"]
    assert [r["name"] for r in results] == ["evented", "hybrid"]
    for result in results:
        assert result["held"], result
        assert result["opened"] == result["get_answered"] == 10_000
        assert result["rss_open"] > result["rss_before"] and result["rss_per_connection"] > 0


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no target; give --reference"),
        (("--reference", "nope"), "unknown architecture 'nope'"),
        (("--reference", "evented", "--connections", "0"), "--connections 0: give whole numbers"),
        (("--reference", "evented", "--connections", "1,many"), "--connections 1,many"),
        (("--reference", "evented", "--pipeline", "0"), "--pipeline 0"),
        (("--reference", "evented", "--commands", "ping,flush"), "known commands are ping, set, get, incr"),
        (("--reference", "evented", "--duration", "0"), "--duration 0: give seconds"),
        (("--reference", "evented", "--drivers", "0"), "--drivers 0"),
        (("--reference", "evented", "--max-requests", "0"), "--max-requests wants a positive number"),
        (("--reference", "evented", "--repeat", "0"), "--repeat 0: give a number of runs"),
        (("--reference", "evented", "--json", "/missing/dir/b.json"), "no such directory: /missing/dir"),
        (("--reference", "evented", "--html", "/etc/hostname"), "is a file"),
        (("--reference", "evented", "--profile", "smtp"), "unknown profile 'smtp'"),
        (("--cmd", "no-such-server-program --port {port}"), "no program named 'no-such-server-program'"),
        (("--address", "192.0.2.7:6379"), "sends its load over loopback only"),
        (("--address", "example.invalid:6379"), "sends its load over loopback only"),
        (("--reference", "evented", "--c10k", "--c10k-connections", "0"), "--c10k-connections wants a number"),
        (("--reference", "evented", "--baseline", "memcached"), "invalid choice: 'memcached'"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["bench", *args])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and message in lines[0], captured.err
    assert captured.out == ""


def test_a_hard_descriptor_limit_too_low_is_said_before_anything_starts(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    run = bench("--reference", "evented", "--connections", "2000", cwd=tmp_path, preexec=low_limit, timeout=30)
    assert run.returncode == 2
    assert re.search(r"needs [\d,]+ open descriptors .* the hard limit \(RLIMIT_NOFILE\) is 1,024", run.stderr)
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


# ---- interrupts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_leaves_nothing_behind_and_reports_the_figures_so_far(
    signum: signal.Signals, tmp_path: Path
) -> None:
    marker = f"sockspec-bench-{uuid.uuid4().hex}"
    run = subprocess.Popen(
        [
            *(SOCKSPEC, "bench", "--reference", "evented", "--baseline", "none", "--connections", "4"),
            *("--commands", "ping,get", "--duration", "3", "--json", "r.json"),
        ],
        cwd=tmp_path,
        env={**os.environ, "SOCKSPEC_TEST_MARKER": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # In the middle of a cell (3 s long): once the drivers' four connections are open at the server.
        _wait_for(lambda: _connections_at_the_server(marker) >= 4, 30, "the drivers' connections")
        os.kill(run.pid, signum)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 130, err
    assert f"interrupted ({signum.name})" in err and "Traceback" not in err
    _wait_for(lambda: not processes_of(marker), 10, "every process the run started to be gone")
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["interrupted"] is True
    assert document["targets"][0]["problem"].startswith("interrupted")
    assert "INTERRUPTED" in out


def _connections_at_the_server(marker: str) -> int:
    for process in processes_of(marker):
        try:
            if "reference_servers" in process.cmdline():
                return sum(1 for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
        except psutil.Error:
            continue
    return 0


# ---- the parts ----------------------------------------------------------------------------------


def _expectation(profile: str, command: str, depth: int = 4) -> driver.Expectation:
    return driver.Expectation({**workload(profile, command).op(), "depth": depth})


def test_a_run_of_expected_replies_is_counted_whole_and_a_partial_one_kept() -> None:
    ping = _expectation("cloudhash", "ping")
    assert ping.take(b"+PONG\r\n+PONG\r\n+PO") == (2, 0, b"+PO", None)
    get = _expectation("resp2", "get")
    assert get.take(b"$3\r\nxxx\r\n$3\r\nx") == (1, 0, b"$3\r\nx", None)


def test_an_integer_reply_may_be_any_integer() -> None:
    incr = _expectation("cloudhash", "incr")
    assert incr.take(b":1\r\n:2\r\n:-3\r\n:4") == (3, 0, b":4", None)


def test_a_wrong_reply_in_a_run_is_an_error_and_the_others_still_count() -> None:
    ping = _expectation("cloudhash", "ping")
    assert ping.take(b"+PONG\r\n-ERR BUSY\r\n+PONG\r\n") == (2, 1, b"", b"-ERR BUSY\r\n")
    get = _expectation("resp2", "get")  # a RESP2 reply of another shape is split by the grammar, not by lines
    assert get.take(b"$3\r\nxxx\r\n$4\r\na\r\nb\r\n$3\r\nxxx\r\n") == (2, 1, b"", b"$4\r\na\r\nb\r\n")


def test_percentiles_come_from_the_histogram_within_a_bucket() -> None:
    histogram = latency.merge([{latency.bucket(0.001): 98}, {latency.bucket(0.050): 2}])
    p50, p99 = latency.percentile(histogram, 0.5), latency.percentile(histogram, 0.99)
    assert p50 is not None and p99 is not None
    assert abs(p50 - 0.001) / 0.001 < 0.03 and abs(p99 - 0.050) / 0.050 < 0.03
    assert latency.percentile({}, 0.5) is None
