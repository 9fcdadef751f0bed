"""With a spool, a log call that returned survives SIGKILL of its process (the journal).

Real processes logging through a real ``BucketHandler`` with ``spool_dir=``, killed
with ``os.kill(pid, SIGKILL)``; a real local server; the next process on the same
spool must deliver every call that returned, once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import KEY, closed_port_url

from bucket_logging import BulkSender
from bucket_logging._server.server import TrackingServer

APP = r"""
import json, logging, os, sys, threading, time

cfg = json.loads(sys.argv[1])
from bucket_logging import BucketHandler

handler = BucketHandler(
    KEY, base_url=cfg["url"], spool_dir=cfg["spool"], backoff_base=10,
    max_batch_items=BATCH, max_concurrent_requests=IN_FLIGHT,
)
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def burst(n, prefix):
    for i in range(n):
        log.info("did", extra={"bucket_event": "Did", "user_id": f"{prefix}{i}"})

if cfg["mode"] == "burst":
    burst(cfg["count"], "b")
    os.kill(os.getpid(), 9)  # right after the last call returned
else:  # threads logging steadily; each returned call's index is appended to a file
    out = open(cfg["out"], "a", buffering=1)
    lock = threading.Lock()

    def work(t):  # steadily: about 4,000 calls/s a thread, 16,000 in all
        i = 0
        while True:
            for _ in range(40):
                name = f"{cfg['trial']}-t{t}-{i}"
                log.info("did", extra={"bucket_event": "Did", "user_id": name})
                with lock:
                    out.write(name + "\n")
                i += 1
            time.sleep(0.01)

    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    print("logging", flush=True)
    threading.Event().wait()
""".replace("KEY", repr(KEY))

#: A kill while a request is on the wire (or answered, its row not yet deleted)
#: duplicates that request's batch when the next process sends it again: the API has
#: no idempotency key. That bound, counted in stats.redelivered, is what the journal
#: adds to nothing; with the endpoint down no request is ever accepted.
BATCH, IN_FLIGHT = 200, 2
APP = APP.replace("BATCH", str(BATCH)).replace("IN_FLIGHT", str(IN_FLIGHT))


def run_app(tmp_path: Path, spool: Path, url: str, **cfg: object) -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    config = {"url": url, "spool": str(spool), **cfg}
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def deliver_what_is_left(spool: Path, server: TrackingServer, expected: set[str]) -> Counter[str]:
    """A new process's sender on the same spool: what the server got, as counts."""
    sender = BulkSender(KEY, base_url=server.url, spool_dir=spool, backoff_base=0.05)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {str(call["userId"]) for call in server.calls}
            if expected <= got:
                break
            time.sleep(0.05)
        assert sender.flush(timeout=10)
    finally:
        sender.close(timeout=5)
    return Counter(str(call["userId"]) for call in server.calls)


@pytest.mark.parametrize("endpoint", ["up", "down"])
def test_a_burst_then_sigkill_the_next_process_delivers_all(
    tmp_path: Path, server: TrackingServer, endpoint: str
) -> None:
    spool = tmp_path / "spool"
    # the burst reaches the server by 127.0.0.1, the threads below by localhost
    url = server.url if endpoint == "up" else closed_port_url()
    app = run_app(tmp_path, spool, url, mode="burst", count=1000)
    _, err = app.communicate(timeout=30)
    assert app.returncode == -signal.SIGKILL, err
    expected = {f"b{i}" for i in range(1000)}
    got = deliver_what_is_left(spool, server, expected)
    assert set(got) == expected
    assert all(n == 1 for n in got.values())  # once each
    assert not [p for p in spool.iterdir() if p.suffix == ".blj"]  # all settled


@pytest.mark.parametrize("endpoint", ["up", "down"])
def test_threads_logging_sigkill_at_random_moments_lose_nothing(
    tmp_path: Path, server: TrackingServer, endpoint: str
) -> None:
    spool = tmp_path / "spool"
    out = tmp_path / "returned.txt"
    url = server.url.replace("127.0.0.1", "localhost") if endpoint == "up" else closed_port_url()
    chance = random.Random(26 if endpoint == "up" else 62)
    trials = 3
    for trial in range(trials):  # three processes in turn on one spool, each killed at random
        app = run_app(tmp_path, spool, url, mode="threads", out=str(out), trial=trial)
        assert app.stdout is not None
        assert app.stdout.readline() == "logging\n"
        time.sleep(chance.uniform(0.2, 1.2))  # the random moment of the kill
        os.kill(app.pid, signal.SIGKILL)
        app.communicate(timeout=10)
        assert app.returncode == -signal.SIGKILL
    returned = {line for line in out.read_text().splitlines() if line}  # (last may be cut)
    assert len(returned) > 1000
    got = deliver_what_is_left(spool, server, returned)
    lost = returned - set(got)
    assert not lost, f"{len(lost)} of {len(returned)} returned calls never delivered"
    duplicates = sum(got.values()) - len(got)
    if endpoint == "down":  # no request ever reached a server: nothing twice
        assert duplicates < 0.01 * len(returned), (duplicates, len(returned))
    else:  # at most the batches in flight at each kill
        assert duplicates <= trials * IN_FLIGHT * BATCH, (duplicates, len(returned))
