"""bucket_logging.metrics under real gunicorn with 2 workers and PROMETHEUS_MULTIPROC_DIR:
one scrape of /metrics shows the sum of both workers' senders."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("gunicorn")

from prometheus_client.parser import text_string_to_metric_families
from support import KEY, Scripts, app_env, free_port

from bucket_logging import TrackingServer

PER_WORKER = 25

APP = """
import logging, os
import bucket_logging, bucket_logging.metrics
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

bucket_logging.metrics.use_prometheus()
log = logging.getLogger("app")
log.setLevel(logging.INFO)

def send_batch():
    # in each worker: its own sender, as an app configured in post_fork does
    log.addHandler(bucket_logging.BucketHandler(os.environ["KEY"], base_url=os.environ["URL"]))
    for i in range(int(os.environ["PER_WORKER"])):
        log.info("signed up", extra={"bucket_event": "Signed up", "user_id": f"{os.getpid()}-{i}"})
    assert bucket_logging.flush(10)

def app(environ, start_response):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
    return [generate_latest(registry)]
"""

CONF = """
def post_worker_init(worker):
    import app
    app.send_batch()

def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_scrape_sums_both_workers(
    server: TrackingServer, server_url: str, scripts: Scripts, tmp_path: Path
) -> None:
    scripts.write(APP, "app.py")
    scripts.write(CONF, "gunicorn_conf.py")
    prom = tmp_path / "prom"
    prom.mkdir()
    port = free_port()
    env = app_env(
        KEY=KEY, URL=server_url, PER_WORKER=str(PER_WORKER), PROMETHEUS_MULTIPROC_DIR=str(prom)
    )
    argv = ["-m", "gunicorn", "-c", "gunicorn_conf.py", "-w", "2", "-b", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, *argv, "app:app"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.wait_for(2 * PER_WORKER, timeout=30), "the workers did not deliver"
        pids = {call["userId"].split("-")[0] for call in server.calls}
        assert len(pids) == 2  # both workers sent their own
        want = {
            ("bucket_logging_items_sent_total", ()): 2.0 * PER_WORKER,
            ("bucket_logging_items_queued_total", ()): 2.0 * PER_WORKER,
            ("bucket_logging_queue_capacity_items", ()): 2.0 * 200_000,  # livesum: 2 workers
            ("bucket_logging_items_dropped_total", (("reason", "queue_full"),)): 0.0,
        }
        deadline = time.monotonic() + 20
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            try:
                got = scrape(f"http://localhost:{port}/metrics")
            except httpx.TransportError:
                got = {}
            if all(got.get(k) == v for k, v in want.items()):
                break
            time.sleep(0.05)
        assert {k: got.get(k) for k in want} == want
        requests = got[("bucket_logging_bulk_requests_total", ())]
        assert requests >= 2
        assert got[("bucket_logging_bulk_request_duration_seconds_count", ())] == requests
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
