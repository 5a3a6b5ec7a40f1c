# The reference servers need nothing but python3: the architecture is chosen
# at run time (`docker run IMAGE evented --port 4481 ...`).
ARG BASE
FROM ${BASE}
COPY reference_servers /opt/sockspec/reference_servers
WORKDIR /opt/sockspec
# exec form: the server is PID 1 and receives `docker kill -s TERM` itself.
ENTRYPOINT ["python3", "-m", "reference_servers"]
