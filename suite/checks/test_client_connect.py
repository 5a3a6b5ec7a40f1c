"""CH-CLIENT-1 to CH-CLIENT-6: resolving and connecting (PROTOCOL.md section 17),
and the usage errors of CH-CLIENT-13 that the client's template can be made to
give (an unknown flag, no COMMAND): they too must leave the server untouched.

The DNS scenarios run the client in a container whose resolver is the suite's
DNS server, on the run's internal network (suite/clients/zone.py has the
names and the address plan). Dead addresses are unassigned ones in that
network: a connect to them fails only when ARP gives up, after about 3 s.
"""

from __future__ import annotations

import socket

from suite.api import HarnessError, Measure, Unsupported, requirement
from suite.clients import zone
from suite.clients.adversary import answer
from suite.clients.runner import UNKNOWN_FLAG, ContainerPlacement, with_unknown_flag, without_command
from suite.clients.under_test import ClientUnderTest, fresh_token

CONNECT_TIMEOUT = 2.0  # the client defaults of section 17
DEADLINE = 10.0
MARGIN = 0.75  # a dead address takes ~3 s to fail: a client without its own timeout stays out of reach
# The resolver answers in milliseconds (glibc asks twice after a SERVFAIL, for
# both families: four answers in about 0.15 s); this is the client's start-up and more.
DNS_PROMPT = 1.5
USAGE_PROMPT = 2.0  # a usage error needs no network at all: start-up, with room for a loaded machine


def _in_order(placement: ContainerPlacement, name: str) -> None:
    """The scenario relies on the resolver's order: check it where the client runs."""
    assert placement.docker.plan is not None
    expected = placement.docker.plan.expected_order(name)
    found = placement.resolve(name)
    if found != expected:
        raise HarnessError(f"getaddrinfo({name}) in the client's container gave {found}, not {expected}")


def _reaches_the_server(
    client: ClientUnderTest, name: str, why: str, *, within: float | None = None, measure: Measure | None = None
) -> None:
    placement = client.dns_placement()
    token = fresh_token()
    s = client.scenario(
        answer(f"${token}".encode()), cmd=f"ECHO {token}", host=name, placement=placement, limit=within or DEADLINE
    )
    if measure is not None:
        measure(f"run time via {name}", round(s.run.elapsed, 3), "s", "start to exit, in the client's container")
    s.expect_status(0, why)
    s.expect_stdout(f"${token}\n".encode(), "the reply, once connected")
    if within is not None:
        s.expect_within(within, why)


def _ipv6_or_unsupported(client: ClientUnderTest) -> None:
    reason = client.dns_placement().docker.ipv6
    if reason:
        raise Unsupported(f"IPv6 on the internal network: {reason}")


@requirement("CH-CLIENT-1")
def test_a_name_with_only_an_aaaa_record_is_reached(client: ClientUnderTest) -> None:
    _ipv6_or_unsupported(client)
    _reaches_the_server(client, zone.V6_ONLY, f"{zone.V6_ONLY} has one AAAA record, of the suite's server")


@requirement("CH-CLIENT-1")
def test_a_name_whose_first_record_refuses_is_reached_by_its_other_family(client: ClientUnderTest) -> None:
    _ipv6_or_unsupported(client)
    _in_order(client.dns_placement(), zone.DUAL)
    _reaches_the_server(
        client,
        zone.DUAL,
        f"{zone.DUAL}: its AAAA record, first in getaddrinfo's order, is {zone.LOOPBACK6} (the client's own "
        "loopback, where nothing listens: refused); its A record, second, is the server",
    )


@requirement("CH-CLIENT-2")
def test_a_refusing_first_address_is_followed_by_the_next(client: ClientUnderTest) -> None:
    _in_order(client.dns_placement(), zone.REFUSED_FIRST)
    _reaches_the_server(
        client, zone.REFUSED_FIRST, f"{zone.REFUSED_FIRST}: the first address refuses, the second is the server"
    )


@requirement("CH-CLIENT-3")
def test_a_dead_first_address_costs_one_connect_timeout(client: ClientUnderTest, measure: Measure) -> None:
    _in_order(client.dns_placement(), zone.DEAD_FIRST)
    _reaches_the_server(
        client,
        zone.DEAD_FIRST,
        f"{zone.DEAD_FIRST}: the first address never answers; the second must be tried after "
        f"{CONNECT_TIMEOUT:g} s (the per-attempt timeout), not when the kernel gives up",
        within=CONNECT_TIMEOUT + MARGIN,
        measure=measure,
    )


@requirement("CH-CLIENT-4")
def test_connecting_gives_up_at_the_overall_deadline(client: ClientUnderTest, measure: Measure) -> None:
    # CH-CLIENT-4 alone: a client that tries all the addresses past the deadline
    # and then exits 4 meets CH-CLIENT-6 (every address tried, status 4).
    placement = client.dns_placement()
    s = client.scenario(
        answer(b"+PONG"), cmd="PING", host=zone.ALL_DEAD, placement=placement, limit=DEADLINE + 2 * MARGIN
    )
    why = (
        f"{zone.ALL_DEAD} has {zone.DEAD_COUNT} dead addresses: {zone.DEAD_COUNT} x {CONNECT_TIMEOUT:g} s "
        f"is more than the {DEADLINE:g} s deadline, so connecting must give up at the deadline, with status 4"
    )
    measure(f"run time via {zone.ALL_DEAD}", round(s.run.elapsed, 3), "s", "start to exit")
    s.expect_within(DEADLINE + 2 * MARGIN, why)
    s.expect_status(4, why)


@requirement("CH-CLIENT-5")
def test_an_unknown_name_exits_3_at_once(client: ClientUnderTest, measure: Measure) -> None:
    placement = client.dns_placement()
    for name, what in (
        (zone.MISSING, "NXDOMAIN"),
        (zone.NO_ADDRESS, "a name with no A or AAAA record"),
        (zone.SERVFAIL, "SERVFAIL, a resolver failure (EAI_AGAIN),"),
    ):
        s = client.scenario(answer(b"+PONG"), cmd="PING", host=name, placement=placement, limit=DNS_PROMPT)
        measure(f"run time via {name}", round(s.run.elapsed, 3), "s", "start to exit")
        s.expect_status(3, f"{name}: {what} is a DNS failure")
        s.expect_within(DNS_PROMPT, f"{what} is known as soon as the resolver answers (in milliseconds)")
        if s.exchanges:
            raise s.violation("a name that does not resolve leads nowhere", expected="no connection")


@requirement("CH-CLIENT-6")
def test_every_address_refusing_or_dead_exits_4(client: ClientUnderTest) -> None:
    placement = client.dns_placement()
    s = client.scenario(answer(b"+PONG"), cmd="PING", host=zone.NONE_REACHABLE, placement=placement, limit=DEADLINE)
    s.expect_status(4, f"{zone.NONE_REACHABLE}: one address refuses, the other never answers")


@requirement("CH-CLIENT-6")
def test_a_refused_connection_exits_4(client: ClientUnderTest) -> None:
    placement = client.local if client.spec.image is None else client.dns_placement()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserved:
        # Bound and never listening: the port is refused, and nobody else can take it meanwhile.
        reserved.bind((placement.ip, 0))
        port = reserved.getsockname()[1]
        s = client.scenario(
            answer(b"+PONG"), cmd="PING", host=placement.ip, placement=placement, port=port, limit=CONNECT_TIMEOUT
        )
    s.expect_status(4, f"nothing listens on {placement.ip}:{port}: the connection is refused")
    s.expect_within(CONNECT_TIMEOUT, "a refusal is immediate")


@requirement("CH-CLIENT-13")
def test_an_unknown_flag_or_a_missing_command_exits_2_without_connecting(client: ClientUnderTest) -> None:
    cases = (
        (with_unknown_flag, f"the unknown flag {UNKNOWN_FLAG}, put before the first argument"),
        (without_command, "no COMMAND: the template run without its {cmd}"),
    )
    impossible = []
    for edit, what in cases:
        try:
            edit(client.spec.template() or "")
        except ValueError as reason:
            impossible.append(f"{what}: {reason}")
            continue
        s = client.scenario(answer(b"+PONG"), cmd="PING", limit=USAGE_PROMPT, edit=edit)
        s.expect_status(2, f"{what} is a usage error")
        if s.exchanges:
            raise s.violation("a usage error must not connect", expected="no connection", actual="a connection")
        if not s.run.stderr.strip():
            raise s.violation("a usage error says why on standard error", expected="a message", actual="nothing")
    if len(impossible) == len(cases):
        raise Unsupported("the client's template allows neither usage error: " + "; ".join(impossible))
