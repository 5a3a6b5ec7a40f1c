"""The suite's DNS server: an authoritative server for one test zone, run in
its own container at a fixed address on the run's internal network.

    python3 zone_server.py ZONE_JSON

ZONE_JSON maps each name to its records, in the order they are to be
answered: {"good.sockspec.test.": [["A", "10.47.3.1"], ["AAAA", "fd5c::1"]]}.
Every answer keeps that order (no rotation), so the suite decides which
address a client meets first. A name in the zone with no record of the asked
type gets NOERROR and no answer (NODATA); a name outside the zone gets
NXDOMAIN. TTLs are 0, so no cache between the client and this server keeps an
answer from one scenario to the next. Each query is logged on stdout.

It needs dnslib (a wheel on PYTHONPATH in the image) and nothing else.
"""

import json
import sys

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

RDATA = {"A": A, "AAAA": AAAA}


class OrderedZone(BaseResolver):
    def __init__(self, zone):
        self.zone = {DNSLabel(name): records for name, records in zone.items()}
        self.origin = DNSLabel("sockspec.test.")

    def resolve(self, request, handler):
        reply = request.reply()
        name = request.q.qname
        kind = QTYPE[request.q.qtype]
        records = self.zone.get(name)
        print(f"query {name} {kind} from {handler.client_address[0]}", flush=True)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
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
    servers = [
        DNSServer(OrderedZone(zone), address="0.0.0.0", port=53, logger=QuietLogger()),
        DNSServer(OrderedZone(zone), address="0.0.0.0", port=53, tcp=True, logger=QuietLogger()),
    ]
    for server in servers[1:]:
        server.start_thread()
    print("READY dns", flush=True)
    servers[0].start()


if __name__ == "__main__":
    main()
