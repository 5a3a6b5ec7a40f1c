"""The test zone the suite's DNS server answers for, and the address plan of
the internal network it lives on.

glibc sorts the addresses getaddrinfo returns (RFC 6724), and for IPv4 too it
prefers the destination sharing the longest prefix with the source address.
So the plan puts every client container where a dead address shares a longer
prefix with it than the refusing one does, and that one a longer prefix than
the suite's own (good) address. Whatever the resolver does, a name listed
"bad first, good last" reaches the client in that order. The order is still
checked, in the client's container, before a scenario relies on it.

Last octet of the /24 (bits):
    0000 0001  .1        the gateway: this machine, where the suite's servers listen
    10xx xxxx  .128-.175 client containers (one per worker and client image)
    1011 xxxx  .176-.191 never assigned: connecting fails after ARP gives up (~3 s)
    11xx xxxx  .200      the DNS server: nothing listens on TCP, so connects are refused

A name with both families cannot put its A record first that way: glibc's
default table (RFC 3484) gives every IPv6 destination but ::1 precedence 40
and IPv4 10, other implementations (RFC 6724) give a unique-local one 3 and
IPv4 35. Only ::1 comes first for all of them (50), so the dual-stack name's
refusing address is ::1: the client's own loopback, where nothing listens.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

ZONE = "sockspec.test"
GOOD = f"good.{ZONE}"  # A: the suite's server
OTHER = f"other.{ZONE}"  # what the wrong-name certificate is issued for
REFUSED_FIRST = f"refused-first.{ZONE}"  # A: refusing, then good
DEAD_FIRST = f"dead-first.{ZONE}"  # A: unassigned, then good
ALL_DEAD = f"all-dead.{ZONE}"  # A: eight unassigned addresses
NONE_REACHABLE = f"none-reachable.{ZONE}"  # A: refusing, unassigned
V6_ONLY = f"v6-only.{ZONE}"  # AAAA: good
DUAL = f"dual.{ZONE}"  # AAAA: ::1, refusing (see above); A: good
NO_ADDRESS = f"no-address.{ZONE}"  # in the zone, with no A or AAAA record
MISSING = f"missing.{ZONE}"  # NXDOMAIN
SERVFAIL = f"servfail.{ZONE}"  # every query answered SERVFAIL: the resolver fails (EAI_AGAIN)
NAMES = (GOOD, REFUSED_FIRST, DEAD_FIRST, ALL_DEAD, NONE_REACHABLE, V6_ONLY, DUAL)  # the ones with addresses

CLIENT_SLOTS = 48
LOOPBACK6 = "::1"
DEAD_COUNT = 8


@dataclass(frozen=True)
class AddressPlan:
    subnet: str  # IPv4 /24
    subnet6: str | None = None  # IPv6 /64, when the network has one

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def _host(self, last: int) -> str:
        return str(self.network.network_address + last)

    @property
    def gateway(self) -> str:
        return self._host(1)

    @property
    def gateway6(self) -> str | None:
        return str(ipaddress.IPv6Network(self.subnet6).network_address + 1) if self.subnet6 else None

    @property
    def dns(self) -> str:
        return self._host(200)

    @property
    def dynamic_range(self) -> str:
        """Where Docker may put containers it places itself: away from the plan."""
        return str(ipaddress.IPv4Network((int(self.network.network_address) + 64, 27)))

    def client(self, slot: int) -> str:
        return self._host(128 + slot % CLIENT_SLOTS)

    def dead(self, count: int = 1) -> list[str]:
        return [self._host(176 + index) for index in range(count)]

    def zone(self) -> dict[str, list[list[str]]]:
        """Every name with its records, in answer order (as the DNS server takes
        it). A record ["RCODE", "SERVFAIL"] makes every answer for the name that
        failure instead."""
        records: dict[str, list[list[str]]] = {
            GOOD: [["A", self.gateway]],
            REFUSED_FIRST: [["A", self.dns], ["A", self.gateway]],
            DEAD_FIRST: [["A", self.dead()[0]], ["A", self.gateway]],
            ALL_DEAD: [["A", address] for address in self.dead(DEAD_COUNT)],
            NONE_REACHABLE: [["A", self.dns], ["A", self.dead()[0]]],
            NO_ADDRESS: [],
            SERVFAIL: [["RCODE", "SERVFAIL"]],
        }
        if self.gateway6:
            records[V6_ONLY] = [["AAAA", self.gateway6]]
            records[DUAL] = [["AAAA", LOOPBACK6], ["A", self.gateway]]
        return {f"{name}.": value for name, value in records.items()}

    def expected_order(self, name: str) -> list[str]:
        return [address for kind, address in self.zone()[f"{name}."] if kind in ("A", "AAAA")]
