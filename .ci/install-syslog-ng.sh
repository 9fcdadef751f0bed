#!/usr/bin/env bash
# syslog-ng with its http() destination, for tests/system/test_relay_clients.py (the relay fed by a
# real syslog-ng that tails a JSON-lines log). Idempotent: nothing to do once installed.
set -euo pipefail
if command -v syslog-ng >/dev/null 2>&1 && ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends syslog-ng-core syslog-ng-mod-http
