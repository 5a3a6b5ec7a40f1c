#!/usr/bin/env bash
# Bring up a Docker engine when none answers: install Debian's docker.io and
# debootstrap (for base images when no registry answers), start dockerd in the
# background, and wait for it. Needs root. Does nothing if Docker already works.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker-up: installing docker.io and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker-up: starting dockerd (log: /var/log/sockspec-dockerd.log)"
    nohup dockerd >/var/log/sockspec-dockerd.log 2>&1 &
    deadline=$((SECONDS + 60))
    # Wait for the engine to answer, with a deadline.
    until docker info >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "docker-up: dockerd did not answer within 60 s" >&2
            tail -n 20 /var/log/sockspec-dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
fi
docker version --format 'docker-up: engine {{.Server.Version}} is up'
