#!/usr/bin/env bash
# The project's own tests, with lint, format and type checks first.
# Extra arguments go to pytest (e.g. -k evented, -x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -p no:cacheprovider "$@"
