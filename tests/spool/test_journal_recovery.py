"""Recovering journals: torn or damaged ones, and a gunicorn worker killed mid-stream.

Real processes killed with SIGKILL, real journal files damaged on disk as a crash or
a disk fault leaves them, a real gunicorn with two workers sharing one spool.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import KEY, free_port

from bucket_logging import BulkSender
from bucket_logging._server.server import TrackingServer
from bucket_logging._spool.journal import HEADER_BYTES, RECORD
from bucket_logging._spool.recovery import parse

BURST = r"""
import json, logging, os, sys
cfg = json.loads(sys.argv[1])
from bucket_logging import BucketHandler
log = logging.getLogger("app")
log.addHandler(BucketHandler(KEY, base_url=cfg["url"], spool_dir=cfg["spool"], backoff_base=10))
log.setLevel(logging.INFO)
log.propagate = False
for i in range(cfg["count"]):
    log.info("did", extra={"bucket_event": "Did", "user_id": f"b{i}"})
os.kill(os.getpid(), 9)
""".replace("KEY", repr(KEY))


def killed_burst(tmp_path: Path, spool: Path, url: str, count: int) -> Path:
    """A process logs ``count`` calls and is SIGKILLed at once: its journal segment."""
    script = tmp_path / "burst.py"
    script.write_text(BURST)
    config = json.dumps({"url": url, "spool": str(spool), "count": count})
    proc = subprocess.run(
        [sys.executable, str(script), config], check=False, capture_output=True, timeout=30
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    # the first segment (a second one may have been made ahead, empty)
    return sorted(p for p in spool.iterdir() if p.suffix == ".blj")[0]


def delivered(spool: Path, server: TrackingServer, want: int) -> Counter[str]:
    """What a new sender on ``spool`` delivers (it recovers the dead journals)."""
    sender = BulkSender(KEY, base_url=server.url, spool_dir=spool, backoff_base=0.05)
    try:
        server.wait_for(want, timeout=15)
        assert sender.flush(timeout=10)
    finally:
        sender.close(timeout=5)
    return Counter(str(call["userId"]) for call in server.calls)


def test_a_torn_and_damaged_journal_gives_every_intact_record(
    tmp_path: Path, server: TrackingServer, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    # the endpoint is down for the writer: everything stays in its journal
    segment = killed_burst(tmp_path, spool, "http://127.0.0.1:9", 200)
    data = bytearray(segment.read_bytes())
    offsets = []
    off = HEADER_BYTES
    while True:
        magic, n, _, _ = RECORD.unpack_from(data, off)
        if magic == 0:
            break
        offsets.append((off, n))
        off += 20 + n
    assert len(offsets) == 200
    flipped_at, flipped_n = offsets[50]
    data[flipped_at + 20 + flipped_n // 2] ^= 0x40  # a flipped bit inside record 50
    last_at, last_n = offsets[-1]
    data[last_at + 20 + last_n // 2 : last_at + 20 + last_n] = bytes(last_n - last_n // 2)
    segment.write_bytes(bytes(data))  # the last record cut mid-way, as a crash leaves it
    records, damaged, _ = parse(bytes(data), HEADER_BYTES, 0)
    assert (len(records), damaged) == (198, 2)

    with caplog.at_level(logging.INFO, logger="bucket_logging"):
        got = delivered(spool, server, 198)
    assert set(got) == {f"b{i}" for i in range(199) if i != 50}
    assert all(n == 1 for n in got.values())
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "2 damaged record(s)" in said, said
    assert not list(spool.glob("*.blj"))  # recovered and removed


def test_a_journal_file_of_garbage_is_set_aside_and_the_rest_delivered(
    tmp_path: Path, server: TrackingServer, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    segment = killed_burst(tmp_path, spool, "http://127.0.0.1:9", 100)
    garbage = spool / "journal-1-0123456789ab-000000000000.blj"
    garbage.write_bytes(os.urandom(4096))
    garbage.chmod(0o600)
    with caplog.at_level(logging.INFO, logger="bucket_logging"):
        got = delivered(spool, server, 100)
    assert set(got) == {f"b{i}" for i in range(100)}
    assert not segment.exists()
    assert (spool / (garbage.name + ".damaged")).exists()
    assert "set aside" in " ".join(r.getMessage() for r in caplog.records)


WSGI = r"""
import logging, os
from bucket_logging import BucketHandler

log = logging.getLogger("app")
url, spool = os.environ["TEST_URL"], os.environ["TEST_SPOOL"]
log.addHandler(BucketHandler(KEY, base_url=url, spool_dir=spool))
log.setLevel(logging.INFO)
log.propagate = False

def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    if path == "pid":
        body = str(os.getpid()).encode()
    else:
        log.info("hit", extra={"bucket_event": "Hit", "user_id": path})
        body = b"ok"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
""".replace("KEY", repr(KEY))


def get(port: int, path: str) -> str | None:
    """The body of GET ``path``, or None when the request failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        body = response.read().decode()
        return body if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def test_gunicorn_worker_killed_mid_stream_loses_nothing(
    tmp_path: Path, server: TrackingServer
) -> None:
    (tmp_path / "wsgi_app.py").write_text(WSGI)
    spool = tmp_path / "spool"
    port = free_port()
    env = {**os.environ, "TEST_URL": server.url, "TEST_SPOOL": str(spool)}
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi_app:app"]
    gunicorn = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while get(port, "pid") is None:
            assert time.monotonic() < deadline and gunicorn.poll() is None, "gunicorn did not start"
            time.sleep(0.05)
        returned = []
        killed = False
        for i in range(1500):
            if get(port, f"u{i}") == "ok":
                returned.append(f"u{i}")
            if i == 700:  # mid-stream: a worker dies as an OOM kill would end it
                pid = get(port, "pid")
                assert pid is not None
                os.kill(int(pid), signal.SIGKILL)
                killed = True
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        _, err = gunicorn.communicate(timeout=30)
    assert killed and len(returned) > 1400
    assert "SIGKILL" in err or "killed" in err.lower() or "exited" in err.lower(), err[-2000:]
    got = delivered(spool, server, len(returned))  # the next deploy delivers what is left
    lost = set(returned) - set(got)
    assert not lost, f"{len(lost)} of {len(returned)} answered requests never delivered"
