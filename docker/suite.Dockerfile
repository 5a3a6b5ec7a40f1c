# The suite, for CI runners without Python: `docker run IMAGE sockspec run --address HOST:PORT`.
# Python packages come from a wheelhouse built on the host (containers here do
# not trust the host's TLS-intercepting CA; verification is never turned off).
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /tmp/wheelhouse sockspec \
 && rm -rf /tmp/wheelhouse
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /work
CMD ["sockspec", "--help"]
