"""How the suite starts, watches and describes a user's server (suite/targets/).

Each test runs one of the small misbehaving servers in tests/servers/ as a real
process, the way `sockspec run --cmd` would, and states what the suite must make
of it: a READY line found after a flood, a never-ready server given up once, a
crash described with its status and stderr, only announced ports dialled, and an
unanswered INFO reported as itself.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from suite.certs import CertificateFiles, make_certificates
from suite.docker import engine as docker_engine
from suite.docker import images
from suite.probe import HarnessError, Unsupported
from suite.targets.container import ContainerProcess
from suite.targets.factory import TargetDidNotStart, TargetPool, TargetSpec
from suite.targets.process import READY_SHAPE, Endpoint, ServerProcess, TargetNotReady, free_port
from suite.wire import Wire
from tests.docker_support import docker_or_skip

SERVERS = Path(__file__).parent / "servers"
READY_TIMEOUT = 15.0  # the suite's default readiness timeout
SHORT_READY_TIMEOUT = 2.0  # for the server that never gets ready: the test waits this once
GIVE_UP_MARGIN = 3.0  # killing, reaping and describing on a loaded two-core machine
AT_ONCE = 0.2  # a remembered failure costs no start
CRASH_WITHIN = 10.0  # crashes_after_start.py dies about 2 s after READY
TLS_FLAGS = "--port {port} --tls-port {tls_port} --cert {cert} --key {key}"


def command(script: str, flags: str = "--port {port}") -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(SERVERS / script))} {flags}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def pool(certs: CertificateFiles) -> Iterator[TargetPool]:
    specs = {
        "never-ready": TargetSpec("never-ready", template=command("never_ready.py")),
        "tls-flag": TargetSpec(
            "tls-flag",
            template=command("tls_flag_without_tls.py", TLS_FLAGS),
        ),
        "no-info": TargetSpec("no-info", template=command("no_info.py")),
        "nobody-home": TargetSpec("nobody-home", address=Endpoint("127.0.0.1", free_port())),
    }
    targets = TargetPool(specs, certs, {}, timeout=2.0, ready_timeout=SHORT_READY_TIMEOUT)
    yield targets
    targets.close()


def group_members(pgid: int) -> list[int]:
    """Processes still alive (not zombies) in process group ``pgid``."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def ping(endpoint: Endpoint) -> bytes | None:
    with Wire.connect(endpoint.host, endpoint.port, timeout=5.0) as wire:
        wire.send(b"PING\r\n", 5.0)
        return wire.read_line(5.0)


def test_a_ready_line_after_32_mib_without_a_newline_is_found_well_inside_the_timeout() -> None:
    started = time.monotonic()
    with ServerProcess([sys.executable, str(SERVERS / "floods_before_ready.py"), "--port", "0"]) as server:
        endpoint = server.start(timeout=READY_TIMEOUT)
        took = time.monotonic() - started
        print(f"READY found after the 32 MiB flood in {took:.2f} s")
        assert endpoint.host == "127.0.0.1" and endpoint.tls_port is None
        assert ping(endpoint) == b"+PONG\r\n"
        assert took < READY_TIMEOUT / 5, f"READY took {took:.1f} s to find"
        kept = server.collect_stdout()
        assert len(kept) < 256 * 1024, "the flood is capped, not kept whole"
        assert b"bytes not kept" in kept


def test_a_server_that_never_gets_ready_is_described_in_one_paragraph_and_killed() -> None:
    port = free_port()
    argv = [sys.executable, str(SERVERS / "never_ready.py"), "--port", str(port)]
    started = time.monotonic()
    with ServerProcess(argv) as server, pytest.raises(TargetNotReady) as raised:
        server.start(timeout=SHORT_READY_TIMEOUT, expect_port=("127.0.0.1", port))
    took = time.monotonic() - started
    print(f"gave up after {took:.2f} s (readiness timeout {SHORT_READY_TIMEOUT} s)")
    assert took < SHORT_READY_TIMEOUT + GIVE_UP_MARGIN
    text = str(raised.value)
    assert shlex.join(argv) in text
    assert f"still running after {SHORT_READY_TIMEOUT:.1f} s, never printed READY" in text
    assert f"never accepted on port {port}" in text
    assert READY_SHAPE in text
    assert "printed nothing on standard output" in text
    assert "b'" not in text and 'b"' not in text
    assert group_members(server.pid) == []


def test_a_crash_is_reported_with_its_status_and_its_stderr_as_text() -> None:
    with ServerProcess([sys.executable, str(SERVERS / "crashes_after_start.py"), "--port", "0"]) as server:
        endpoint = server.start(timeout=READY_TIMEOUT)
        assert ping(endpoint) == b"+PONG\r\n"
        assert server.exit_report() is None, "no report while the server runs"
        assert server.wait(CRASH_WITHIN) == 3
        report = server.exit_report()
    assert report is not None
    assert report.startswith("the server exited with status 3 ")
    assert "s after it started" in report
    assert "RuntimeError: boom" in report
    assert "b'" not in report and "\\n" not in report
    assert group_members(server.pid) == []


def test_a_kill_by_the_suite_is_no_death_of_the_target_and_leaves_no_process() -> None:
    # Through a shell that leaves a helper behind, as a student's start script might.
    script = f"sleep 300 & exec {shlex.quote(sys.executable)} {shlex.quote(str(SERVERS / 'no_info.py'))} --port 0"
    server = ServerProcess(script)
    server.start(timeout=READY_TIMEOUT)
    assert len(group_members(server.pid)) == 2, "the server and the shell's sleep"
    server.kill()
    assert server.exit_report() is None
    assert group_members(server.pid) == []


def test_a_target_that_failed_to_start_is_not_started_again(pool: TargetPool) -> None:
    started = time.monotonic()
    with pytest.raises(HarnessError) as first:
        pool.shared("never-ready")
    assert time.monotonic() - started < SHORT_READY_TIMEOUT + GIVE_UP_MARGIN
    assert "never printed READY" in str(first.value)
    for again in (
        lambda: pool.shared("never-ready"),
        lambda: pool.fresh("never-ready").__enter__(),
        lambda: pool.launched("never-ready").__enter__(),
        lambda: pool.preflight("never-ready"),
    ):
        started = time.monotonic()
        try:
            result = again()
        except TargetDidNotStart as error:
            assert isinstance(error, HarnessError) and isinstance(error, TargetNotReady)
            assert str(error) == str(first.value)
        else:
            assert getattr(result, "problem", None) == str(first.value)
        assert time.monotonic() - started < AT_ONCE


def test_a_server_with_a_tls_flag_but_no_tls_has_no_tls_port(pool: TargetPool) -> None:
    target = pool.shared("tls-flag")
    assert target.endpoint.tls_port is None, "the template's {tls_port} was not announced, so it is not dialled"
    with pytest.raises(Unsupported, match="the READY line announced no tls= port"):
        target.tls_port()


def test_an_unanswered_info_is_reported_as_itself(pool: TargetPool) -> None:
    declared = pool.shared("no-info").declared
    assert declared.info_problem == "INFO was answered with '-ERR UNKNOWN command'"
    with pytest.raises(HarnessError, match=r"did not answer INFO \(INFO was answered with '-ERR UNKNOWN"):
        declared.number("max_connections")
    result = pool.preflight("no-info")
    assert result.ok
    assert result.warnings and "did not answer INFO" in result.warnings[0]
    assert "warning: the target did not answer INFO" in result.summary()


def test_preflight_of_an_address_where_nothing_listens_says_so_in_one_line(pool: TargetPool) -> None:
    result = pool.preflight("nobody-home")
    port = pool.specs["nobody-home"].address.port  # type: ignore[union-attr]
    assert result.problem == f"nobody-home: nothing accepts connections at 127.0.0.1:{port} (connection refused)"


def test_preflight_of_a_working_target_says_what_it_announced(pool: TargetPool) -> None:
    result = pool.preflight("tls-flag")
    assert result.ok and result.endpoint is not None
    summary = result.summary()
    assert summary.startswith(f"answers at 127.0.0.1:{result.endpoint.port}, no TLS port announced; INFO: ")
    assert "max_connections=16" in summary


def test_a_server_that_dies_before_ready_is_described_with_its_status_stdout_and_stderr() -> None:
    program = (
        "import sys; print('starting up'); sys.stderr.write('Traceback ...\\nValueError: no config\\n'); sys.exit(3)"
    )
    argv = [sys.executable, "-c", program]
    with ServerProcess(argv) as server, pytest.raises(TargetNotReady) as raised:
        server.start(timeout=READY_TIMEOUT)
    text = str(raised.value)
    first, *rest = text.splitlines()
    assert first.startswith(f"the target `{shlex.join(argv)}` exited with status 3 ")
    assert "before it printed READY" in first
    assert "its standard output instead was 12 bytes: 'starting up\\n'" in first
    assert rest == ["Its standard error ended with:", "  | Traceback ...", "  | ValueError: no config"]


@pytest.fixture(scope="module")
def server_image() -> tuple[object, str]:
    engine = docker_or_skip()
    return engine, images.build_server_image(engine, images.load_bases()["bookworm"], log=lambda line: None)


def test_a_container_that_exits_before_ready_is_described_with_its_status_and_stderr(
    server_image: tuple[object, str],
) -> None:
    engine, image = server_image
    labels = docker_engine.labels(docker_engine.new_run_id())
    container = ContainerProcess(engine, image, ["no-such-architecture"], network="bridge", labels=labels)
    with container, pytest.raises(TargetNotReady) as raised:
        container.start(timeout=READY_TIMEOUT)
    first, *rest = str(raised.value).splitlines()
    assert "running `no-such-architecture` ended before it printed READY; it exited with status 2" in first
    assert rest[0] == "Its standard error ended with:"
    assert "invalid choice: 'no-such-architecture'" in rest[-1]


def test_a_container_that_ended_is_described_after_its_removal(server_image: tuple[object, str]) -> None:
    engine, image = server_image
    labels = docker_engine.labels(docker_engine.new_run_id())
    argv = ["evented", "--host", "0.0.0.0", "--port", "4481"]
    with ContainerProcess(engine, image, argv, network="bridge", labels=labels) as container:
        container.start(timeout=READY_TIMEOUT)
        assert container.exit_report() is None, "no report while the server runs"
        assert container.terminate(CRASH_WITHIN) == 0
    report = container.exit_report()  # removed by now
    assert report is not None and report.startswith("the server exited with status 0 ")
    assert "after the suite sent it SIGTERM" in report
