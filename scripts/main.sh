#!/usr/bin/env bash
# The main job: start every reference server locally and check that it answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/sockspec ping --reference all "$@"
