#!/usr/bin/env bash
# The project's own tests, with lint, format and type checks first.
# Extra arguments go to pytest (e.g. -k evented, -x). Tests marked `extended`
# (larger versions of tests that run anyway, such as the whole 7 x 2 image
# matrix) are left out; `-m extended` runs just them, `-m ""` everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -p no:cacheprovider -m "not extended" "$@"
