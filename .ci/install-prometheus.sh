#!/usr/bin/env bash
# Debian's prometheus server, for tests/relay/test_relay_prometheus.py (a real Prometheus scrapes
# the relay's GET /metrics; the test asks its query API). Only the binary is used: the test
# starts it on a free loopback port with a configuration of its own (the package's own service
# is not needed). Idempotent: nothing to do once installed; waits for the dpkg lock.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q -o DPkg::Lock::Timeout=600
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 prometheus
