"""The parts behind the connect and DNS client checks (CH-CLIENT-1 to
CH-CLIENT-6, CH-CLIENT-13), each on its own: the suite's DNS server on a real
socket, the usage errors a template can be made to give, a client that cannot
run in the DNS scenarios' container, and a bug failing only the requirement
it breaks.

The DNS server runs here as a process on a loopback port (dnslib is in the
dev environment); the runs of the suite need Docker and skip without it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, DNSRecord

from suite.clients import zone
from suite.clients.runner import UNKNOWN_FLAG, with_unknown_flag, without_command
from suite.clients.spec import fill
from tests.docker_support import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
PLAN = zone.AddressPlan("10.47.3.0/24", "fd5c:1:2::/64")
IO_TIMEOUT = 5.0

# ---- the suite's DNS server ----------------------------------------------------------------


def _free_port() -> int:
    """A port free for both UDP and TCP on this machine, at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        tcp.bind(("127.0.0.1", port))
        return port


class ZoneServer:
    """docker/zone_server.py as a process: its stdout lines, read in a thread."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "docker" / "zone_server.py"), json.dumps(PLAN.zone()), str(self.port)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_lines(self, count: int, timeout: float = IO_TIMEOUT) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.lines) >= count, timeout)
            return list(self.lines)

    def ask(self, name: str, kind: str) -> DNSRecord:
        query = DNSRecord.question(name, kind)
        return DNSRecord.parse(query.send("127.0.0.1", self.port, timeout=IO_TIMEOUT))

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(IO_TIMEOUT)


@pytest.fixture(scope="module")
def zone_server() -> Iterator[ZoneServer]:
    server = ZoneServer()
    try:
        assert server.wait_for_lines(1)[:1] == ["READY dns"], server.lines
        yield server
    finally:
        server.close()


def test_a_servfail_name_is_answered_servfail_for_both_families(zone_server: ZoneServer) -> None:
    for kind in ("A", "AAAA"):
        reply = zone_server.ask(zone.SERVFAIL, kind)
        assert RCODE[reply.header.rcode] == "SERVFAIL" and not reply.rr, reply


def test_the_dual_stack_name_answers_loopback_aaaa_and_the_servers_a(zone_server: ZoneServer) -> None:
    aaaa, a = zone_server.ask(zone.DUAL, "AAAA"), zone_server.ask(zone.DUAL, "A")
    assert [str(r.rdata) for r in aaaa.rr] == [zone.LOOPBACK6]
    assert [str(r.rdata) for r in a.rr] == [PLAN.gateway]
    assert PLAN.expected_order(zone.DUAL) == [zone.LOOPBACK6, PLAN.gateway]
    assert PLAN.expected_order(zone.SERVFAIL) == []


def test_concurrent_queries_are_logged_one_whole_line_each(zone_server: ZoneServer) -> None:
    """The UDP server answers each query in a thread: their log lines must not run together."""
    before = len(zone_server.wait_for_lines(1))
    senders, each = 8, 25

    def send() -> None:
        for _ in range(each):
            assert zone_server.ask(zone.GOOD, "A").header.rcode == RCODE.NOERROR

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(IO_TIMEOUT * each)
    # Earlier tests' lines may still be on their way through the reader: count only this test's.
    wanted = f"query {zone.GOOD}. A from 127.0.0.1"
    with zone_server.changed:
        zone_server.changed.wait_for(lambda: zone_server.lines[before:].count(wanted) >= senders * each, IO_TIMEOUT)
    lines = zone_server.wait_for_lines(1)
    assert lines[before:].count(wanted) == senders * each, lines[before:]
    assert not [line for line in lines if line.count("query") > 1], "two log lines ran together"


# ---- usage errors from a template (CH-CLIENT-13) ------------------------------------------


def _filled(template: str) -> list[str]:
    return fill(template, host="h", port="1", ca="/ca.pem", cmd=["PING"])


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("python3 -m client {host} {port} {cmd}", ["python3", "-m", "client", UNKNOWN_FLAG, "h", "1", "PING"]),
        ("c --ca {ca} --host {host} {port} {cmd}", ["c", "--ca", "/ca.pem", UNKNOWN_FLAG, "--host", "h", "1", "PING"]),
        ("c --to={host}:{port} '{cmd}'", ["c", UNKNOWN_FLAG, "--to=h:1", "PING"]),
        ("sh -c 'exec c {host} {port} {cmd}'", ["sh", "-c", f"exec c {UNKNOWN_FLAG} h 1 PING"]),
    ],
)
def test_the_unknown_flag_goes_before_the_first_argument(template: str, expected: list[str]) -> None:
    assert _filled(with_unknown_flag(template)) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("c {host} {port} {cmd}", ["c", "h", "1"]),
        ("c {host} {port} '{cmd}' --verbose", ["c", "h", "1", "--verbose"]),
        ("sh -c 'exec c {host} {port} {cmd} '", ["sh", "-c", "exec c h 1  "]),
    ],
)
def test_the_command_can_be_left_out(template: str, expected: list[str]) -> None:
    assert _filled(without_command(template)) == expected


@pytest.mark.parametrize(
    ("edit", "template"),
    [
        (with_unknown_flag, "{host} {port} {cmd}"),
        (without_command, "c {host} {port} -c{cmd}"),
        (without_command, "c {host} {port}"),
        (without_command, "sh -c 'c {host} {port} {cmd}'"),
    ],
)
def test_a_template_that_allows_no_such_edit_says_why(edit: Any, template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        edit(template)


# ---- runs of the suite ------------------------------------------------------------------


def _run_suite(args: list[str], report: Path) -> tuple[int, dict[str, Any], str]:
    command = [sys.executable, "-m", "suite.cli", "run", *args, "--json", str(report), "--seed", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    tail = (result.stdout + result.stderr)[-4000:]
    assert report.exists(), f"no report (exit {result.returncode}):\n{tail}"
    return result.returncode, json.loads(report.read_text()), tail


def _verdicts(data: dict[str, Any]) -> dict[str, tuple[str, str]]:
    (target,) = data["targets"]
    return {r["id"]: (r["verdict"], r["detail"]) for r in target["results"]}


def test_a_client_without_an_overall_deadline_fails_ch_client_4_and_not_6(tmp_path: Path) -> None:
    """It tries every address, past the deadline, and then exits 4: what CH-CLIENT-6 asks."""
    docker_or_skip()
    template = "python3 -m tests.client_mutants no-overall-deadline {host} {port} {cmd}"
    started = time.monotonic()
    _, data, tail = _run_suite(["--client-cmd", template, "--only", "CH-CLIENT-4,CH-CLIENT-6"], tmp_path / "r.json")
    verdicts = _verdicts(data)
    assert verdicts["CH-CLIENT-4"][0] == "FAIL", (verdicts, tail)
    assert verdicts["CH-CLIENT-6"][0] == "PASS", (verdicts, tail)
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(
    ("program", "not_mounted"),
    [
        # On this machine (the front door checks that) and not in the container's image.
        ("/usr/bin/node", "Not mounted: /usr/bin/node"),
        # A shell in the template that cannot find the program: exit 127.
        ("sh -c 'exec sockspec-no-such-node \"$@\"' client", ""),
    ],
    ids=["absent-program", "shell-not-found"],
)
def test_a_command_the_containers_image_lacks_is_an_error_that_says_where_it_ran(
    tmp_path: Path, program: str, not_mounted: str
) -> None:
    docker_or_skip()
    if program.startswith("/") and not Path(program).exists():
        pytest.skip(f"{program} is not on this machine")
    template = f"{program} {REPO}/client.js {{host}} {{port}} {{cmd}}"
    code, data, tail = _run_suite(["--client-cmd", template, "--only", "CH-CLIENT-2"], tmp_path / "r.json")
    verdict, detail = _verdicts(data)["CH-CLIENT-2"]
    assert verdict == "ERROR", (detail, tail)
    for fact in (
        "could not be started",
        "in a container of the image sockspec-base:",
        f"{REPO} (the working directory)",
        "(the CA's directory)",
        not_mounted,
        "--client-cmd-image IMAGE",
    ):
        assert fact in detail, (fact, detail)
    assert code != 0, tail
