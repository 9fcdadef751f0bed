#!/usr/bin/env bash
# The OpenTelemetry Node SDK (logs) for tests/system/test_relay_clients.py, from npm into
# tests/system/relay_clients/node_modules (package.json and package-lock.json are committed).
# Idempotent: nothing to do once installed.
set -euo pipefail
cd "$(dirname "$0")/../tests/system/relay_clients"
stamp=node_modules/.installed-from
if [ -f "$stamp" ] && [ -f package-lock.json ] && cmp -s "$stamp" package-lock.json; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nodejs npm
fi
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
cp package-lock.json "$stamp"
