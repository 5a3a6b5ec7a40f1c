#!/usr/bin/env bash
# The main job: check that every reference server answers, then run the
# conformance suite against all seven of them and against the reference
# client (its DNS scenarios use Docker where an engine answers, and are
# UNSUPPORTED, with the reason, where none does).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
.venv/bin/sockspec ping --reference all
exec .venv/bin/sockspec run --reference all --client-reference -n 2 "$@"
