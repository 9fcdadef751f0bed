"""The relay answers 200 only for what it kept, and never tracks a retried body twice.

A real relay process with a spool, SIGKILLed and restarted on the same spool; bodies
posted as pipelines post them (a retry is the identical body again).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import RelayProcess
from test_relay import KEY, post, start, vector_event

from bucket_logging import TrackingServer


def tracked(srv: TrackingServer, at_least: int, settle: float = 1.0) -> list[int]:
    """The user ids delivered, once ``at_least`` arrived and nothing more came for a while."""
    assert srv.wait_for(at_least, timeout=20)
    count = -1
    while count != srv.call_count:  # nothing more arrives (a duplicate would)
        count = srv.call_count
        time.sleep(settle)
    return sorted(int(call["userId"]) for call in srv.calls)


def kill(relay: RelayProcess) -> None:
    relay.proc.send_signal(signal.SIGKILL)
    relay.proc.communicate(timeout=10)
    assert relay.proc.returncode == -signal.SIGKILL


def test_a_retried_body_is_tracked_once_even_across_sigkill_and_restart(
    server: TrackingServer, relays: list[RelayProcess], tmp_path: Path
) -> None:
    spool = str(tmp_path / "spool")
    body = json.dumps([vector_event(n) for n in range(5)]).encode()
    relay = start(relays, server, "--spool-dir", spool)
    assert post(relay.url, body).status_code == 200
    again = post(relay.url, body, gzipped=True)  # a retry, compressed this time
    assert again.status_code == 200
    assert "not tracked again" in again.text
    assert tracked(server, 5) == list(range(5))
    kill(relay)

    relay = start(relays, server, "--spool-dir", spool)  # the same spool
    assert post(relay.url, body).status_code == 200  # remembered across the kill
    one_line_more = json.dumps([vector_event(n) for n in range(6)]).encode()
    assert post(relay.url, one_line_more).status_code == 200  # a new batch
    assert tracked(server, 11) == sorted([*range(5), *range(6)])
    status, err = relay.stop()
    assert status == 0, err
    assert "1 retried body(ies) answered 200, not tracked again" in err


def test_workers_share_the_window_of_retried_bodies(
    server: TrackingServer, relays: list[RelayProcess], tmp_path: Path
) -> None:
    spool = str(tmp_path / "spool")
    relay = start(relays, server, "--spool-dir", spool, "--workers", "2")
    body = json.dumps([vector_event(n) for n in range(5)]).encode()
    # each post on a new connection: the kernel spreads them over both workers'
    # sockets (SO_REUSEPORT; all 20 on one worker: 1 chance in 500,000)
    answers = [post(relay.url, body).status_code for _ in range(20)]
    assert answers == [200] * 20
    assert tracked(server, 5) == list(range(5))
    status, err = relay.stop()
    assert status == 0, err


def test_without_a_window_a_retried_body_is_tracked_again(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    body = json.dumps([vector_event(n) for n in range(3)]).encode()
    relay = start(relays, server, "--dedupe-window", "0")
    assert post(relay.url, body).status_code == 200
    assert post(relay.url, body).status_code == 200
    assert tracked(server, 6) == sorted([*range(3), *range(3)])


def test_fsync_answers_after_one_group_commit_and_delivers(
    server: TrackingServer, relays: list[RelayProcess], tmp_path: Path
) -> None:
    relay = start(relays, server, "--spool-dir", str(tmp_path / "spool"), "--fsync")
    bodies = [json.dumps([vector_event(100 * b + n) for n in range(10)]).encode() for b in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: post(relay.url, body).status_code, bodies))
    assert answers == [200] * 8
    assert len(tracked(server, 80)) == 80
    status, err = relay.stop()
    assert status == 0, err


def test_fsync_without_a_spool_is_refused_at_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "relay", "--port", "0", "--fsync"],
        env={"BUCKET_TRACKING_KEY": KEY, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "--fsync needs --spool-dir" in proc.stderr
