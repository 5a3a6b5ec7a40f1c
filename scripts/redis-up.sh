#!/usr/bin/env bash
# Install Debian's redis-server (7.0 on bookworm, built with TLS; redis-cli and
# redis-benchmark come with it) when it is missing: the oracle of the RESP2
# profile's tests (tests/test_resp_*.py). Needs root. Starts no daemon: each
# test starts its own redis-server on a free port with --save '' --appendonly no,
# and stops the one the package may have started.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis-up: installing redis-server"
    apt-get update -qq
    # policy-rc.d 101: the package installs without starting its own daemon on 6379.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
redis-server --version | sed 's/^/redis-up: /'
