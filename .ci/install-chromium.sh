#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the tracking page's browser tests
# (tests/test_tracking_page_browser.py). Idempotent: nothing to do when both are there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
