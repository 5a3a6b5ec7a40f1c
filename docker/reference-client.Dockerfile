# The reference client needs nothing but python3:
# `docker run --network NET IMAGE [flags] HOST PORT COMMAND [ARGS...]`.
ARG BASE
FROM ${BASE}
COPY reference_client /opt/sockspec/reference_client
WORKDIR /opt/sockspec
ENTRYPOINT ["python3", "-m", "reference_client"]
