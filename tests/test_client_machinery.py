"""The parts behind the client checks, each on its own: templates, the timed
runner, the address plan that fixes the resolver's order, and the suite's
adversarial server meeting a client's modes on a real socket."""

from __future__ import annotations

import base64
import ipaddress
import socket
import struct
import sys
import textwrap
import threading
import time

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suite.clients import timed
from suite.clients.adversary import Adversary, Session, answer
from suite.clients.spec import MAIN, ClientSpec, check_template, fill
from suite.clients.zone import CLIENT_SLOTS, DEAD_COUNT, AddressPlan

# ---- templates -----------------------------------------------------------------


def test_cmd_alone_becomes_one_word_per_request_word_and_inside_a_word_one_string() -> None:
    argv = fill("c --to={host}:{port} --ca {ca} {cmd} -m '{cmd}'", host="h", port="1", ca="/x", cmd=["ECHO", "hi"])
    assert argv == ["c", "--to=h:1", "--ca", "/x", "ECHO", "hi", "-m", "ECHO hi"]


@pytest.mark.parametrize(
    ("template", "message"),
    [("c {hots}", "unknown placeholder {hots}"), ("c {host", "bad client template"), ("c 'x", "bad client template")],
)
def test_bad_templates_are_refused_with_the_reason(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_template(template)


def test_a_template_that_takes_a_ca_is_the_tls_template_too() -> None:
    assert ClientSpec("c", {MAIN: "c --ca {ca} {host}"}).features() == ["tls"]
    assert ClientSpec("c", {MAIN: "c {host}"}).features() == []
    both = ClientSpec("c", {MAIN: "c {host}", "framed": "c -f {host}"})
    assert both.template("framed") == "c -f {host}"
    assert both.template("tls") is None


# ---- the timed runner ------------------------------------------------------------

HANGS_WITH_A_CHILD = textwrap.dedent(
    """
    import subprocess, sys, threading
    child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
    print(child.pid, flush=True)
    threading.Event().wait()
    """
)


def test_a_hung_client_is_killed_at_the_deadline_with_its_whole_group() -> None:
    # The deadline leaves the child ample time to start its own child on a loaded machine.
    report = timed.run([sys.executable, "-c", HANGS_WITH_A_CHILD], deadline=5.0)
    assert report["hung"] and report["status"] is None
    assert 5.0 <= report["elapsed"] < 8.0
    output = base64.b64decode(report["stdout"]).split()
    assert output, f"the child never started its own child: {report}"
    grandchild = int(output[0])
    # SIGKILL is delivered asynchronously: on a loaded machine the grandchild may still be on
    # its way out when the runner returns, so wait for it to be gone, with a deadline.
    assert _dies_within(grandchild, seconds=5.0), f"process {grandchild} outlived its group's kill"


def _dies_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return True
        except psutil.NoSuchProcess:
            return True
        threading.Event().wait(0.01)
    return False


def test_a_finished_client_reports_its_status_and_output() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)"
    report = timed.run([sys.executable, "-c", code], deadline=10.0)
    assert (report["status"], report["hung"]) == (7, False)
    assert report["stdout"] == "b3V0Cg==" and report["stderr"] == "ZXJyCg=="  # base64 of "out\n", "err\n"


def test_a_command_that_cannot_start_is_an_error_not_a_status() -> None:
    report = timed.run(["/nonexistent/client"], deadline=1.0)
    assert report["status"] is None and not report["hung"] and "nonexistent" in report["error"]


# ---- the address plan ------------------------------------------------------------


def _common_prefix(a: str, b: str) -> int:
    difference = int(ipaddress.IPv4Address(a)) ^ int(ipaddress.IPv4Address(b))
    return 32 - difference.bit_length()


@given(third=st.integers(0, 255), second=st.integers(0, 255), slot=st.integers(0, 10 * CLIENT_SLOTS))
def test_from_every_client_slot_dead_sorts_before_refusing_before_good(third: int, second: int, slot: int) -> None:
    """glibc's longest-matching-prefix rule (RFC 6724 rule 9), applied to the
    plan: whatever the subnet and the client's slot, a bad address always
    shares a longer prefix with the client than the good one."""
    plan = AddressPlan(f"10.{second}.{third}.0/24")
    client = plan.client(slot)
    dead = {_common_prefix(client, address) for address in plan.dead(DEAD_COUNT)}
    assert len(dead) == 1, "dead addresses tie, so their own order is kept"
    assert dead.pop() > _common_prefix(client, plan.dns) > _common_prefix(client, plan.gateway)


def test_the_plan_keeps_docker_and_the_plan_apart() -> None:
    plan = AddressPlan("10.47.3.0/24", "fd5c:1:2::/64")
    dynamic = ipaddress.IPv4Network(plan.dynamic_range)
    fixed = {plan.gateway, plan.dns, *plan.dead(DEAD_COUNT), *(plan.client(i) for i in range(CLIENT_SLOTS))}
    assert len(fixed) == 2 + DEAD_COUNT + CLIENT_SLOTS
    assert not any(ipaddress.IPv4Address(a) in dynamic for a in fixed)
    assert all(ipaddress.IPv4Address(a) in plan.network for a in fixed)
    assert plan.gateway6 == "fd5c:1:2::1"


# ---- the adversarial server ------------------------------------------------------


def _talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    return received


def test_the_server_meets_line_mode_and_answers_in_one_byte_segments() -> None:
    with Adversary(["127.0.0.1"], answer(b"$hi", segment=1), timeout=10, linger=5) as server:
        assert _talk(server.port, b"ECHO hi\r\n") == b"$hi\r\n"
        assert server.finished(5)
    (exchange,) = server.exchanges
    assert exchange.requests == [b"ECHO hi"] and not exchange.framed
    assert [r.data for r in exchange.transcript.records if r.direction == "TX"] == [b"$", b"h", b"i", b"\r", b"\n"]


def test_the_server_switches_to_frames_after_framed() -> None:
    with Adversary(["127.0.0.1"], answer(b"$hi"), timeout=10, linger=5) as server:
        reply = _talk(server.port, b"FRAMED\r\n" + struct.pack("!I", 7) + b"ECHO hi")
        assert server.finished(5)
    assert reply == b"+OK\r\n" + struct.pack("!I", 3) + b"$hi"
    assert server.exchanges[0].framed and server.exchanges[0].requests == [b"FRAMED", b"ECHO hi"]


def test_a_little_endian_frame_header_is_noticed() -> None:
    with Adversary(["127.0.0.1"], answer(b"$hi"), timeout=10, linger=5) as server:
        _talk(server.port, b"FRAMED\r\n" + struct.pack("<I", 7) + b"ECHO hi")
        assert server.finished(5)
    assert "little-endian it would be 7" in server.exchanges[0].problems[0]


def test_a_script_failure_is_kept_as_the_suites_error() -> None:
    def broken(session: Session) -> None:
        session.request()
        raise RuntimeError("a bug in a check")

    with Adversary(["127.0.0.1"], broken, timeout=10) as server:
        _talk(server.port, b"PING\r\n")
        assert server.finished(5)
    assert server.exchanges[0].error == "RuntimeError: a bug in a check"
