"""The on-disk spool (``spool_dir=``): real processes, a real local server, a real SQLite file.

Processes are started with ``sys.executable`` running a small script written to
``tmp_path``; the endpoint is either a :class:`TrackingServer` on 127.0.0.1 or a
closed port (nothing listens: every request is refused, as in an outage).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import KEY, closed_port_url, free_port

from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._sender.config import ENV_SPOOL_DIR
from bucket_logging._server.server import TrackingServer
from bucket_logging._spool.store import SPOOL_FILE, SpoolStore

#: Quick retries, so that an endpoint coming back is noticed at once.
QUICK: dict[str, Any] = {"backoff_base": 0.05, "backoff_max": 0.2}

CHILD = r"""
import atexit, dataclasses, json, logging, sys, time

cfg = json.loads(sys.argv[1])
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
marks = {}

def report_at_exit():
    stats = sender.stats
    print(json.dumps({
        "stats": dataclasses.asdict(stats),
        "exit_seconds": time.monotonic() - marks.get("exit", time.monotonic()),
    }), flush=True)

atexit.register(report_at_exit)  # before the sender's own hook: runs after it

from bucket_logging import BulkSender, Item

sender = BulkSender(cfg["key"], base_url=cfg["url"], spool_dir=cfg["spool"], **cfg["options"])
prefix = cfg["prefix"]
for i in range(cfg["count"]):
    if i % 10 == 9:
        sender.enqueue(Item.user(f"{prefix}{i}", {"n": i}))
    else:
        sender.enqueue(Item.event("Spooled", f"{prefix}{i}", {"n": i}))
print("queued", flush=True)
if cfg["mode"] == "hang":
    sys.stdin.read()  # until killed
elif cfg["mode"] == "hold":
    sys.stdin.readline()  # until the test says so
elif cfg["mode"] == "flush":
    assert sender.flush(cfg.get("timeout", 30)), sender.stats
marks["exit"] = time.monotonic()
"""


# --------------------------------------------------------------------------- helpers


def ids(n: int, prefix: str = "") -> set[str]:
    return {f"{prefix}{i}" for i in range(n)}


def delivered_ids(srv: TrackingServer) -> list[str]:
    return [str(call["userId"]) for call in srv.calls]


def spooled_items(spool: Path, where: str = "1") -> int:
    """Items in the spool file right now, read as another process would."""
    path = spool / SPOOL_FILE
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
            query = f"SELECT total(items) FROM batches WHERE {where}"
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll a condition another process brings about (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Child:
    """A process that logs ``count`` items through a sender with the spool."""

    def __init__(
        self,
        script: Path,
        spool: Path,
        url: str,
        *,
        count: int,
        mode: str,
        prefix: str = "",
        **options: Any,
    ) -> None:
        cfg = {
            "key": KEY,
            "url": url,
            "spool": str(spool),
            "count": count,
            "mode": mode,
            "prefix": prefix,
            "options": options,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, timeout: float = 30.0) -> tuple[dict[str, Any], str]:
        """Wait for a normal exit; return the reported stats and stderr."""
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report, err

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def senders() -> Iterator[Callable[..., BulkSender]]:
    made: list[BulkSender] = []

    def make(spool: Path | None, url: str, **options: Any) -> BulkSender:
        for name, value in QUICK.items():
            options.setdefault(name, value)
        sender = BulkSender(KEY, base_url=url, spool_dir=spool, **options)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close(timeout=2.0)


def fill_spool(make: Callable[..., BulkSender], spool: Path, count: int, **options: Any) -> None:
    """Leave ``count`` items in the spool: a sender that never reaches the endpoint."""
    sender = make(spool, closed_port_url(), shutdown_timeout=0.3, **options)
    for i in range(count):
        sender.enqueue(Item.event("Spooled", str(i)))
    sender.close()
    assert sender.stats.spooled == count
    assert sender.stats.dropped == {}
    assert spooled_items(spool) == count


# --------------------------------------------------------------------------- crashes and outages


def test_kill_9_then_the_next_process_delivers_all(
    script: Path, spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    # a long back-off: the kill lands between two refused attempts, not during one
    child = Child(
        script, spool, closed_port_url(), count=1000, mode="hang", prefix="k", backoff_base=10
    )
    try:
        # persisted within about one flush interval (1 s), while the endpoint is down,
        # and its first request refused
        assert wait_until(lambda: spooled_items(spool, "attempted = 0") == 1000)
    finally:
        child.kill()
    sender = senders(spool, server.url)
    assert server.wait_for(1000, timeout=15)
    assert sender.flush(timeout=5)  # the replayed batch is settled (deleted) too
    got = delivered_ids(server)
    assert sorted(got) == sorted(ids(1000, "k"))  # every item, once
    stats = sender.stats
    assert stats.replayed == 1000
    assert stats.redelivered == 0  # every request of the dead process was refused
    assert stats.queued == 0 and stats.pending == 0
    assert spooled_items(spool) == 0


@pytest.mark.parametrize(
    "case",
    [
        (100, 0, {}),
        # The next four batches must be stored (one request slot, a queue that is not
        # roomy), so the one on the wire is stored first: recovery must not send those
        # four again from the journal, only the one on the wire.
        (
            500,
            500,
            {"max_batch_items": 100, "max_concurrent_requests": 1, "max_queue_bytes": 150_000},
        ),
    ],
    ids=["one-batch", "batches-stored-behind-it"],
)
def test_killed_during_a_request_only_that_batch_comes_twice_and_is_counted(
    script: Path,
    spool: Path,
    senders: Callable[..., BulkSender],
    case: tuple[int, int, dict[str, Any]],
) -> None:
    count, stored, options = case  # items logged, items stored before the kill, options
    # The server holds the first request until the test let it go: after the kill, so
    # the answer never reaches the child however slowly this process is scheduled (a
    # timed delay raced the kill on a loaded machine); then accepts it.
    gate = threading.Event()

    def hold(call: dict[str, Any]) -> None:
        gate.wait(30)

    with TrackingServer(on_call=hold) as server:
        try:
            url = server.url if not stored else f"http://localhost:{server.port}"  # both
            child = Child(script, spool, url, count=count, mode="hang", prefix="d", **options)
            try:
                assert server.wait_for_received(1, timeout=10)
                assert wait_until(lambda: spooled_items(spool) == stored)
            finally:
                child.kill()  # the answer never reaches it (its journal says "attempted")
        finally:
            gate.set()
        first = min(count, options.get("max_batch_items", count))
        assert server.wait_for(first, timeout=10)  # the held request was accepted after all
        sender = senders(spool, server.url)
        assert server.wait_for(count + first, timeout=15)
        assert sender.flush(timeout=5)
        got = delivered_ids(server)
    assert set(got) == ids(count, "d")
    duplicates = len(got) - len(set(got))
    assert duplicates == sender.stats.redelivered == first  # rare, and counted
    assert spooled_items(spool) == 0


def test_outage_for_a_whole_life_then_the_next_process_delivers(
    script: Path, spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    child = Child(
        script, spool, closed_port_url(), count=1000, mode="exit", shutdown_timeout=1.0, **QUICK
    )
    report, err = child.finish()
    stats = report["stats"]
    assert stats["spooled"] == 1000
    assert stats["dropped"] == {}  # left in the spool, not dropped
    assert stats["pending"] == 0
    assert report["exit_seconds"] < 1.0 + 1.0  # the exit respects shutdown_timeout
    assert "left in the spool" in err
    assert KEY not in err
    # a refused attempt cut by the exit deadline stays flagged: a possible duplicate
    flagged = spooled_items(spool, "attempted = 1")

    sender = senders(spool, server.url)
    assert server.wait_for(1000, timeout=15)
    assert sender.flush(timeout=5)
    got = delivered_ids(server)
    duplicates = len(got) - len(set(got))
    assert set(got) == ids(1000)
    assert duplicates == 0  # the endpoint was down: nothing was really delivered twice
    assert sender.stats.redelivered == flagged  # counted, never more than flagged
    assert sender.stats.replayed == 1000
    assert spooled_items(spool) == 0


def leave_a_backlog_of_30(script: Path, spool: Path) -> None:
    """A run that logs 30 items during an outage and exits: they stay in the spool."""
    first = Child(script, spool, closed_port_url(), count=30, mode="exit",
                  shutdown_timeout=0.5, **QUICK)  # fmt: skip
    report, err = first.finish()
    assert report["stats"]["spooled"] == 30, err


def test_a_short_lived_process_delivers_the_backlog_before_it_exits(
    script: Path, spool: Path, server: TrackingServer
) -> None:
    # a cron job, a CLI: the first run meets an outage, the next one lives 0.3 s
    leave_a_backlog_of_30(script, spool)
    second = Child(script, spool, server.url, count=5, mode="exit", prefix="b",
                   shutdown_timeout=5.0, **QUICK)  # fmt: skip
    report, err = second.finish()
    got = delivered_ids(server)  # (the process has exited: nothing more comes)
    assert set(got) == ids(30) | ids(5, "b"), err
    assert len(got) == 35
    assert report["stats"]["replayed"] == 30
    assert "left in the spool" not in err
    assert spooled_items(spool) == 0


def test_a_process_stopped_with_sigterm_delivers_the_backlog_too(
    script: Path, spool: Path, server: TrackingServer
) -> None:
    # docker stop: the library's SIGTERM handler closes the sender, backlog included
    leave_a_backlog_of_30(script, spool)
    url = f"http://localhost:{server.port}"
    second = Child(script, spool, url, count=5, mode="hold", prefix="b",
                   shutdown_timeout=5.0, **QUICK)  # fmt: skip
    assert second.proc.stdout is not None
    assert second.proc.stdout.readline() == "queued\n"
    second.proc.send_signal(signal.SIGTERM)
    _, err = second.proc.communicate(timeout=30)
    assert second.proc.returncode == -signal.SIGTERM, err
    got = delivered_ids(server)
    assert set(got) == ids(30) | ids(5, "b"), err
    assert len(got) == 35
    assert spooled_items(spool) == 0


def test_two_processes_share_a_spool(script: Path, spool: Path) -> None:
    srv = TrackingServer(port=free_port()).start()  # its port stays free while it is down
    url = srv.url
    srv.stop()  # down while they log; the same port comes back later
    a = Child(script, spool, url, count=2000, mode="flush", prefix="a", **QUICK)
    b = Child(script, spool, url, count=2000, mode="flush", prefix="b", **QUICK)
    try:
        assert wait_until(lambda: spooled_items(spool) == 4000)
        srv.start()
        report_a, _ = a.finish()
        report_b, _ = b.finish()
        got = delivered_ids(srv)
    finally:
        for child in (a, b):
            if child.proc.poll() is None:
                child.kill()
        srv.stop()
    assert sorted(got) == sorted(ids(2000, "a") | ids(2000, "b"))  # nothing twice
    for report in (report_a, report_b):
        assert report["stats"]["sent"] == 2000  # each delivered its own
        assert report["stats"]["replayed"] == 0
        assert report["stats"]["spooled"] == 0
    assert spooled_items(spool) == 0


def test_two_processes_replay_one_backlog_without_duplicates(
    script: Path, spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    fill_spool(senders, spool, 3000, max_batch_items=100)
    # a batch whose refused request was cut by the filler's shutdown stays flagged as
    # attempted: replaying it counts as a possible duplicate (rare; timing-dependent)
    flagged = spooled_items(spool, "attempted = 1")
    a = Child(script, spool, server.url, count=0, mode="hold", **QUICK)
    b = Child(script, spool, server.url, count=0, mode="hold", **QUICK)
    try:
        assert server.wait_for(3000, timeout=15)
    finally:
        for child in (a, b):
            assert child.proc.stdin is not None
            child.proc.stdin.write("exit\n")
            child.proc.stdin.flush()
    report_a, _ = a.finish()
    report_b, _ = b.finish()
    got = delivered_ids(server)
    assert sorted(got) == sorted(ids(3000))
    replayed = report_a["stats"]["replayed"] + report_b["stats"]["replayed"]
    assert replayed == 3000
    redelivered = report_a["stats"]["redelivered"] + report_b["stats"]["redelivered"]
    assert redelivered == flagged  # no duplicate beyond what the filler left ambiguous
    assert spooled_items(spool) == 0


FORK = r"""
import json, os, sys
from bucket_logging import BulkSender, Item

cfg = json.loads(sys.argv[1])
sender = BulkSender(cfg["key"], base_url=cfg["url"], spool_dir=cfg["spool"])
for i in range(300):
    sender.enqueue(Item.event("Forked", f"p{i}"))
# Fork once the sender thread is up (its client created, its spool open): a fork while
# another thread is importing a module can leave that module's import lock held.
assert sender.flush(10)
for i in range(300):
    sender.enqueue(Item.event("Forked", f"q{i}"))  # queued before the fork: the parent's
pid = os.fork()
if pid == 0:  # the child: a sender (and a spool connection) of its own
    for i in range(300):
        sender.enqueue(Item.event("Forked", f"c{i}"))
    ok = sender.flush(10)
    sender.close()
    os._exit(0 if ok and sender.stats.sent == 300 else 1)
_, status = os.waitpid(pid, 0)
assert sender.flush(10)
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "sent": sender.stats.sent}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_gives_the_child_its_own_spool_connection(
    tmp_path: Path, spool: Path, server: TrackingServer
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    cfg = {"key": KEY, "url": server.url, "spool": str(spool)}
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"child": 0, "sent": 600}
    got = delivered_ids(server)
    assert sorted(got) == sorted(ids(300, "p") | ids(300, "q") | ids(300, "c"))  # each once
    assert spooled_items(spool) == 0
    with contextlib.closing(sqlite3.connect(spool / SPOOL_FILE)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------- limits


def test_size_limit_drops_the_oldest_first(
    spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    fill_spool(senders, spool, 2000, max_batch_items=100)
    errors: list[DeliveryError] = []
    sender = senders(spool, server.url, spool_max_bytes=120_000, on_error=errors.append)
    dropped = _wait_stat(sender, lambda s: s.dropped.get("spool_full", 0))
    assert 0 < dropped < 2000
    assert dropped % 100 == 0  # whole batches, counted by item
    assert server.wait_for(2000 - dropped, timeout=15)
    assert sender.flush(timeout=5)
    assert set(delivered_ids(server)) == {str(i) for i in range(dropped, 2000)}  # the newest
    assert sum(e.count for e in errors if e.reason == "spool_full") == dropped


def test_size_limit_while_the_endpoint_is_down(
    spool: Path, senders: Callable[..., BulkSender]
) -> None:
    limit = 150_000
    sender = senders(
        spool, closed_port_url(), spool_max_bytes=limit, max_batch_items=100, shutdown_timeout=0.3
    )
    for i in range(5000):
        sender.enqueue(Item.event("Spooled", str(i), {"pad": "x" * 40}))
    sender.close()
    stats = sender.stats
    assert stats.dropped["spool_full"] > 0
    assert stats.spooled + stats.dropped["spool_full"] == 5000
    store = SpoolStore(str(spool), "-", limit, 1.0)
    store.open()
    try:
        assert store.used_bytes() <= limit
    finally:
        store.close()
    assert spooled_items(spool) == stats.spooled


def test_age_limit_drops_expired_batches(
    spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    fill_spool(senders, spool, 1000, max_batch_items=100)
    with contextlib.closing(sqlite3.connect(spool / SPOOL_FILE)) as conn, conn:
        conn.execute(
            "UPDATE batches SET created = created - 8 * 86400"
            " WHERE id IN (SELECT id FROM batches ORDER BY id LIMIT 3)"
        )
    errors: list[DeliveryError] = []
    sender = senders(spool, server.url, on_error=errors.append)
    assert server.wait_for(700, timeout=15)
    assert sender.flush(timeout=5)
    assert sender.stats.dropped == {"spool_expired": 300}
    assert set(delivered_ids(server)) == {str(i) for i in range(300, 1000)}
    assert [(e.reason, e.count) for e in errors] == [("spool_expired", 300)]


# --------------------------------------------------------------------------- failures


def test_corrupted_spool_is_reported_and_memory_takes_over(
    spool: Path,
    server: TrackingServer,
    senders: Callable[..., BulkSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool.mkdir()
    (spool / SPOOL_FILE).write_bytes(b"this is not a database\n" * 200)
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    sender = senders(spool, server.url)
    for i in range(500):
        sender.enqueue(Item.event("Memory", str(i)))
    assert sender.flush(timeout=10)
    assert set(delivered_ids(server)) == ids(500)
    assert sender.stats.sent == 500 and sender.stats.dropped == {}
    assert any("cannot be used" in r.getMessage() for r in caplog.records)
    assert (spool / SPOOL_FILE).read_bytes().startswith(b"this is not")  # left alone


@pytest.mark.parametrize("how", ["below_a_file", "read_only"])
def test_unwritable_spool_is_reported_and_memory_takes_over(
    how: str,
    tmp_path: Path,
    server: TrackingServer,
    senders: Callable[..., BulkSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if how == "below_a_file":
        (tmp_path / "file").write_text("")
        spool = tmp_path / "file" / "spool"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only directories")
        spool = tmp_path / "ro"
        spool.mkdir(mode=0o500)
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    sender = senders(spool, server.url)
    for i in range(300):
        sender.enqueue(Item.event("Memory", str(i)))
    assert sender.flush(timeout=10)
    assert set(delivered_ids(server)) == ids(300)
    assert any("cannot be used" in r.getMessage() for r in caplog.records)


def test_a_rejected_item_is_final_with_a_spool(
    spool: Path, server: TrackingServer, senders: Callable[..., BulkSender]
) -> None:
    server.reject_items(lambda call: call.get("userId") == "poison")
    sender = senders(spool, server.url)
    for i in range(100):
        sender.enqueue(Item.event("Spooled", "poison" if i == 37 else str(i)))
    assert sender.flush(timeout=10)
    stats = sender.stats
    assert stats.rejected == 1 and stats.sent == 99
    assert stats.spooled == 0
    assert spooled_items(spool) == 0  # dropped, not kept for another try
    requests = len(server.requests)
    sender.close()
    again = senders(spool, server.url)
    again.enqueue(Item.event("Spooled", "after"))
    assert again.flush(timeout=5)
    assert again.stats.replayed == 0
    assert len(server.requests) == requests + 1


def test_another_client_error_leaves_the_items_in_the_spool(
    spool: Path, senders: Callable[..., BulkSender], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    with TrackingServer(tracking_keys={"another-key"}) as srv:
        sender = senders(spool, srv.url)
        for i in range(50):
            sender.enqueue(Item.event("Spooled", str(i)))
        assert sender.flush(timeout=10)
    assert sender.stats.spooled == 50 and sender.stats.dropped == {}
    assert spooled_items(spool) == 50
    assert any("left in the spool" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- the caller's thread


def test_spool_io_never_runs_on_the_calling_thread(
    spool: Path,
    server: TrackingServer,
    senders: Callable[..., BulkSender],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: set[int] = set()
    for name in ("open", "insert", "delete", "maintain", "release_all", "close"):
        original = getattr(SpoolStore, name)

        def spy(self: SpoolStore, *args: Any, _original: Any = original) -> Any:
            threads.add(threading.get_ident())
            return _original(self, *args)

        monkeypatch.setattr(SpoolStore, name, spy)
    sender = senders(spool, server.url)
    for i in range(2500):
        sender.enqueue(Item.event("Spooled", str(i)))
    assert sender.flush(timeout=10)
    sender.close()
    assert threads and threading.get_ident() not in threads
    assert sender.stats.sent == 2500
    assert spooled_items(spool) == 0


def test_spool_dir_from_the_environment(
    spool: Path,
    server: TrackingServer,
    senders: Callable[..., BulkSender],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SPOOL_DIR, str(spool))
    sender = senders(None, server.url)
    assert sender.spool_dir == str(spool)
    sender.enqueue(Item.event("Spooled", "1"))
    assert sender.flush(timeout=5)
    assert (spool / SPOOL_FILE).exists()
    monkeypatch.delenv(ENV_SPOOL_DIR)
    assert senders(None, server.url).spool_dir is None  # off by default


def _wait_stat(sender: BulkSender, read: Callable[[Any], int], timeout: float = 10.0) -> int:
    """A counter the sender's thread sets soon after start (bounded poll)."""
    value = 0

    def ready() -> bool:
        nonlocal value
        value = read(sender.stats)
        return value > 0

    wait_until(ready, timeout)
    return value
