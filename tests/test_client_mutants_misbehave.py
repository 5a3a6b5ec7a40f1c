"""Each mutant client (tests/client_mutants) really has its bug: given the same
command line and the same small adversarial server, the mutant's exit status
(or, where the bug is one of time, its timing) differs from the reference
client's in the way the bug predicts. A smoke test shows that apart from their
bugs the mutants still work.

Every client is a real process, ``python -S -m tests.client_mutants NAME ...``
or ``python -S -m reference_client ...`` (``-S``: the standard library alone),
in its own session, killed and reaped in a finally; every server is a thread on
a loopback address (tests/client_support.py), every socket operation has a
timeout, and every wait is for a condition with a deadline.

Names with several addresses need a DNS server, which these tests do not have:
for them the client process runs under a simulated resolver (FAKE_DNS, a
replacement of socket.getaddrinfo installed before the client is imported, for
the test's made-up names only). It answers as a resolver would (every record
for AF_UNSPEC, only the asked-for family otherwise, NXDOMAIN for a name without
records); each record carries a port, so that one name can span several test
servers on 127.0.0.1. The reference client and the mutant run under the same
one, and the rest of the client, from resolve() on, runs unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from tests.client_mutants import CLIENT_MUTANTS
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
    Handler,
    Run,
    Trust,
    answer,
    blackhole_port,
    make_trust,
    read_exactly,
    read_line,
    server_context,
    silent,
    wait_for_close,
)

REFERENCE = "reference"
NAME = "service.sockspec.test"  # a made-up name, known only to FAKE_DNS

# The catalogue the lead asked for, with the requirements each bug breaks for certain.
EXPECTED = {
    "ipv4-only": ("CH-CLIENT-1",),
    "first-address-only": ("CH-CLIENT-1", "CH-CLIENT-2"),
    "blocking-connect": ("CH-CLIENT-3",),
    "no-overall-deadline": ("CH-CLIENT-4",),
    "dns-failure-is-connect-failure": ("CH-CLIENT-5",),
    "temporary-dns-failure-is-connect-failure": ("CH-CLIENT-5",),
    "ignores-unknown-flags": ("CH-CLIENT-13",),
    "no-read-timeout": ("CH-CLIENT-7",),
    "truncated-reply-is-success": ("CH-CLIENT-9",),
    "accepts-malformed-reply": ("CH-CLIENT-10",),
    "trusts-any-certificate": ("CH-CLIENT-14", "CH-CLIENT-15", "CH-CLIENT-16"),
    "no-hostname-check": ("CH-CLIENT-16",),
    "no-sni": ("CH-CLIENT-17",),
    "accepts-tls-1-1": ("CH-CLIENT-18",),
    "little-endian-frames": ("CH-CLIENT-20",),
    "repeats-urgent-byte": ("CH-CLIENT-21",),
    "starttls-without-waiting": ("CH-CLIENT-19",),
    "refused-is-a-timeout": ("CH-CLIENT-6",),
    "error-reply-is-success": ("CH-CLIENT-12",),
    "replies-keep-their-crlf": ("CH-CLIENT-11",),
    "bare-lf-ends-a-reply": ("CH-CLIENT-10",),
    "frames-read-as-lines-too": ("CH-CLIENT-10",),
    "final-error-with-pending-is-truncation": ("CH-CLIENT-12",),
    "bye-close-is-truncation": ("CH-CLIENT-9",),
    "prints-switch-ok": ("CH-CLIENT-11",),
    "urgent-on-the-way-out": ("CH-CLIENT-21",),
    "plaintext-after-refused-starttls": ("CH-CLIENT-19",),
}

# argv: [-c, TABLE (JSON), MODULE, client args...]. TABLE maps a name to its
# records, [["A" or "AAAA", address, port], ...]; an empty list is NXDOMAIN.
FAKE_DNS = r"""
import json, runpy, socket, sys

TABLE = json.loads(sys.argv[1])
FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
real_getaddrinfo = socket.getaddrinfo

def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if host not in TABLE:
        return real_getaddrinfo(host, port, family, type, proto, flags)
    if TABLE[host] == "SERVFAIL":
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    if not TABLE[host]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    found = [
        (FAMILIES[kind], socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
         (address, record_port) if kind == "A" else (address, record_port, 0, 0))
        for kind, address, record_port in TABLE[host]
        if family in (socket.AF_UNSPEC, FAMILIES[kind])
    ]
    if not found:
        raise socket.gaierror(getattr(socket, "EAI_NODATA", socket.EAI_NONAME), "No address associated with hostname")
    return found

socket.getaddrinfo = getaddrinfo
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""

DnsTable = dict[str, list[list[Any]]]


# ---- running clients ---------------------------------------------------------------------


def client_argv(program: str, *args: str, dns: DnsTable | None = None) -> list[str]:
    """The reference client (``REFERENCE``) or a mutant (its name), under FAKE_DNS if given a table."""
    module = ["reference_client"] if program == REFERENCE else ["tests.client_mutants", program]
    if dns is None:
        return [sys.executable, "-S", "-m", *module, *args]
    return [sys.executable, "-S", "-c", FAKE_DNS, json.dumps(dns), *module, *args]


def run(program: str, *args: str, dns: DnsTable | None = None) -> Run:
    with Client(client_argv(program, *args, dns=dns)) as client:
        return client.finish()


def both(mutant: str, *args: str, dns: DnsTable | None = None) -> tuple[Run, Run]:
    """The reference client's run, then the mutant's, with the same arguments."""
    return run(REFERENCE, *args, dns=dns), run(mutant, *args, dns=dns)


# ---- servers and certificates -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("client-mutants-tls"))


def pong(conn: socket.socket) -> None:
    read_line(conn)
    conn.sendall(b"+PONG\r\n")
    wait_for_close(conn)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def ipv6_loopback_or_skip() -> None:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here ({exc}): an AAAA-only name cannot be served")


# ---- the catalogue ----------------------------------------------------------------------------


def test_catalogue() -> None:
    assert {name: m.requirements for name, m in CLIENT_MUTANTS.items()} == EXPECTED
    headings = set(re.findall(r"^### (CH-CLIENT-\d+) ", (REPO / "PROTOCOL.md").read_text(), re.MULTILINE))
    for mutant in CLIENT_MUTANTS.values():
        assert set(mutant.requirements) <= headings, mutant
        assert mutant.description, mutant


def test_command_line() -> None:
    main = [sys.executable, "-S", "-m", "tests.client_mutants"]
    with Client([*main, "--list"]) as client:
        listing = client.finish()
    assert listing.status == OK, listing
    assert [line.split()[0] for line in listing.stdout.decode().splitlines()] == list(CLIENT_MUTANTS)
    for args in ([], ["no-such-mutant", "127.0.0.1", "1", "PING"], ["no-sni", "--bogus", "127.0.0.1", "1", "PING"]):
        with Client([*main, *args]) as client:
            assert client.finish().status == USAGE, args


def test_standard_library_only() -> None:
    code = (
        "import sys; import tests.client_mutants as m\n"
        "for mutant in m.CLIENT_MUTANTS.values(): mutant.apply()\n"
        "import reference_client.cli, reference_client.session\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded - set(sys.stdlib_module_names) - {'reference_client', 'tests', '__main__'}))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, timeout=RUN_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"[]"


@pytest.mark.parametrize("name", list(CLIENT_MUTANTS))
def test_apart_from_its_bug_the_mutant_works(trust: Trust, name: str) -> None:
    """Resolve localhost, connect, TLS with a good certificate, two pipelined requests: 0 and both replies."""
    with Adversary(answer(b"+PONG\r\n:1\r\n", requests=2), server_context(trust.good)) as adv:
        result = run(name, "--tls", "--ca", trust.ca_file, "-c", "PING", "localhost", str(adv.port), "INCR", "n")
    # The one mutant whose bug is in its output shows it here too.
    output = b"+PONG\r\n:1\r\n" if name == "replies-keep-their-crlf" else b"+PONG\n:1\n"
    assert (result.status, result.stdout) == (OK, output), result


# ---- resolving and connecting -----------------------------------------------------------------


def test_ipv4_only_cannot_resolve_a_name_with_only_aaaa_records() -> None:
    ipv6_loopback_or_skip()
    with Adversary(pong, host="::1") as adv:
        dns = {NAME: [["AAAA", "::1", adv.port]]}
        reference, mutant = both("ipv4-only", NAME, "4481", "PING", dns=dns)
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert (mutant.status, mutant.stdout) == (DNS, b""), mutant
    assert adv.connections == 1


def test_first_address_only_gives_up_after_a_refusal() -> None:
    with refused_port() as dead, Adversary(pong) as good:
        dns = {NAME: [["A", "127.0.0.1", dead], ["A", "127.0.0.1", good.port]]}
        reference, mutant = both("first-address-only", NAME, "4481", "PING", dns=dns)
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert (mutant.status, mutant.stdout) == (CONNECT, b""), mutant
    assert good.connections == 1  # the reference's: the mutant never tried the second address
    assert "of 1 address" in mutant.stderr


def test_blocking_connect_waits_past_the_attempt_timeout() -> None:
    # A silent first address, a good second one: the reference moves on after
    # the 0.5 s attempt timeout; the mutant waits for the kernel until the 2 s
    # deadline has passed, and never gets to the good address.
    with blackhole_port() as silent_port, Adversary(pong) as good:
        dns = {NAME: [["A", "127.0.0.1", silent_port], ["A", "127.0.0.1", good.port]]}
        args = ("--connect-timeout", "0.5", "--deadline", "2", NAME, "4481", "PING")
        reference, mutant = both("blocking-connect", *args, dns=dns)
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert 0.5 <= reference.elapsed < 1.5, reference
    assert (mutant.status, mutant.stdout) == (CONNECT, b""), mutant
    assert mutant.elapsed >= 2.0, mutant
    assert good.connections == 1


def test_no_overall_deadline_keeps_trying_after_the_deadline() -> None:
    # Two silent addresses, then a good one: 0.5 s per attempt, a 0.8 s deadline.
    with blackhole_port() as first, blackhole_port() as second, Adversary(pong) as good:
        dns = {NAME: [["A", "127.0.0.1", first], ["A", "127.0.0.1", second], ["A", "127.0.0.1", good.port]]}
        args = ("--connect-timeout", "0.5", "--deadline", "0.8", NAME, "4481", "PING")
        reference, mutant = both("no-overall-deadline", *args, dns=dns)
    assert (reference.status, reference.stdout) == (CONNECT, b""), reference
    assert 0.8 <= reference.elapsed < 1.6, reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant
    assert mutant.elapsed >= 1.0, mutant  # two whole attempts: past the deadline
    assert good.connections == 1


def test_dns_failure_is_reported_as_a_connect_failure() -> None:
    reference, mutant = both("dns-failure-is-connect-failure", NAME, "4481", "PING", dns={NAME: []})
    assert reference.status == DNS, reference
    assert mutant.status == CONNECT, mutant
    assert reference.elapsed < QUICK and mutant.elapsed < QUICK


def test_temporary_dns_failure_is_reported_as_a_connect_failure() -> None:
    """EAI_AGAIN (SERVFAIL) only: NXDOMAIN still exits 3."""
    servfail: Any = {NAME: "SERVFAIL"}
    reference, mutant = both("temporary-dns-failure-is-connect-failure", NAME, "4481", "PING", dns=servfail)
    assert reference.status == DNS, reference
    assert mutant.status == CONNECT, mutant
    assert reference.elapsed < QUICK and mutant.elapsed < QUICK
    reference, mutant = both("temporary-dns-failure-is-connect-failure", NAME, "4481", "PING", dns={NAME: []})
    assert reference.status == mutant.status == DNS, (reference, mutant)


def test_first_address_only_never_tries_the_other_family() -> None:
    ipv6_loopback_or_skip()
    with refused_port() as dead, Adversary(pong) as good:
        dns = {NAME: [["AAAA", "::1", dead], ["A", "127.0.0.1", good.port]]}
        reference, mutant = both("first-address-only", NAME, "4481", "PING", dns=dns)
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert (mutant.status, mutant.stdout) == (CONNECT, b""), mutant
    assert good.connections == 1


def test_refused_is_reported_as_a_timeout() -> None:
    with refused_port() as port:
        reference, mutant = both("refused-is-a-timeout", "127.0.0.1", str(port), "PING")
    assert reference.status == CONNECT, reference
    assert mutant.status == TIMEOUT, mutant


# ---- replies -----------------------------------------------------------------------------------


def test_ignores_unknown_flags_connects_anyway() -> None:
    with Adversary(pong) as adv:
        reference, mutant = both("ignores-unknown-flags", "--sockspec-no-such-flag", "127.0.0.1", str(adv.port), "PING")
        with Client(client_argv("ignores-unknown-flags", "127.0.0.1", str(adv.port))) as client:
            no_command = client.finish()
    assert reference.status == USAGE and reference.stderr, reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant
    assert no_command.status == USAGE, no_command  # only flags are ignored
    assert adv.connections == 1


def test_error_reply_is_success() -> None:
    with Adversary(answer(b"-ERR UNKNOWN nope\r\n")) as adv:
        reference, mutant = both("error-reply-is-success", "127.0.0.1", str(adv.port), "NOPE")
    assert (reference.status, reference.stdout) == (ERROR_REPLY, b"-ERR UNKNOWN nope\n"), reference
    assert (mutant.status, mutant.stdout) == (OK, b"-ERR UNKNOWN nope\n"), mutant


def test_replies_keep_their_crlf() -> None:
    with Adversary(answer(b"+PONG\r\n")) as adv:
        reference, mutant = both("replies-keep-their-crlf", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\r\n"), mutant


def test_no_read_timeout_waits_until_the_server_closes() -> None:
    with Adversary(silent) as adv:
        reference = run(REFERENCE, "--timeout", "1", "127.0.0.1", str(adv.port), "PING")
    assert reference.status == TIMEOUT, reference
    assert 1.0 <= reference.elapsed < 2.0, reference

    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        read_line(conn)
        release.wait(IO_TIMEOUT)
        conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn)

    with (
        Adversary(hold) as adv,
        Client(client_argv("no-read-timeout", "--timeout", "1", "127.0.0.1", str(adv.port), "PING")) as c,
    ):
        try:
            # Well past the read timeout and its ±0.5 s: a client that has one is gone by now.
            still_waiting = c.running_after(3.0)
        finally:
            release.set()
        closed_at = time.monotonic()
        mutant = c.finish()
    assert still_waiting, mutant
    assert mutant.status == PROTOCOL, mutant  # and it does end when the server closes
    assert time.monotonic() - closed_at < QUICK


@pytest.mark.parametrize(
    ("reply", "requests", "printed"),
    [
        (b"", 1, b"\n"),  # closed before any reply
        (b"$hel", 1, b"$hel\n"),  # in the middle of a reply
        (b"+PONG\r\n", 2, b"+PONG\n\n"),  # before the second reply
    ],
)
def test_truncated_reply_is_success(reply: bytes, requests: int, printed: bytes) -> None:
    with Adversary(answer(reply, requests=requests)) as adv:
        args = (*["-c", "PING"] * (requests - 1), "127.0.0.1", str(adv.port), "PING")
        reference, mutant = both("truncated-reply-is-success", *args)
    assert reference.status == PROTOCOL, reference
    assert (mutant.status, mutant.stdout) == (OK, printed), mutant
    assert mutant.elapsed < QUICK


@pytest.mark.parametrize("reply", [b"hello\r\n", b":01\r\n", b"-ERR NOPE what\r\n"])
def test_malformed_reply_is_accepted(reply: bytes) -> None:
    with Adversary(answer(reply)) as adv:
        reference, mutant = both("accepts-malformed-reply", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (PROTOCOL, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, reply.removesuffix(b"\r\n") + b"\n"), mutant


# ---- TLS --------------------------------------------------------------------------------------------


def bad_certificate(trust: Trust, kind: str) -> trustme.LeafCert:
    if kind == "untrusted-ca":
        return trustme.CA(organization_name="a CA nobody trusts").issue_cert("localhost")
    if kind == "expired":
        utc = datetime.UTC
        return trust.ca.issue_cert(
            "localhost",
            not_before=datetime.datetime(2020, 1, 1, tzinfo=utc),
            not_after=datetime.datetime(2020, 6, 1, tzinfo=utc),
        )
    assert kind == "wrong-name"
    return trust.ca.issue_cert("other.example")


@pytest.mark.parametrize("kind", ["untrusted-ca", "expired", "wrong-name"])
def test_trusts_any_certificate(trust: Trust, kind: str) -> None:
    with Adversary(pong, server_context(bad_certificate(trust, kind))) as adv:
        args = ("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
        reference, mutant = both("trusts-any-certificate", *args)
    assert (reference.status, reference.stdout) == (TLS, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant


def test_no_hostname_check_accepts_a_certificate_for_another_name(trust: Trust) -> None:
    names: list[str | None] = []
    context = server_context(bad_certificate(trust, "wrong-name"))
    context.sni_callback = lambda _sock, name, _context: names.append(name)
    with Adversary(pong, context) as adv:
        args = ("--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
        reference, mutant = both("no-hostname-check", *args)
    assert (reference.status, reference.stdout) == (TLS, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant
    assert names == ["localhost", "localhost"]  # the mutant still sends SNI
    # ... and still verifies the chain: only the name check is gone.
    with Adversary(pong, server_context(bad_certificate(trust, "untrusted-ca"))) as adv:
        untrusted = run("no-hostname-check", "--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert untrusted.status == TLS, untrusted


def test_no_sni_gets_the_default_certificate(trust: Trust) -> None:
    # Like a server with several names on one address: the certificate for
    # localhost only to a client that asks for localhost by SNI.
    names: list[str | None] = []
    by_name = server_context(trust.good)
    context = server_context(trust.ca.issue_cert("default.example"))

    def pick(sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)
        if name == "localhost":
            sock.context = by_name

    context.sni_callback = pick
    with Adversary(pong, context) as adv:
        reference, mutant = both("no-sni", "--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert names == ["localhost", None]
    assert (mutant.status, mutant.stdout) == (TLS, b""), mutant
    assert "Hostname mismatch" in mutant.stderr
    # The name is still checked (by hand) whatever the server: SNI is all that is missing.
    with Adversary(pong, server_context(bad_certificate(trust, "wrong-name"))) as adv:
        wrong = run("no-sni", "--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert wrong.status == TLS, wrong


def test_accepts_tls_1_1(trust: Trust) -> None:
    versions: list[str | None] = []

    def handle(conn: socket.socket) -> None:
        assert isinstance(conn, ssl.SSLSocket)
        versions.append(conn.version())
        pong(conn)

    with Adversary(handle, server_context(trust.good, tls11_only=True)) as adv:
        reference, mutant = both("accepts-tls-1-1", "--tls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (TLS, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant
    assert versions == ["TLSv1.1"]  # the mutant's handshake; the reference's never completed


def test_starttls_without_waiting_sends_its_handshake_before_the_ok(trust: Trust) -> None:
    early: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        assert read_line(conn) == b"STARTTLS\r\n"
        # A careful server: is anything sent before the +OK has even been written?
        readable, _, _ = select.select([conn], [], [], 0.3)
        early.append(conn.recv(4096, socket.MSG_PEEK) if readable else b"")
        conn.sendall(b"+OK\r\n")
        with server_context(trust.good).wrap_socket(conn, server_side=True) as tls:
            pong(tls)

    with Adversary(handle) as adv:
        reference, mutant = both(
            "starttls-without-waiting", "--starttls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING"
        )
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert early[0] == b""
    assert early[1][:1] == b"\x16", early  # a TLS handshake record, before any +OK
    assert mutant.status != OK, mutant


# ---- framed mode and urgent data ---------------------------------------------------------------------


def test_little_endian_frames_get_toolong() -> None:
    headers: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        # A server as PROTOCOL.md has it: FRAMED, +OK, then big-endian frames,
        # and TOOLONG at once for a header above max_frame.
        read_line(conn)
        conn.sendall(b"+OK\r\n")
        header = read_exactly(conn, 4)
        headers.append(header)
        length = int.from_bytes(header, "big")
        if length > 4096:
            conn.sendall(frame(b"-ERR TOOLONG request over the size limit"))
        else:
            read_exactly(conn, length)
            conn.sendall(frame(b"+PONG"))
        conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn)

    with Adversary(handle) as adv:
        reference, mutant = both("little-endian-frames", "--framed", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert mutant.status == ERROR_REPLY, mutant
    assert mutant.stdout.startswith(b"-ERR TOOLONG")
    assert headers == [b"\x00\x00\x00\x04", b"\x04\x00\x00\x00"]


URGENT_WINDOW = 0.3  # how long after the first urgent byte the adversary watches for more


def count_urgent_bytes(counts: list[int]) -> Handler:
    """Read the SLEEP, count urgent bytes (and any pushed into the stream) from
    the first one until URGENT_WINDOW later; then, for exactly one, answer the
    SLEEP with +OK, and for more, hang up without an answer."""

    def handle(conn: socket.socket) -> None:
        read_line(conn)
        conn.setblocking(False)
        count = 0
        deadline = time.monotonic() + IO_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            readable, _, urgent = select.select([conn], [], [conn], left)
            if urgent:
                try:
                    count += len(conn.recv(1, socket.MSG_OOB))
                except OSError:  # EINVAL: read already, or not here yet
                    pass
            if readable:
                try:
                    data = conn.recv(4096)
                    if not data:
                        break
                    count += data.count(b"!")
                except BlockingIOError:  # only urgent data was pending
                    pass
                except OSError:
                    break
            if count and deadline > time.monotonic() + URGENT_WINDOW:
                deadline = time.monotonic() + URGENT_WINDOW
        counts.append(count)
        conn.settimeout(IO_TIMEOUT)
        if count == 1:
            conn.sendall(b"+OK\r\n")
        conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn)

    return handle


def test_repeats_urgent_byte() -> None:
    counts: list[int] = []
    with Adversary(count_urgent_bytes(counts)) as adv:
        args = ("--abort-after", "100", "127.0.0.1", str(adv.port), "SLEEP", "5000")
        reference, mutant = both("repeats-urgent-byte", *args)
    assert (reference.status, reference.stdout) == (OK, b"+OK\n"), reference
    assert (mutant.status, mutant.stdout) == (PROTOCOL, b""), mutant
    assert counts[0] == 1
    assert counts[1] >= 2, counts


# ---- the verdicts charged where they belong (issue 10) ------------------------------------------


def test_bare_lf_ends_a_reply() -> None:
    with Adversary(answer(b"+PONG\n")) as adv:
        reference, mutant = both("bare-lf-ends-a-reply", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (PROTOCOL, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant


def framed_then(reply: bytes) -> Handler:
    """FRAMED and its +OK, one request frame, then ``reply`` as it is, and a close."""

    def handle(conn: socket.socket) -> None:
        read_line(conn)
        conn.sendall(b"+OK\r\n")
        read_exactly(conn, int.from_bytes(read_exactly(conn, 4), "big"))
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn)

    return handle


def test_frames_read_as_lines_too() -> None:
    with Adversary(framed_then(b"+PONG\r\n")) as adv:
        reference, mutant = both("frames-read-as-lines-too", "--framed", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (PROTOCOL, b""), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+PONG\n"), mutant


def test_prints_switch_ok() -> None:
    with Adversary(framed_then(frame(b"+PONG"))) as adv:
        reference, mutant = both("prints-switch-ok", "--framed", "127.0.0.1", str(adv.port), "PING")
    assert (reference.status, reference.stdout) == (OK, b"+PONG\n"), reference
    assert (mutant.status, mutant.stdout) == (OK, b"+OK\n+PONG\n"), mutant


def test_final_error_with_pending_is_truncation() -> None:
    with Adversary(answer(b"-ERR SHUTDOWN going away\r\n")) as adv:
        args = ("-c", "PING", "-c", "PING", "127.0.0.1", str(adv.port))
        reference, mutant = both("final-error-with-pending-is-truncation", *args)
    assert (reference.status, reference.stdout) == (ERROR_REPLY, b"-ERR SHUTDOWN going away\n"), reference
    assert mutant.status == PROTOCOL, mutant


def test_bye_close_is_truncation() -> None:
    with Adversary(answer(b"+BYE\r\n")) as adv:
        reference, mutant = both("bye-close-is-truncation", "-c", "QUIT", "-c", "PING", "127.0.0.1", str(adv.port))
    assert (reference.status, reference.stdout) == (OK, b"+BYE\n"), reference
    assert mutant.status == PROTOCOL, mutant


def abort_and_count_urgent_bytes(counts: list[int]) -> Handler:
    """Read the SLEEP, answer -ERR ABORTED at its first urgent byte, and count
    urgent bytes until the client closes."""

    def handle(conn: socket.socket) -> None:
        read_line(conn)
        conn.setblocking(False)
        count = 0
        deadline = time.monotonic() + IO_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            readable, _, urgent = select.select([conn], [], [conn], left)
            if urgent:
                try:
                    count += len(conn.recv(1, socket.MSG_OOB))
                except OSError:  # EINVAL: read already
                    pass
                if count == 1:
                    conn.sendall(b"-ERR ABORTED sleep aborted\r\n")
            if readable:
                try:
                    if not conn.recv(4096):
                        break
                except BlockingIOError:  # only urgent data was pending
                    pass
                except OSError:
                    break
        counts.append(count)

    return handle


def test_urgent_on_the_way_out() -> None:
    counts: list[int] = []
    with Adversary(abort_and_count_urgent_bytes(counts)) as adv:
        args = ("--abort-after", "100", "127.0.0.1", str(adv.port), "SLEEP", "5000")
        reference, mutant = both("urgent-on-the-way-out", *args)
    assert (reference.status, reference.stdout) == (ERROR_REPLY, b"-ERR ABORTED sleep aborted\n"), reference
    assert (mutant.status, mutant.stdout) == (ERROR_REPLY, b"-ERR ABORTED sleep aborted\n"), mutant
    assert counts == [1, 2]  # the mutant's second one after the reply


def test_plaintext_after_refused_starttls(trust: Trust) -> None:
    after: list[bytes] = []

    def refuse(conn: socket.socket) -> None:
        assert read_line(conn) == b"STARTTLS\r\n"
        conn.sendall(b"-ERR UNKNOWN no TLS here\r\n")
        data = conn.recv(4096)  # b"" for the close that should come
        after.append(data)
        if data:
            conn.sendall(b"+PONG\r\n")
        wait_for_close(conn)

    with Adversary(refuse) as adv:
        args = ("--starttls", "--ca", trust.ca_file, "localhost", str(adv.port), "PING")
        reference, mutant = both("plaintext-after-refused-starttls", *args)
    assert (reference.status, reference.stdout) == (ERROR_REPLY, b"-ERR UNKNOWN no TLS here\n"), reference
    assert (mutant.status, mutant.stdout) == (ERROR_REPLY, b"-ERR UNKNOWN no TLS here\n+PONG\n"), mutant
    assert after == [b"", b"PING\r\n"]  # the mutant's request, in plaintext
