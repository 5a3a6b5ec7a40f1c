"""The suite's DNS server: an authoritative server for one test zone, run in
its own container at a fixed address on the run's internal network.

    python3 zone_server.py ZONE_JSON [PORT]

PORT (UDP and TCP) is 53 unless given: the suite's tests run it unprivileged.

ZONE_JSON maps each name to its records, in the order they are to be
answered: {"good.sockspec.test.": [["A", "10.47.3.1"], ["AAAA", "fd5c::1"]]}.
Every answer keeps that order (no rotation), so the suite decides which
address a client meets first. A name in the zone with no record of the asked
type gets NOERROR and no answer (NODATA); a name outside the zone gets
NXDOMAIN; a name with the record ["RCODE", "SERVFAIL"] gets SERVFAIL for every
query (a resolver failure). TTLs are 0, so no cache between the client and this
server keeps an answer from one scenario to the next. Each query is logged on
stdout, one whole line per query (the UDP and TCP servers answer in threads).

It needs dnslib (a wheel on PYTHONPATH in the image) and nothing else.
"""

import json
import sys
import threading

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

RDATA = {"A": A, "AAAA": AAAA}
LOG_LOCK = threading.Lock()


def log(line):
    with LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class OrderedZone(BaseResolver):
    def __init__(self, zone):
        self.zone = {DNSLabel(name): records for name, records in zone.items()}
        self.origin = DNSLabel("sockspec.test.")

    def resolve(self, request, handler):
        reply = request.reply()
        name = request.q.qname
        kind = QTYPE[request.q.qtype]
        records = self.zone.get(name)
        log(f"query {name} {kind} from {handler.client_address[0]}")
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
        failure = [value for record_type, value in records or [] if record_type == "RCODE"]
        if failure:
            reply.header.rcode = getattr(RCODE, failure[0])
            return reply
        for record_type, value in records or []:
            if record_type == kind:
                reply.add_answer(RR(name, getattr(QTYPE, kind), rdata=RDATA[kind](value), ttl=0))
        if not reply.rr:
            soa = SOA("ns." + str(self.origin), "hostmaster." + str(self.origin), (1, 60, 60, 60, 0))
            reply.add_auth(RR(self.origin, QTYPE.SOA, rdata=soa, ttl=0))
        return reply


class QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-data", prefix=False)


def main():
    zone = json.loads(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    servers = [
        DNSServer(OrderedZone(zone), address="0.0.0.0", port=port, logger=QuietLogger()),
        DNSServer(OrderedZone(zone), address="0.0.0.0", port=port, tcp=True, logger=QuietLogger()),
    ]
    for server in servers[1:]:
        server.start_thread()
    log("READY dns")
    servers[0].start()


if __name__ == "__main__":
    main()
