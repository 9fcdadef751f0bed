"""A batch sent before it is stored (the spool idle): stored only when that fails.

With a spool, every item is in the journal before its log call returns, so a batch
that leaves the memory queue while nothing else waits is sent at once; it is written
to the store only when a request for it fails, when a later batch must be stored
(first, so that a recovery never sends a stored batch twice), or at the close.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from support import KEY, Inserts

from bucket_logging import BulkSender, Item
from bucket_logging._spool.store import SPOOL_FILE, SpoolStore


def rows(spool: Path) -> list[tuple[Any, ...]]:
    """(attempted, items) of every stored batch, oldest first, as another process sees them."""
    path = spool / SPOOL_FILE
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
        return conn.execute("SELECT attempted, items FROM batches ORDER BY id").fetchall()


class Endpoint:
    """A bulk endpoint: ``answer(n)`` gives request n's status (200 when None); a
    request n in :attr:`hold` waits until :attr:`release` is set."""

    def __init__(self, answer: Callable[[int], int | None] = lambda n: None) -> None:
        self.answer = answer
        self.hold: set[int] = set()
        self.release = threading.Event()
        self.releases: dict[int, threading.Event] = {}  # request n waits for its own
        # (the sender's loop has one executor thread: held requests wait on these)
        self.waiting = concurrent.futures.ThreadPoolExecutor(4)
        self.cond = threading.Condition()
        self.requests = 0
        self.delivered: list[str] = []
        self.seen: dict[int, Any] = {}  # request n -> what `look` returned when it came
        self.look: Callable[[], Any] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        with self.cond:
            n = self.requests
            self.requests += 1
            self.cond.notify_all()
        if self.look is not None:
            self.seen[n] = self.look()
        if n in self.hold or n in self.releases:
            event = self.releases.get(n, self.release)
            await asyncio.get_running_loop().run_in_executor(self.waiting, event.wait, 30)
        status = self.answer(n) or 200
        if status == 200:
            with self.cond:
                self.delivered.extend(str(e["userId"]) for e in orjson.loads(request.content))
                self.cond.notify_all()
        return httpx.Response(status, json={"success": status == 200})

    def wait_requests(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.requests >= n, 10)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def senders(spool: Path) -> Iterator[Callable[..., BulkSender]]:
    made: list[tuple[BulkSender, Endpoint]] = []

    def make(endpoint: Endpoint, **options: Any) -> BulkSender:
        options = {"flush_interval": 60, "backoff_base": 0.01, "backoff_max": 0.05, **options}
        sender = BulkSender(
            KEY,
            transport=httpx.MockTransport(endpoint.handle),
            spool_dir=spool,
            **options,
        )
        made.append((sender, endpoint))
        return sender

    yield make
    for sender, endpoint in made:
        endpoint.release.set()
        sender.close(5)


def enqueue(sender: BulkSender, start: int, n: int) -> None:
    assert all(
        sender.enqueue(Item.event("Sent", str(i), {"n": i})) for i in range(start, start + n)
    )


def ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def test_a_batch_delivered_at_its_first_request_is_never_written_to_the_store(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = Inserts(monkeypatch)
    endpoint = Endpoint()
    sender = senders(endpoint, max_batch_items=10)
    enqueue(sender, 0, 30)
    assert sender.flush(10)
    assert sorted(endpoint.delivered) == sorted(ids(30))
    assert inserts.done == 0 and rows(spool) == []
    sender.close(5)
    assert list(spool.glob("journal-*")) == []  # every record settled: the journal is gone
    assert sender.stats.sent == 30 and sender.stats.spooled == 0


def test_a_batch_whose_first_request_fails_is_stored_before_its_retry(
    senders: Callable[..., BulkSender], spool: Path
) -> None:
    endpoint = Endpoint(lambda n: 503 if n == 0 else None)
    endpoint.look = lambda: rows(spool)
    sender = senders(endpoint, max_batch_items=10)
    enqueue(sender, 0, 10)
    assert sender.flush(10)
    assert endpoint.seen[0] == []  # the first request: not stored
    assert endpoint.seen[1] == [(1, 10)]  # the retry: stored, marked as being sent
    assert sorted(endpoint.delivered) == sorted(ids(10))  # once
    assert rows(spool) == []  # deleted once delivered
    assert (sender.stats.sent, sender.stats.redelivered) == (10, 0)


def test_a_batch_to_be_stored_behind_one_on_the_wire_stores_that_one_first(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = Inserts(monkeypatch)
    endpoint = Endpoint()
    endpoint.hold = {0}
    # one request slot, and a queue small enough that a second batch is stored
    sender = senders(endpoint, max_batch_items=10, max_concurrent_requests=1, max_queue_bytes=2000)
    enqueue(sender, 0, 10)
    assert endpoint.wait_requests(1)  # on the wire, not stored
    enqueue(sender, 10, 10)
    assert inserts.wait(2)
    # the one on the wire first (it may have arrived), then the one that waits
    assert rows(spool) == [(1, 10), (0, 10)]
    endpoint.release.set()
    assert sender.flush(10)
    assert sorted(endpoint.delivered) == sorted(ids(20))
    assert rows(spool) == []


def test_batches_wait_in_the_queue_while_first_requests_use_every_slot(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = Inserts(monkeypatch)
    endpoint = Endpoint()
    endpoint.hold = {0}
    sender = senders(endpoint, max_batch_items=10, max_concurrent_requests=1)
    enqueue(sender, 0, 30)
    assert endpoint.wait_requests(1)
    assert sender.flush(0.2) is False  # the first is held; the others wait behind it
    assert inserts.done == 0  # in the queue (and the journal), not the store
    endpoint.release.set()
    assert sender.flush(10)
    assert sorted(endpoint.delivered) == sorted(ids(30))
    assert inserts.done == 0


def test_a_first_request_cut_short_by_the_exit_leaves_the_batch_in_the_store(
    senders: Callable[..., BulkSender], spool: Path
) -> None:
    endpoint = Endpoint()
    endpoint.hold = {0}
    sender = senders(endpoint, max_batch_items=10)
    enqueue(sender, 0, 10)
    assert endpoint.wait_requests(1)
    sender.close(0.2)  # the request never got its answer
    assert rows(spool) == [(1, 10)]  # it may have arrived: counted if sent again
    assert sender.stats.spooled == 10
    assert list(spool.glob("journal-*")) == []  # settled by the store


def test_a_batch_answered_while_it_is_being_stored_is_deleted_not_left(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = Endpoint()
    endpoint.hold = {0}
    real = SpoolStore.insert
    stores = [0]

    def answered_meanwhile(store: SpoolStore, *args: Any, **kwargs: Any) -> Any:
        stores[0] += 1
        if stores[0] == 1:  # the batch on the wire is being stored: its answer comes
            endpoint.release.set()
            with endpoint.cond:
                assert endpoint.cond.wait_for(lambda: len(endpoint.delivered) == 10, 10)
        return real(store, *args, **kwargs)

    monkeypatch.setattr(SpoolStore, "insert", answered_meanwhile)
    sender = senders(endpoint, max_batch_items=10, max_concurrent_requests=1, max_queue_bytes=2000)
    enqueue(sender, 0, 10)
    assert endpoint.wait_requests(1)
    enqueue(sender, 10, 10)  # to be stored: the one on the wire is stored first
    assert sender.flush(10)
    assert rows(spool) == []  # delivered, so deleted: never left for a next sender
    sender.close(5)
    assert rows(spool) == []
    assert sorted(endpoint.delivered) == sorted(ids(20))


def test_a_batch_delivered_while_an_earlier_one_is_stored_is_not_stored_after(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A (request 0) hangs; C's first request (2) fails, so C stores A first; while A's
    # insert runs, B (1) is answered: B waits for A to settle, then settles as
    # delivered. C's store must not store B (it would stay in the store, delivered).
    endpoint = Endpoint(lambda n: 503 if n == 2 else None)
    a_answer, b_answer = threading.Event(), threading.Event()
    endpoint.releases = {0: a_answer, 1: b_answer}
    real = SpoolStore.insert
    inserted: list[list[str]] = []

    def b_answered_meanwhile(store: SpoolStore, batch: list[bytes], *args: Any, **kw: Any) -> Any:
        inserted.append([str(orjson.loads(e)["userId"]) for e in batch[:1]])
        if len(inserted) == 1:  # A's insert: B is answered (and settled) meanwhile
            b_answer.set()
            with endpoint.cond:
                assert endpoint.cond.wait_for(lambda: len(endpoint.delivered) == 10, 10)
        return real(store, batch, *args, **kw)

    monkeypatch.setattr(SpoolStore, "insert", b_answered_meanwhile)
    sender = senders(endpoint, max_batch_items=10, max_concurrent_requests=3)
    enqueue(sender, 0, 30)
    assert endpoint.wait_requests(4)  # A and B held, C refused then retried
    a_answer.set()
    assert sender.flush(10)
    assert inserted == [["0"], ["20"]]  # A (for C), then C; never B
    assert rows(spool) == []
    sender.close(5)
    assert rows(spool) == [] and sorted(endpoint.delivered) == sorted(ids(30))


class RuntimeEndpoint(Endpoint):
    """Reflag's Runtime API: feedback to /feedback, one at a time, the rest to /bulk."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        with self.cond:
            n = self.requests
            self.requests += 1
            self.cond.notify_all()
        if n in self.hold:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        body = orjson.loads(request.content)
        with self.cond:
            self.delivered.extend(
                str(e.get("userId")) for e in (body if isinstance(body, list) else [body])
            )
            self.cond.notify_all()
        return httpx.Response(200, json={"success": True})


def test_a_batch_cut_short_between_its_parts_stays_in_the_store(
    senders: Callable[..., BulkSender], spool: Path
) -> None:
    endpoint = RuntimeEndpoint()
    endpoint.hold = {1}  # the feedback part is accepted; the events' part never answered
    sender = senders(endpoint, max_batch_items=10, api="runtime", base_url="http://x.test")
    assert sender.enqueue(Item.feedback("fb", feature_id="f1", score=5))
    enqueue(sender, 0, 9)
    assert endpoint.wait_requests(2)
    sender.close(0.2)
    assert rows(spool) == [(1, 10)]  # all of it, possibly delivered: counted if sent again
    assert sender.stats.dropped == {}
    later = RuntimeEndpoint()
    again = senders(later, api="runtime", base_url="http://x.test")
    with later.cond:  # (the backlog is delivered on the sender's own time)
        assert later.cond.wait_for(lambda: len(later.delivered) == 10, 10)
    assert again.flush(10)
    assert set(ids(9)) <= set(later.delivered)  # the events arrive
    assert again.stats.redelivered == 10


KILLED = r"""
import asyncio, json, os, signal, sys, threading
import httpx, orjson
from bucket_logging import BulkSender, Item

cfg = json.loads(sys.argv[1])
cond = threading.Condition()
delivered = []
failed = set()

async def handle(request):
    ids = [e["userId"] for e in orjson.loads(request.content)]
    if "0" in ids:  # the first batch: on the wire, never answered
        await asyncio.sleep(3600)
    if cfg["fail_once"] and ids[0] not in failed:
        failed.add(ids[0])
        return httpx.Response(503, json={})
    with open(cfg["out"], "a") as out:
        out.write(" ".join(ids) + "\n")
    with cond:
        delivered.extend(ids)
        cond.notify_all()
    return httpx.Response(200, json={"success": True})

sender = BulkSender(
    cfg["key"], transport=httpx.MockTransport(handle), spool_dir=cfg["spool"],
    flush_interval=60, backoff_base=0.01, backoff_max=0.05, max_batch_items=10,
    max_concurrent_requests=2,
)
for i in range(cfg["count"]):
    sender.enqueue(Item.event("Sent", str(i), {"n": i}))
    if i == 9:
        sender.flush(0.05)  # the first batch goes out alone
with cond:
    assert cond.wait_for(lambda: len(delivered) == cfg["count"] - 10, 30), delivered
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(
    ("count", "fail_once"),
    [(20, True), (110, False)],
    ids=["a-later-batch-stored-after-a-failure", "later-batches-delivered"],
)
def test_killed_behind_a_batch_on_the_wire_only_that_batch_can_come_again(
    tmp_path: Path, spool: Path, count: int, fail_once: bool
) -> None:
    # The first batch hangs on the wire; later ones are delivered through the other
    # request slot (one of them stored after a failed first request). Then SIGKILL.
    # The next sender must send the hanging batch again (counted), and nothing else:
    # the later batches settled only once the hanging one was stored.
    script, out = tmp_path / "child.py", tmp_path / "delivered.txt"
    script.write_text(KILLED)
    cfg = {"key": KEY, "spool": str(spool), "out": str(out), "count": count, "fail_once": fail_once}
    child = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    before = out.read_text().split()
    later = Endpoint()
    sender = BulkSender(KEY, transport=httpx.MockTransport(later.handle), spool_dir=spool)
    try:
        with later.cond:
            assert later.cond.wait_for(lambda: len(later.delivered) >= 10, 15)
        assert sender.flush(10)
    finally:
        sender.close(5)
    got = before + later.delivered
    assert set(got) == set(ids(count))  # nothing lost
    duplicates = len(got) - count
    # At most the batch answered as the kill came (its row not deleted yet) comes
    # again besides the one that hung: before, every batch delivered behind the hung
    # one came again (their journal records were not settled)
    assert set(ids(10)) <= set(later.delivered) and duplicates <= 10
    assert duplicates <= sender.stats.redelivered <= 20  # counted


def test_a_store_failing_behind_a_first_attempt_sends_everything_from_memory(
    senders: Callable[..., BulkSender], spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = Endpoint()
    a_answer = threading.Event()
    endpoint.releases = {0: a_answer}
    sender = senders(endpoint, max_batch_items=10, max_concurrent_requests=1, max_queue_bytes=2000)
    enqueue(sender, 0, 10)
    assert endpoint.wait_requests(1)  # A: sent first, held (the spool is open by now)
    with contextlib.closing(sqlite3.connect(spool / SPOOL_FILE, timeout=5)) as conn:
        conn.execute(
            "CREATE TRIGGER injected BEFORE INSERT ON batches"
            " BEGIN SELECT RAISE(ABORT, 'injected disk error'); END"
        )
        conn.commit()
    enqueue(sender, 10, 10)  # B must be stored: A first, whose insert fails the spool
    a_answer.set()
    assert sender.flush(10)
    assert sorted(endpoint.delivered) == sorted(ids(20))  # each once, from memory
    assert sender.stats.dropped == {} and sender.stats.sent == 20
    assert "cannot be used (IntegrityError: injected disk error)" in caplog.text
