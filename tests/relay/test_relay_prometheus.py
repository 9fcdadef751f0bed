"""A real Prometheus server (Debian's ``prometheus``, installed by
.ci/install-prometheus.sh) scrapes a relay run with ``--workers 2`` and a spool while
batches are posted; its query API's sums match what was posted and what the local
tracking server received, and the items the server answered 400 for are in the dropped
counter with their reason. Skipped here without prometheus; failed under CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from support import RelayProcess, free_port, poll

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from bucket_logging import TrackingServer

KEY = "trRELAYkey-8e2b4d6f1a3c5079"
TOKEN = "relay-token-5b9d2e7c41f0a6"
BATCHES = 12
PER_BATCH = 25
REJECTED = {7, 131, 262}  # user ids the server answers 400 for


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing under CI (.ci/install-prometheus.sh installs it)")
        pytest.skip("prometheus is not installed (see .ci/install-prometheus.sh)")
    return found


def start_prometheus(tmp_path: Path, relay_url: str, port: int) -> subprocess.Popen[bytes]:
    target = relay_url.removeprefix("http://")
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: relay\n"
        "    authorization:\n"
        f"      credentials_file: {tmp_path / 'token'}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    return subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def query(port: int, expr: str) -> float | None:
    """The value of ``expr`` now (one series), or None while there is none."""
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5
        ).json()
    except (httpx.TransportError, ValueError):
        return None
    result = answer.get("data", {}).get("result", [])
    if answer.get("status") != "success" or len(result) != 1:
        return None
    return float(result[0]["value"][1])


def test_prometheus_sums_the_workers_and_counts_400s_by_reason(
    tmp_path: Path, relays: list[RelayProcess]
) -> None:
    prometheus_binary()
    with TrackingServer(tracking_keys=[KEY]) as server:
        server.reject_items(lambda entry: entry.get("userId") in REJECTED)
        spool = tmp_path / "spool"
        relay = RelayProcess(
            server.url,
            KEY,
            "--workers",
            "2",
            "--token",
            TOKEN,
            "--spool-dir",
            str(spool),
            host="localhost",  # the target as a Prometheus config names it
        )
        relays.append(relay)
        port = free_port()
        prom = start_prometheus(tmp_path, relay.url, port)
        try:
            assert poll(lambda: query(port, 'up{job="relay"}') == 1, timeout=30), (
                "Prometheus never scraped the relay"
            )
            for batch in range(BATCHES):  # posted while Prometheus scrapes
                events = [
                    {"bucket_event": "Scraped", "user_id": batch * PER_BATCH + i}
                    for i in range(PER_BATCH)
                ]
                assert relay.post(json.dumps(events).encode(), TOKEN).status_code == 200
            posted = BATCHES * PER_BATCH
            delivered = posted - len(REJECTED)
            assert server.wait_for(delivered, 30)
            want = {
                "sum(bucket_relay_records_received_total)": posted,
                "sum(bucket_relay_records_accepted_total)": posted,
                'sum(bucket_relay_requests_total{receiver="ndjson",code="200"})': BATCHES,
                "sum(bucket_relay_items_queued_total)": posted,
                "sum(bucket_relay_items_sent_total)": delivered,
                'sum(bucket_relay_items_dropped_total{reason="rejected"})': len(REJECTED),
                'sum(bucket_relay_items_dropped_total{reason!="rejected"})': 0,
                "sum(bucket_relay_queue_capacity_items)": 2 * 200_000,  # both workers live
            }
            got: dict[str, float | None] = {}

            def all_there() -> bool:
                got.update({expr: query(port, expr) for expr in want})
                return got == want

            assert poll(all_there, timeout=30, step=0.5), got
            assert len(server.calls) == delivered  # what the server received
            workers = query(port, "count(bucket_relay_build_info)")
            assert workers == 1  # one series: the workers' sum, one scrape
        finally:
            prom.kill()
            prom.communicate(timeout=10)
        status, err = relay.stop()
        assert status == 1, err  # the rejected items were lost (said in the summary)
        assert TOKEN not in err and KEY not in err
