#!/usr/bin/env bash
# Install Debian's headless Chromium when it is missing, for the browser test
# of the HTML report (tests/test_browser.py). Needs root. Does nothing if
# /usr/bin/chromium is already there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "browser-up: installing chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
chromium --version | sed 's/^/browser-up: /'
