"""The reference client (reference_client/), as a real process over real sockets.

Every run is ``python -S -m reference_client ...`` in a subprocess: ``-S``
keeps site-packages off the path, so the client is shown to need nothing but
the standard library, as in any image with python3. The success paths run
against a real reference server (evented, with TLS); the failure paths against
small adversarial servers (tests/client_support.py), one thread each, with
plain sockets.

No test sleeps to synchronise: every wait is for a reply, a close or a process,
with a deadline. Two deliberate pauses remain, each commented: the pacing of
one-byte segments, and the window in which a STARTTLS client must stay silent.
"""

from __future__ import annotations

import contextlib
import datetime
import select
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
import trustme

from reference_client.connect import Address, connect
from suite.certs import CertificateFiles
from suite.targets.process import Endpoint, ServerProcess, free_port
from tests.client_support import (
    CONNECT,
    DNS,
    ERROR_REPLY,
    IO_TIMEOUT,
    OK,
    PROTOCOL,
    QUICK,
    REPO,
    RUN_TIMEOUT,
    TIMEOUT,
    TLS,
    USAGE,
    Adversary,
    Client,
    Run,
    Trust,
    answer,
    blackhole_port,
    framed_answer,
    make_trust,
    read_line,
    server_context,
    silent,
    wait_for_close,
)

# ---- running the client --------------------------------------------------------


def client(*args: str) -> Run:
    with Client([sys.executable, "-S", "-m", "reference_client", *args]) as running:
        return running.finish()


# ---- a real reference server -------------------------------------------------------


@pytest.fixture(scope="module")
def server(tls_material: CertificateFiles) -> Iterator[Endpoint]:
    argv = [sys.executable, "-m", "reference_servers", "evented", "--port", "0"]
    argv += ["--tls-port", "0", "--cert", str(tls_material.cert), "--key", str(tls_material.key)]
    with ServerProcess(argv, cwd=str(REPO)) as process:
        endpoint = process.start(timeout=15.0)
        assert endpoint.tls_port is not None
        yield endpoint


def key() -> str:
    return f"rc-{uuid.uuid4().hex[:12]}"


# ---- certificates for the adversaries ----------------------------------------------


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("client-tls"))


# ---- usage ----------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that listens but never accepts: a client that connects shows up in its queue."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["HOSTONLY"],
        ["localhost", "not-a-port", "PING"],
        ["localhost", "0", "PING"],
        ["localhost", "PORT"],  # no request
        ["--bogus", "localhost", "PORT", "PING"],
        ["--tls", "--starttls", "localhost", "PORT", "PING"],
        ["--abort-after", "50", "localhost", "PORT", "SLEEP", "1000"],
        ["--abort-after", "soon", "localhost", "PORT", "SLEEP", "1000"],
        ["--timeout", "-1", "localhost", "PORT", "PING"],
        ["--connect-timeout", "nan", "localhost", "PORT", "PING"],
        ["--tls", "--ca", "/nonexistent/ca.pem", "localhost", "PORT", "PING"],
        ["localhost", "PORT", "ECHO", "a\nb"],  # LF cannot be sent in line mode
        ["-e", "localhost", "PORT", "ECHO", "bad \\q escape"],
    ],
)
def test_usage_error_exits_2_without_connecting(args: list[str], listener: socket.socket) -> None:
    port = str(listener.getsockname()[1])
    run = client(*[port if arg == "PORT" else arg for arg in args])
    assert run.status == USAGE, run
    assert run.stdout == b""
    assert not select.select([listener], [], [], 0)[0], "the client connected despite a usage error"


def test_help_documents_the_exit_statuses() -> None:
    run = client("--help")
    assert run.status == OK
    text = run.stdout.decode()
    for status in range(8):
        assert f"\n  {status}  " in text
    for flag in ("--tls", "--starttls", "--ca", "--framed", "--abort-after", "-c", "--timeout", "--deadline"):
        assert flag in text


def test_defaults_are_the_specs() -> None:
    from reference_client.cli import parse

    options = parse(["localhost", "4481", "PING"])
    assert (options.connect_timeout, options.deadline, options.read_timeout) == (2.0, 10.0, 5.0)
    assert options.requests == (b"PING",)


def test_standard_library_only() -> None:
    code = (
        "import sys; import reference_client.cli, reference_client.session; "
        "loaded = {name.split('.')[0] for name in sys.modules}; "
        "print(sorted(loaded - set(sys.stdlib_module_names) - {'reference_client', '__main__'}))"
    )
    argv = [sys.executable, "-S", "-c", code]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"[]"


# ---- against the reference server ------------------------------------------------------


def test_ping(server: Endpoint) -> None:
    run = client(server.host, str(server.port), "PING")
    assert (run.status, run.stdout) == (OK, b"+PONG\n")


def test_pipelined_requests_answered_in_order(server: Endpoint) -> None:
    k = key()
    run = client(
        "-c", f"SET {k} hello  world", "-c", f"GET {k}", "-c", f"DEL {k}", "localhost", str(server.port), "GET", k
    )
    assert (run.status, run.stdout) == (OK, b"+OK\n$hello  world\n:1\n_\n")


def test_arguments_after_command_are_not_flags(server: Endpoint) -> None:
    run = client("localhost", str(server.port), "ECHO", "--tls", "-5")
    assert (run.status, run.stdout) == (OK, b"$--tls -5\n")


def test_error_reply_exits_1(server: Endpoint) -> None:
    run = client("localhost", str(server.port), "-c", "PING", "FLY", "me")
    assert run.status == ERROR_REPLY
    assert run.stdout.startswith(b"+PONG\n-ERR UNKNOWN ")


def test_framed_mode_carries_binary_values(server: Endpoint) -> None:
    k = key()
    run = client("--framed", "-e", "-c", f"SET {k} a\\r\\nb\\0c\\xff", "localhost", str(server.port), "GET", k)
    assert (run.status, run.stdout) == (OK, b"+OK\n$a\r\nb\0c\xff\n")
    line = client("localhost", str(server.port), "GET", k)  # LF in the value: not in line mode
    assert line.status == ERROR_REPLY
    assert line.stdout.startswith(b"-ERR STATE")


def test_happy_eyeballs(server: Endpoint) -> None:
    run = client("--happy-eyeballs", "localhost", str(server.port), "PING")
    assert (run.status, run.stdout) == (OK, b"+PONG\n")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_implicit_tls(server: Endpoint, tls_material: CertificateFiles, host: str) -> None:
    run = client("--tls", "--ca", str(tls_material.ca), host, str(server.tls_port), "PING")
    assert (run.status, run.stdout) == (OK, b"+PONG\n"), run.stderr


def test_starttls_upgrades(server: Endpoint, tls_material: CertificateFiles) -> None:
    # A second STARTTLS gets STATE only inside TLS: proof that the upgrade happened.
    run = client("--starttls", "--ca", str(tls_material.ca), "-c", "PING", "localhost", str(server.port), "STARTTLS")
    assert run.status == ERROR_REPLY, run.stderr
    assert run.stdout.startswith(b"+PONG\n-ERR STATE ")


def test_tls_without_ca_uses_the_system_store(server: Endpoint) -> None:
    run = client("--tls", "localhost", str(server.tls_port), "PING")
    assert (run.status, run.stdout) == (TLS, b"")


def test_tls_name_override_is_verified(server: Endpoint, tls_material: CertificateFiles) -> None:
    args = ("--ca", str(tls_material.ca), "--servername", "wrong.example", "127.0.0.1")
    run = client("--tls", *args, str(server.tls_port), "PING")
    assert run.status == TLS
    run = client("--starttls", *args, str(server.port), "PING")
    assert run.status == TLS


@pytest.mark.parametrize("mode", [[], ["--framed"], ["--tls"]])
def test_abort_after_ends_a_sleep(server: Endpoint, tls_material: CertificateFiles, mode: list[str]) -> None:
    port = server.tls_port if mode == ["--tls"] else server.port
    run = client(
        *mode, "--ca", str(tls_material.ca), "--abort-after", "200", "-c", "SLEEP 5000", "localhost", str(port), "PING"
    )
    assert run.status == ERROR_REPLY, run.stderr
    assert run.stdout.startswith(b"-ERR ABORTED")
    assert run.stdout.endswith(b"\n+PONG\n")
    assert run.elapsed < QUICK


def test_abort_after_is_one_byte_per_sleep(server: Endpoint) -> None:
    # The second SLEEP starts when the first is aborted, and gets its own byte.
    run = client("--abort-after", "150", "-c", "SLEEP 5000", "localhost", str(server.port), "SLEEP", "5000")
    assert run.status == ERROR_REPLY, run.stderr
    assert run.stdout.count(b"-ERR ABORTED") == 2
    assert run.elapsed < QUICK + 0.5


# ---- against adversaries: replies -------------------------------------------------------


def test_one_byte_segments_are_reassembled() -> None:
    with Adversary(answer(b"+PONG\r\n$a b\rc\r\n:-12\r\n_\r\n", requests=4, one_byte_segments=True)) as adv:
        run = client("-c", "PING", "-c", "GET a", "-c", "INCR n", "localhost", str(adv.port), "GET", "x")
    assert (run.status, run.stdout) == (OK, b"+PONG\n$a b\rc\n:-12\n_\n")


def test_one_byte_segments_are_reassembled_in_framed_mode() -> None:
    with Adversary(framed_answer(b"\x00\x00\x00\x06$a\nb\0c", one_byte_segments=True)) as adv:
        run = client("--framed", "localhost", str(adv.port), "GET", "k")
    assert (run.status, run.stdout) == (OK, b"$a\nb\0c\n")


def test_error_reply_from_a_server_exits_1() -> None:
    with Adversary(answer(b"-ERR UNKNOWN no such command\r\n")) as adv:
        run = client("localhost", str(adv.port), "FLY")
    assert (run.status, run.stdout) == (ERROR_REPLY, b"-ERR UNKNOWN no such command\n")


def test_final_error_then_close_exits_1_not_7() -> None:
    with Adversary(answer(b"+PONG\r\n-ERR SHUTDOWN going away\r\n", requests=3)) as adv:
        run = client("-c", "PING", "-c", "PING", "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (ERROR_REPLY, b"+PONG\n-ERR SHUTDOWN going away\n")


def test_busy_on_accept_exits_1() -> None:
    with Adversary(answer(b"-ERR BUSY too many connections\r\n", requests=0)) as adv:
        run = client("--framed", "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (ERROR_REPLY, b"-ERR BUSY too many connections\n")


def test_read_timeout_is_honoured() -> None:
    with Adversary(silent) as adv:
        run = client("--timeout", "1.5", "localhost", str(adv.port), "PING")
    assert run.status == TIMEOUT, run
    assert 1.0 <= run.elapsed <= 2.0, run.elapsed


@pytest.mark.parametrize(
    ("reply", "requests"),
    [
        (b"", 1),  # closed before any reply
        (b"$hel", 1),  # in the middle of a reply
        (b"+PONG\r", 1),  # between CR and LF
        (b"+PONG\r\n", 2),  # before the second reply
    ],
)
def test_close_mid_reply_is_a_protocol_error(reply: bytes, requests: int) -> None:
    with Adversary(answer(reply, requests=requests)) as adv:
        run = client(*["-c", "PING"] * (requests - 1), "localhost", str(adv.port), "PING")
    assert run.status == PROTOCOL, run
    assert run.elapsed < QUICK


def test_reset_mid_reply_is_a_protocol_error() -> None:
    def handle(conn: socket.socket) -> None:
        read_line(conn)
        conn.sendall(b"$hel")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: RST instead of FIN

    with Adversary(handle) as adv:
        run = client("localhost", str(adv.port), "GET", "k")
    assert run.status == PROTOCOL, run
    assert run.elapsed < QUICK


@pytest.mark.parametrize(
    "reply",
    [
        b"hello\r\n",
        b"+pong\r\n",
        b"+PONG\n",  # bare LF
        b":01\r\n",
        b":-0\r\n",
        b":1a\r\n",
        b"_x\r\n",
        b"-ERR\r\n",
        b"-ERR NOPE what\r\n",
    ],
)
def test_malformed_reply_is_a_protocol_error(reply: bytes) -> None:
    with Adversary(answer(reply)) as adv:
        run = client("localhost", str(adv.port), "PING")
    assert run.status == PROTOCOL, run
    assert run.stdout == b""


def test_malformed_reply_is_refused_without_waiting_for_its_end() -> None:
    with Adversary(answer(b"+PONG!", close=False)) as adv:
        run = client("localhost", str(adv.port), "PING")
    assert run.status == PROTOCOL, run
    assert run.elapsed < QUICK


@pytest.mark.parametrize("reply", [b"+PONG\r\n", b"\x00\x00\x00\x00"])  # a line; an empty frame
def test_framed_reply_that_is_no_frame_is_a_protocol_error(reply: bytes) -> None:
    with Adversary(framed_answer(reply)) as adv:
        run = client("--framed", "localhost", str(adv.port), "PING")
    assert run.status == PROTOCOL, run
    assert run.elapsed < QUICK


# ---- against adversaries: names and connections -------------------------------------------


def test_dns_failure_exits_3_promptly() -> None:
    run = client("sockspec-reference-client.invalid", "4481", "PING")  # RFC 6761: never resolves
    assert run.status == DNS, run
    assert run.elapsed < QUICK


def test_nothing_listening_exits_4() -> None:
    run = client("127.0.0.1", str(free_port()), "PING")
    assert run.status == CONNECT, run
    assert run.elapsed < QUICK


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that never answers a SYN (see client_support.blackhole_port)."""
    with blackhole_port() as port:
        yield port


def test_each_attempt_has_its_own_timeout(blackhole: int) -> None:
    run = client("--connect-timeout", "0.5", "127.0.0.1", str(blackhole), "PING")
    assert run.status == CONNECT, run
    assert 0.5 <= run.elapsed < 1.5


def test_connecting_has_an_overall_deadline(blackhole: int) -> None:
    run = client("--connect-timeout", "5", "--deadline", "0.7", "127.0.0.1", str(blackhole), "PING")
    assert run.status == CONNECT, run
    assert 0.7 <= run.elapsed < 1.7


# Two addresses for one name need a DNS server (the suite's Docker scenarios);
# here the address list goes to connect() directly, over real sockets.


def loopback(port: int) -> Address:
    return Address(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, ("127.0.0.1", port))


# The bounds keep half a second of margin for a loaded machine, and still tell a staggered
# start (0.25 s) from waiting out the whole attempt (1 s).
@pytest.mark.parametrize(("stagger", "within"), [(None, (1.0, 1.5)), (0.25, (0.25, 0.75))])
def test_next_address_after_a_silent_one(blackhole: int, stagger: float | None, within: tuple[float, float]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as good:
        good_port = int(good.getsockname()[1])
        start = time.monotonic()
        addresses = [loopback(blackhole), loopback(good_port)]
        with connect(addresses, attempt_timeout=1.0, deadline=start + 5, stagger=stagger) as sock:
            elapsed = time.monotonic() - start
            assert sock.getpeername() == ("127.0.0.1", good_port)
    assert within[0] <= elapsed < within[1]


def test_next_address_after_a_refusal() -> None:
    with socket.create_server(("127.0.0.1", 0)) as good:
        good_port = int(good.getsockname()[1])
        start = time.monotonic()
        with connect([loopback(free_port()), loopback(good_port)], attempt_timeout=2, deadline=start + 5) as sock:
            assert sock.getpeername() == ("127.0.0.1", good_port)
        assert time.monotonic() - start < 0.5


# ---- against adversaries: TLS ---------------------------------------------------------------


def pong_after_request(conn: socket.socket) -> None:
    read_line(conn)
    conn.sendall(b"+PONG\r\n")
    wait_for_close(conn)


@pytest.mark.parametrize(
    ("host", "flags", "sni"),
    [
        ("localhost", [], "localhost"),
        ("127.0.0.1", [], None),  # no IP literal as SNI (RFC 6066)
        ("127.0.0.1", ["--servername", "localhost"], "localhost"),
    ],
)
def test_sni(trust: Trust, host: str, flags: list[str], sni: str | None) -> None:
    names: list[str | None] = []
    context = server_context(trust.good)
    context.sni_callback = lambda _sock, name, _context: names.append(name)
    with Adversary(pong_after_request, context) as adv:
        run = client("--tls", "--ca", trust.ca_file, *flags, host, str(adv.port), "PING")
    assert (run.status, run.stdout) == (OK, b"+PONG\n"), run.stderr
    assert names == [sni]


def test_wrong_hostname_is_refused(trust: Trust) -> None:
    with Adversary(pong_after_request, server_context(trust.ca.issue_cert("other.example"))) as adv:
        run = client("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (TLS, b"")


def test_untrusted_ca_is_refused(trust: Trust) -> None:
    stranger = trustme.CA(organization_name="a CA nobody trusts")
    with Adversary(pong_after_request, server_context(stranger.issue_cert("localhost"))) as adv:
        run = client("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (TLS, b"")


def test_expired_certificate_is_refused(trust: Trust) -> None:
    utc = datetime.UTC
    expired = trust.ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=utc),
        not_after=datetime.datetime(2020, 6, 1, tzinfo=utc),
    )
    with Adversary(pong_after_request, server_context(expired)) as adv:
        run = client("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (TLS, b"")
    assert "expired" in run.stderr


def test_tls_1_1_server_is_refused(trust: Trust) -> None:
    with Adversary(wait_for_close, server_context(trust.good, tls11_only=True)) as adv:
        # The server really speaks TLS 1.1: a client that allows it gets through.
        old = ssl.create_default_context(cafile=trust.ca_file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with (
            socket.create_connection(("127.0.0.1", adv.port), timeout=IO_TIMEOUT) as raw,
            old.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == "TLSv1.1"
        run = client("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (TLS, b"")
    assert adv.connections == 2


def test_starttls_waits_for_ok_before_the_handshake(trust: Trust) -> None:
    seen: dict[str, object] = {}
    context = server_context(trust.good)

    def handle(conn: socket.socket) -> None:
        seen["line"] = read_line(conn)
        # The window in which the client must stay silent (CH-CLIENT-19): one that
        # starts its handshake early has sent its ClientHello long before 300 ms.
        seen["early"] = bool(select.select([conn], [], [], 0.3)[0])
        conn.sendall(b"+OK\r\n")
        with context.wrap_socket(conn, server_side=True) as tls:
            seen["inside"] = read_line(tls)
            tls.sendall(b"+PONG\r\n")
            wait_for_close(tls)

    with Adversary(handle) as adv:
        run = client("--starttls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (OK, b"+PONG\n"), (run, adv.errors)
    assert seen == {"line": b"STARTTLS\r\n", "early": False, "inside": b"PING\r\n"}


def test_starttls_refused_starts_no_handshake(trust: Trust) -> None:
    after: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        read_line(conn)
        conn.sendall(b"-ERR STATE no certificate\r\n")
        with contextlib.suppress(OSError):
            while chunk := conn.recv(4096):
                after.append(chunk)

    with Adversary(handle) as adv:
        run = client("--starttls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (run.status, run.stdout) == (ERROR_REPLY, b"-ERR STATE no certificate\n")
    assert after == []
