# The suite's DNS server (docker/zone_server.py) on a bare python3 base: dnslib
# is a pure-Python wheel downloaded on the host and imported from the zip.
ARG BASE
FROM ${BASE}
COPY dnslib.whl zone_server.py /opt/sockspec-dns/
ENV PYTHONPATH=/opt/sockspec-dns/dnslib.whl PYTHONUNBUFFERED=1
ENTRYPOINT ["python3", "/opt/sockspec-dns/zone_server.py"]
