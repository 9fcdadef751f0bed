"""The on-disk spool (bucket_logging._sender.spooling) in this process.

The first half drives :class:`SpoolStore` (the SQLite side) directly: ownership,
leases and dead owners, the size and age limits, failures in the middle of a
transaction (injected with SQLite triggers: a failing write must never leave the
write lock held or half a change behind), schema problems and the fork hooks
(called directly, on module state that holds only this test's objects).

The second half runs a :class:`BulkSender` with ``spool_dir`` against a mock
endpoint whose requests can be held at a gate, so that batches are known to be
waiting in the spool when the test changes the file under them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from support import KEY, Inserts

from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._runtime import state as _process
from bucket_logging._runtime import worker as _spool_worker
from bucket_logging._sender import spooling as _spool
from bucket_logging._spool.rows import destination
from bucket_logging._spool.store import SPOOL_FILE, SpoolStore
from bucket_logging._spool.upkeep import pid_alive

DEST = destination(KEY)
BIG = 256 * 1024 * 1024
WEEK = 7 * 86400.0


def items(n: int, start: int = 0, pad: str = "") -> list[bytes]:
    """Encoded entries, as the sender queues and spools them."""
    return [
        Item.event("Spooled", str(i), {"pad": pad} if pad else None).body
        for i in range(start, start + n)
    ]


def put(store: SpoolStore, batch: list[bytes], protect: frozenset[int] = frozenset()) -> int | None:
    row, _ = store.insert(batch, False, protect)
    return row


@contextlib.contextmanager
def other_connection(directory: Path) -> Iterator[sqlite3.Connection]:
    """Another process's view of the spool file."""
    conn = sqlite3.connect(directory / SPOOL_FILE, timeout=5, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(directory: Path) -> list[tuple[Any, ...]]:
    """(id, owner, lease > 0, attempted, items) of every batch, oldest first."""
    with other_connection(directory) as conn:
        return conn.execute(
            "SELECT id, owner, lease > 0, attempted, items FROM batches ORDER BY id"
        ).fetchall()


def write_lock_is_free(directory: Path) -> bool:
    with other_connection(directory) as conn:
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.execute("ROLLBACK")
        return True


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[..., SpoolStore]]:
    """Open stores on ``tmp_path / "spool"``; closed afterwards."""
    made: list[SpoolStore] = []

    def make(dest: str = DEST, max_bytes: int = BIG, max_age: float = WEEK) -> SpoolStore:
        store = SpoolStore(str(tmp_path / "spool"), dest, max_bytes, max_age)
        store.open()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


# ------------------------------------------------------------------------------- owners and leases


def owner_of(
    store: SpoolStore, pid: int | str, token: str = "t0ken", host: str | None = None
) -> str:
    host = store.owner.split("/")[0] if host is None else host
    return f"{host}/{store.owner.split('/')[1]}/{pid}/{token}"


def test_dead_and_live_owners_after_maintenance(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    sibling = stores()  # another live sender of this process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: its pid is free
    owners = {
        "dead pid": owner_of(store, child.pid),
        "earlier process with our pid": owner_of(store, os.getpid(), "gone-token"),
        "live sibling": sibling.owner,
        "live parent process": owner_of(store, os.getppid()),
        "another machine": owner_of(store, child.pid, host="elsewhere"),
        "not a pid": owner_of(store, "nan"),
        "malformed": "no-slashes-here",
    }
    for owner in owners.values():
        row = put(store, items(1))
        with other_connection(spool) as conn:
            conn.execute("UPDATE batches SET owner = ? WHERE id = ?", (owner, row))
    store.maintain(frozenset())
    leased = {owner: bool(has_lease) for _, owner, has_lease, _, _ in rows(spool)}
    freed = {name for name, owner in owners.items() if not leased[owner]}
    assert freed == {"dead pid", "earlier process with our pid"}


def test_without_a_pid_namespace_only_leases_free_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_proc(path: str) -> str:
        raise FileNotFoundError(path)

    monkeypatch.setattr(os, "readlink", no_proc)  # no /proc (macOS, BSD)
    store = SpoolStore(str(tmp_path), DEST, BIG, WEEK)
    store.open()
    try:
        assert store.owner.split("/")[1] == ""
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        row = put(store, items(1))
        store.conn.execute(
            "UPDATE batches SET owner = ? WHERE id = ?",
            (f"{store.owner.split('/')[0]}//{child.pid}/tok", row),
        )
        store.maintain(frozenset())
        assert store.backlog() == (0, 0)  # a pid alone could be another container's
    finally:
        store.close()


def test_pid_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)

    def not_yours(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_yours)
    assert pid_alive(child.pid)  # it exists, as another user's process


# ------------------------------------------------------------------------- reading back, releasing


def test_load_marks_attempted_and_needs_ownership(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    batch = items(3)
    row = put(store, batch)
    assert row is not None
    assert store.load(row) == batch
    assert rows(spool)[0][3] == 1  # attempted: a request may carry it now
    with other_connection(spool) as conn:
        conn.execute("UPDATE batches SET owner = 'someone/else/1/x' WHERE id = ?", (row,))
    assert store.load(row) is None  # no longer ours: taken over
    assert store.read(row) == batch  # still readable (the memory fallback's last try)
    assert store.read(row + 100) is None


def test_release_with_the_rest_of_a_batch(stores: Callable[..., SpoolStore], spool: Path) -> None:
    store = stores()
    batch = items(5)
    row = put(store, batch)
    assert row is not None
    store.release(row, True, batch[3:])  # 3 delivered, 2 given up on
    assert rows(spool) == [(row, None, 0, 1, 2)]
    later = stores()
    claimed = later.claim()
    assert claimed == (row, batch[3:], True)  # attempted before: may be a duplicate


def test_release_of_a_batch_no_longer_ours_changes_nothing(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    batch = items(4)
    row = put(store, batch)
    assert row is not None
    with other_connection(spool) as conn:
        conn.execute("UPDATE batches SET owner = 'someone/else/1/x' WHERE id = ?", (row,))
    store.release(row, False, batch[:1])
    assert rows(spool) == [(row, "someone/else/1/x", 1, 0, 4)]
    assert store.read(row) == batch


def test_mark_all_attempted_and_release_rows(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    a, b = put(store, items(1)), put(store, items(2))
    store.mark_all_attempted()
    assert [r[3] for r in rows(spool)] == [1, 1]
    store.release_rows([(a, False), (b, True)])  # type: ignore[list-item]
    assert [(r[1], r[3]) for r in rows(spool)] == [(None, 0), (None, 1)]
    store.close()
    store.mark_all_attempted()  # best effort: never raises, even when closed


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SpoolStore(str(tmp_path), DEST, BIG, WEEK)
    with pytest.raises(sqlite3.OperationalError, match="the spool is not open"):
        store.backlog()
    store.open()
    store.close()
    store.close()  # idempotent
    with pytest.raises(sqlite3.OperationalError, match="the spool is not open"):
        put(store, items(1))


# -------------------------------------------------------------------------------- damaged contents


def test_a_batch_without_its_payload_is_quarantined_and_the_next_claimed(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    first = stores()
    row = put(first, items(2))
    kept = items(3, start=10)
    good = put(first, kept)
    with other_connection(spool) as conn:
        conn.execute("DELETE FROM payloads WHERE id = ?", (row,))
        conn.execute("UPDATE batches SET owner = NULL, lease = 0")
    assert stores().claim() == (good, kept, False)
    with other_connection(spool) as conn:
        dest = conn.execute("SELECT dest FROM batches WHERE id = ?", (row,)).fetchone()[0]
    assert dest == "quarantined:" + DEST  # kept for a look, never claimed again


def test_an_inconsistent_payload_is_an_error(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    row = put(store, items(2))
    assert row is not None
    with other_connection(spool) as conn:
        conn.execute("UPDATE payloads SET sizes = '[1, 2, 3]' WHERE id = ?", (row,))
    with pytest.raises(sqlite3.DatabaseError, match="inconsistent"):
        store.read(row)


# ------------------------------------------------------------------------ failures mid-transaction


def fail_on(spool: Path, event: str, how: str = "ABORT") -> None:
    """Make every ``event`` on batches fail: ABORT undoes the statement, ROLLBACK the
    whole transaction (as SQLite does itself on a full disk or an I/O error)."""
    failing = f"SELECT RAISE({how}, 'injected disk error')"
    with other_connection(spool) as conn:
        conn.execute(f"CREATE TRIGGER injected BEFORE {event} ON batches BEGIN {failing}; END")


OPERATIONS: dict[str, tuple[str, Callable[[SpoolStore, int], object]]] = {
    "insert": ("INSERT", lambda store, row: put(store, items(1))),
    "release with rest": ("UPDATE", lambda store, row: store.release(row, False, items(1))),
    "release rows": ("UPDATE", lambda store, row: store.release_rows([(row, False)])),
    "maintain": ("UPDATE", lambda store, row: store.maintain(frozenset())),
}


@pytest.mark.parametrize("how", ["ABORT", "ROLLBACK"])
@pytest.mark.parametrize("name", OPERATIONS)
def test_a_failed_write_leaves_no_lock_and_no_change(
    stores: Callable[..., SpoolStore], spool: Path, name: str, how: str
) -> None:
    event, operation = OPERATIONS[name]
    store = stores()
    batch = items(3)
    row = put(store, batch)
    assert row is not None
    before = rows(spool)
    fail_on(spool, event, how)
    with pytest.raises(sqlite3.IntegrityError, match="injected disk error"):
        operation(store, row)
    assert not store.conn.in_transaction
    assert write_lock_is_free(spool)  # other processes are not blocked
    assert rows(spool) == before
    assert store.read(row) == batch


def test_a_failed_claim_leaves_the_batch_free(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    batch = items(2)
    put(store, batch)
    store.release_all()
    fail_on(spool, "UPDATE")
    other = stores()
    with pytest.raises(sqlite3.IntegrityError):
        other.claim()
    assert write_lock_is_free(spool)
    with other_connection(spool) as conn:
        conn.execute("DROP TRIGGER injected")
    claimed = other.claim()
    assert claimed is not None and claimed[1] == batch


# ------------------------------------------------------------------------------------------ limits


def test_a_batch_larger_than_the_limit_is_not_written(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores(max_bytes=100_000)
    kept = put(store, items(1))
    huge = items(1, pad="x" * 150_000)
    assert store.insert([huge[0]], False, frozenset()) == (None, [])
    assert [r[0] for r in rows(spool)] == [kept]  # nothing was evicted for it in vain


def test_room_is_never_made_from_another_live_senders_batches(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    first = stores()  # another live sender, which filled the spool
    for _ in range(12):
        assert put(first, items(1, pad="a" * 10_000)) is not None
    mine = stores(max_bytes=first.used_bytes() + 15_000)
    own = put(mine, items(1, pad="b" * 10_000))
    assert own is not None
    # full now: only `mine`'s own batch may go for room, and it is in flight (protected)
    more = items(1, pad="c" * 8_000)
    assert put(mine, more, protect=frozenset({own})) is None
    assert len(rows(spool)) == 13
    row, evicted = mine.insert([more[0]], False, frozenset())
    assert row is not None
    assert evicted == [(own, True, 1)]  # its own, never the other sender's
    assert len(rows(spool)) == 13


def test_age_limit_spares_protected_and_other_live_senders_batches(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    other = stores()
    store = stores(max_age=3600)
    theirs = put(other, items(1))
    in_flight = put(store, items(2))
    free = put(store, items(3))
    old = put(store, items(4))
    store.release_rows([(free, False)])  # type: ignore[list-item]
    with other_connection(spool) as conn:
        conn.execute("UPDATE batches SET created = created - 7200")
    expired, full = store.maintain(frozenset({in_flight}))  # type: ignore[arg-type]
    assert (sorted(expired), full) == ([(free, False, 3), (old, True, 4)], [])
    assert [r[0] for r in rows(spool)] == [theirs, in_flight]


def test_the_file_shrinks_after_a_backlog_is_gone(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    store = stores()
    for _ in range(8):
        put(store, items(1, pad="z" * 800_000))
    with other_connection(spool) as conn:  # delivered meanwhile, e.g. by another sender
        conn.execute("DELETE FROM batches")
    pages_before = store.conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages_before * 4096 > 6_000_000
    assert store.used_bytes() < 1_000_000  # the space is free, but still in the file
    store.maintain(frozenset())
    pages_after = store.conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages_after * 4 < pages_before  # given back to the disk


# ----------------------------------------------------------------------------------------- opening


def test_a_spool_of_a_newer_version_is_refused(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    stores().close()
    with other_connection(spool) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE name = 'schema'")
    with pytest.raises(
        sqlite3.DatabaseError, match="spool schema version '2', this version reads 1"
    ):
        stores()


def test_a_foreign_database_is_refused_and_left_alone(spool: Path) -> None:
    spool.mkdir()
    with other_connection(spool) as conn:
        conn.execute("CREATE TABLE batches (something TEXT)")
        conn.execute("INSERT INTO batches VALUES ('theirs')")
    store = SpoolStore(str(spool), DEST, BIG, WEEK)
    with pytest.raises(sqlite3.OperationalError):
        store.open()  # its CREATE INDEX fails: the whole schema step is rolled back
    with other_connection(spool) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert tables == {"batches"}
        assert conn.execute("SELECT * FROM batches").fetchall() == [("theirs",)]
    with pytest.raises(sqlite3.OperationalError):
        _ = store.conn  # not left half open


def test_without_wal_the_spool_still_works(
    spool: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoWal(sqlite3.Connection):
        """A file system where WAL is not available (SQLite keeps its rollback journal)."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "PRAGMA journal_mode = WAL":
                sql = "PRAGMA journal_mode = DELETE"
            return super().execute(sql, *args)

    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, factory=NoWal, **k))
    caplog.set_level(logging.INFO, logger="bucket_logging")
    store = SpoolStore(str(spool), DEST, BIG, WEEK)
    store.open()
    try:
        batch = items(2)
        row = put(store, batch)
        store.release_all()
        assert store.claim() == (row, batch, False)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        store.close()
    assert any(
        "cannot use WAL mode (journal_mode=delete); it still works" in r.getMessage()
        for r in caplog.records
    )


# -------------------------------------------------------------------------------------- fork hooks


@pytest.fixture
def fork_state(monkeypatch: pytest.MonkeyPatch) -> _process.State:
    """The process state, holding only what this test creates."""
    state = _process.State()
    monkeypatch.setattr(_process, "state", state)
    return state


def run_on(worker: _spool_worker.Worker, fn: Callable[[], Any]) -> Any:
    done = threading.Event()
    out: list[Any] = []

    def job() -> None:
        out.append(fn())
        done.set()

    worker.submit(job)
    assert done.wait(10)
    return out[0]


def test_fork_while_idle_parent_side(fork_state: _process.State, spool: Path) -> None:
    worker = _spool_worker.Worker("bucket_logging-spool", wait_at_fork=True)
    store = SpoolStore(str(spool), DEST, BIG, WEEK)
    try:
        run_on(worker, store.open)
        _spool_worker.before_fork()  # the worker is between operations: taken at once
        assert fork_state.spool_held_for_fork == [worker.busy]
        assert not worker.busy.acquire(blocking=False)  # no operation may start now
        _spool_worker.after_fork_in_parent()
        assert fork_state.spool_held_for_fork == []
        assert run_on(worker, store.backlog) == (0, 0)  # the parent carries on
    finally:
        run_on(worker, store.close)
        worker.stop()


def test_fork_while_idle_child_side(fork_state: _process.State, spool: Path) -> None:
    worker = _spool_worker.Worker("bucket_logging-spool", wait_at_fork=True)
    store = SpoolStore(str(spool), DEST, BIG, WEEK)
    run_on(worker, store.open)
    run_on(worker, lambda: put(store, items(2)))
    parent_conn = store.conn
    never_opened = SpoolStore(str(spool), DEST, BIG, WEEK)
    _spool_worker.before_fork()
    worker.stop()  # in a real child the worker thread does not exist
    _spool_worker.after_fork_in_child()
    try:
        assert fork_state.forked_while_busy is False
        assert fork_state.inherited_connections == [parent_conn]  # parked, neither used nor closed
        with pytest.raises(sqlite3.OperationalError, match="not open"):
            never_opened.conn  # noqa: B018 - never opened: nothing inherited
        assert fork_state.spool_tokens == set()
        assert len(fork_state.spool_executors) == 0
        with pytest.raises(sqlite3.OperationalError):
            store.backlog()
        # the parent's connection is intact (closing it in the child could have
        # checkpointed or removed the parent's WAL)
        assert parent_conn is not None
        assert parent_conn.execute("SELECT count(*) FROM batches").fetchone() == (1,)
        # the child's sender builds a store of its own, on a connection of its own
        mine = SpoolStore(str(spool), DEST, BIG, WEEK)
        mine.open()
        assert mine.conn is not parent_conn
        assert fork_state.spool_tokens == {mine.owner.split("/")[3]}
        mine.close()
    finally:
        worker.busy.release()
        if parent_conn is not None:
            parent_conn.close()


def test_fork_while_busy_leaves_the_child_without_a_spool(
    fork_state: _process.State,
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_spool_worker, "FORK_WAIT_SECONDS", 0.05)
    worker = _spool_worker.Worker("bucket_logging-spool", wait_at_fork=True)
    started, release = threading.Event(), threading.Event()

    def long_operation() -> None:  # e.g. a write waiting for another process's lock
        started.set()
        release.wait(10)

    worker.submit(long_operation)
    assert started.wait(10)
    try:
        _spool_worker.before_fork()
        assert fork_state.spool_busy_at_fork is True
        assert fork_state.spool_held_for_fork == []
        _spool_worker.after_fork_in_child()
        assert fork_state.forked_while_busy is True
    finally:
        release.set()
        worker.stop()
    # a sender of the child does without the spool, and loses nothing
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    endpoint = Gate()
    sender = BulkSender(KEY, transport=endpoint.transport(), spool_dir=spool)
    try:
        for item in items(5):
            assert sender.enqueue(Item("event", item))
        assert sender.flush(10)
    finally:
        sender.close(2)
    assert sender.stats.sent == 5
    assert not (spool / SPOOL_FILE).exists()
    assert any(
        "forked while a spool operation was running" in r.getMessage() for r in caplog.records
    )


# =========================================================================== with a sender


class Gate:
    """A bulk endpoint whose requests can be held until the test opens the gate.

    ``answer(n)`` (n counts requests from 0) may return a status or raise a transport
    error; 200 otherwise. Items of 2xx answers are collected in :attr:`delivered`.
    """

    def __init__(self, answer: Callable[[int], int | None] | None = None, *, shut: bool = False):
        self.answer = answer
        self.opened = threading.Event()
        if not shut:
            self.opened.set()
        self.cond = threading.Condition()
        self.requests = 0
        self.delivered: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        with self.cond:
            n = self.requests
            self.requests += 1
            self.cond.notify_all()
        if not self.opened.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.opened.wait, 30)
        status = self.answer(n) if self.answer is not None else None
        status = 200 if status is None else status
        if 200 <= status < 300:
            with self.cond:
                self.delivered.extend(str(e["userId"]) for e in orjson.loads(request.content))
                self.cond.notify_all()
        return httpx.Response(status, json={"success": 200 <= status < 300})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def wait_requests(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.requests >= n, 10)


@pytest.fixture
def senders(spool: Path) -> Iterator[Callable[..., BulkSender]]:
    made: list[tuple[BulkSender, Gate | None]] = []

    def make(gate: Gate | None = None, **options: Any) -> BulkSender:
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_max", 0.05)
        if gate is not None:
            options["transport"] = gate.transport()
        sender = BulkSender(KEY, spool_dir=spool, **options)
        made.append((sender, gate))
        return sender

    yield make
    for sender, gate in made:
        if gate is not None:
            gate.opened.set()
        sender.close(timeout=2.0)


@pytest.fixture
def reports(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    caplog.set_level(logging.INFO, logger="bucket_logging")
    return lambda: "\n".join(r.getMessage() for r in caplog.records if r.name == "bucket_logging")


def enqueue(sender: BulkSender, batch: list[bytes]) -> None:
    results = [sender.enqueue(Item("event", body)) for body in batch]
    assert all(results)


def ids(n: int, start: int = 0) -> list[str]:
    return [str(i) for i in range(start, start + n)]


def opened(sender: BulkSender) -> None:
    """Wait until the sender's spool is open (a first item delivered)."""
    assert sender.enqueue(Item.event("Spooled", "first"))
    assert sender.flush(10)


# --------------------------------------------------------------------------------------- giving up


def test_retries_exhausted_with_a_spool_leaves_the_batch_for_later(
    senders: Callable[..., BulkSender], spool: Path, reports: Callable[[], str]
) -> None:
    down = Gate(lambda n: 503)
    sender = senders(down, retry_budget=0.05, flush_interval=60)  # no early re-claim
    enqueue(sender, items(7))
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.spooled, stats.sent, stats.dropped, stats.pending) == (7, 0, {}, 0)
    assert (
        "7 item(s) not delivered yet (retries_exhausted, HTTP 503: HTTP 503); left in" in reports()
    )
    assert [(r[1], r[4]) for r in rows(spool)] == [(None, 7)]
    sender.close()
    up = Gate()
    later = senders(up)
    with up.cond:
        assert up.cond.wait_for(lambda: len(up.delivered) == 7, 10)
    assert sorted(up.delivered) == sorted(ids(7))
    assert later.flush(10)
    assert later.stats.replayed == 7
    assert rows(spool) == []


@pytest.mark.parametrize(
    ("error", "redelivered"),
    [
        pytest.param(httpx.ReadError("connection lost"), 3, id="may-have-arrived"),
        pytest.param(httpx.ConnectError("refused"), 0, id="never-arrived"),
    ],
)
def test_a_request_without_an_answer_makes_the_replay_a_possible_duplicate(
    senders: Callable[..., BulkSender], spool: Path, error: Exception, redelivered: int
) -> None:
    def answer(n: int) -> int:
        if n == 0:
            raise error
        return 503  # then failures that surely did not deliver it

    sender = senders(Gate(answer), retry_budget=0.1, flush_interval=60)
    enqueue(sender, items(3))
    assert sender.flush(10)
    assert sender.stats.spooled == 3
    sender.close()
    assert [r[3] for r in rows(spool)] == [1 if redelivered else 0]
    up = Gate()
    later = senders(up)
    with up.cond:
        assert up.cond.wait_for(lambda: len(up.delivered) == 3, 10)
    assert later.flush(10)
    assert (later.stats.replayed, later.stats.redelivered) == (3, redelivered)


def test_the_exit_deadline_leaves_waiting_batches_in_the_spool(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    sender, gate = waiting_batches(senders, monkeypatch, 3)
    # the exit deadline passes (as the exit hook sets it) while two batches wait
    sender.start_closing(time.monotonic())
    gate.opened.set()
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.spooled, stats.dropped, stats.pending) == (10, 20, {}, 0)
    assert [(r[1], r[4]) for r in rows(spool)] == [(None, 10), (None, 10)]  # free for later
    sender.close(1)
    assert "20 item(s) not delivered before the shutdown deadline left in the spool" in reports()


def test_a_request_cut_by_the_exit_counts_as_possibly_delivered(
    senders: Callable[..., BulkSender], spool: Path
) -> None:
    held = Gate(shut=True)
    sender = senders(held, flush_interval=60, max_batch_items=4)
    enqueue(sender, items(4))
    assert held.wait_requests(1)
    sender.close(0.2)  # the request never got its answer
    assert sender.thread is not None
    sender.thread.join(10)
    assert [(r[1], r[3], r[4]) for r in rows(spool)] == [(None, 1, 4)]
    held.opened.set()
    up = Gate()
    later = senders(up)
    with up.cond:
        assert up.cond.wait_for(lambda: len(up.delivered) == 4, 10)
    assert later.flush(10)
    assert (later.stats.replayed, later.stats.redelivered) == (4, 4)  # possible duplicates


def test_items_left_in_the_spool_by_a_slow_exit_are_not_counted_as_dropped(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    proceed = threading.Event()
    real = SpoolStore.release_all

    def slow_release_all(store: SpoolStore) -> None:
        proceed.wait(10)  # e.g. another process holds the write lock for a while
        real(store)

    monkeypatch.setattr(SpoolStore, "release_all", slow_release_all)
    errors: list[DeliveryError] = []
    held = Gate(shut=True)
    sender = senders(held, flush_interval=60, max_batch_items=4, on_error=errors.append)
    enqueue(sender, items(4))
    assert held.wait_requests(1)
    try:
        sender.close(0.2)
        # what the close leaves behind is said (issue 15, item 4)
        assert "still writing 4 item(s) to the spool" in reports()
    finally:
        proceed.set()
    assert sender.thread is not None
    sender.thread.join(10)
    assert sum(r[4] for r in rows(spool)) == 4  # in the spool, for the next sender
    assert errors == []
    assert sender.stats.dropped == {}
    assert sender.stats.spooled == 4
    held.opened.set()


# ----------------------------------------------------------------------- maintenance while running


def test_periodic_maintenance_applies_the_age_limit(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spool, "MAINTENANCE_SECONDS", 0.0)  # every pump
    errors: list[DeliveryError] = []
    # no timer pump while the batch below is made old: a pump that maintained before and
    # claims after would deliver it (flush_interval=60: the enqueue's pump is the next)
    sender = senders(Gate(), on_error=errors.append, spool_max_age=3600, flush_interval=60)
    opened(sender)
    # another process leaves an old batch behind, owned by a live sender
    other = SpoolStore(str(spool), DEST, BIG, WEEK)
    other.open()
    try:
        put(other, items(6))
        with other_connection(spool) as conn:
            conn.execute("UPDATE batches SET created = created - 7200, owner = NULL")
        enqueue(sender, items(1, start=100))
        assert sender.flush(10)
    finally:
        other.close()
    assert sender.stats.dropped == {"spool_expired": 6}
    assert [(e.reason, e.count) for e in errors] == [("spool_expired", 6)]
    assert rows(spool) == []


# ---------------------------------------------------------------- the spool failing under a sender


def test_a_failing_insert_hands_the_batch_to_memory(
    senders: Callable[..., BulkSender], spool: Path, reports: Callable[[], str]
) -> None:
    gate = Gate(lambda n: 503 if n == 1 else None)  # the batch is stored after a failure
    sender = senders(gate, max_batch_items=10)
    opened(sender)
    fail_on(spool, "INSERT")
    enqueue(sender, items(25))
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(["first", *ids(25)])
    assert sender.stats.sent == 26 and sender.stats.dropped == {}
    assert "cannot be used (IntegrityError: injected disk error); continuing in memory" in reports()
    assert repr(sender.engine.spool if sender.engine else None).endswith("failed waiting=0>")


def test_a_failing_delete_after_delivery(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    inserts = Inserts(monkeypatch)
    gate = Gate(shut=True)
    sender = senders(
        gate, max_batch_items=5, max_concurrent_requests=1, flush_interval=60, max_queue_bytes=2000
    )
    enqueue(sender, items(5, pad="p" * 40))
    assert gate.wait_requests(1)  # sent before it is stored
    enqueue(sender, items(5, start=5, pad="p" * 40))
    assert inserts.wait(2)  # the queue is not roomy: the first is stored, then this one
    fail_on(spool, "DELETE")
    gate.opened.set()
    assert sender.flush(10)
    enqueue(sender, items(5, start=10))  # from memory now
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(ids(15))
    assert sender.stats.sent == 15 and sender.stats.dropped == {}
    assert reports().count("cannot be used (IntegrityError: injected disk error)") == 1
    spool_worker = (
        sender.engine.spool.executor
        if sender.engine is not None and sender.engine.spool is not None
        else None
    )
    assert spool_worker is not None
    run_on(spool_worker, lambda: None)  # after the jobs queued before it
    # the delivered batches stay in the file, marked as possibly delivered
    assert [(r[3], r[4]) for r in rows(spool)] == [(1, 5), (1, 5)]


def test_a_failing_mark_before_a_request(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    inserts = Inserts(monkeypatch)
    gate = Gate(shut=True)
    # a queue that is not roomy: the batches are stored (not kept queued) while the
    # first one, sent before it was stored, is held at the gate (then stored too)
    sender = senders(
        gate, max_batch_items=10, max_concurrent_requests=1, flush_interval=60, max_queue_bytes=2000
    )
    for k in range(3):
        enqueue(sender, items(10, start=10 * k))
        assert gate.wait_requests(1) if k == 0 else inserts.wait(k + 1)
    fail_on(spool, "UPDATE")  # marking the next batch "attempted" fails
    gate.opened.set()
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(ids(30))
    assert sender.stats.sent == 30 and sender.stats.dropped == {}
    assert "cannot be used (IntegrityError: injected disk error)" in reports()


def waiting_batches(
    senders: Callable[..., BulkSender], monkeypatch: pytest.MonkeyPatch, n: int, **options: Any
) -> tuple[BulkSender, Gate]:
    """A sender with one batch of 10 held at the gate and ``n - 1`` more waiting in the
    spool, not held in memory (read back when their turn comes)."""
    inserts = Inserts(monkeypatch)
    gate = Gate(shut=True)
    sender = senders(
        gate,
        max_batch_items=10,
        max_concurrent_requests=1,
        flush_interval=60,
        max_queue_bytes=4000,  # keeps at most 1000 bytes of waiting batches in memory
        **options,
    )
    for k in range(n):
        enqueue(sender, items(10, start=10 * k, pad="p" * 40))
        if k == 0:  # sent before it is stored (the spool is idle), held at the gate
            assert gate.wait_requests(1)
        else:  # the queue is not roomy: the first batch is stored, then this one
            assert inserts.wait(k + 1)
    return sender, gate


def test_waiting_batches_are_read_back_from_the_file(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, gate = waiting_batches(senders, monkeypatch, 4)
    gate.opened.set()
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(ids(40))
    assert sender.stats.sent == 40 and sender.stats.replayed == 0
    assert rows(spool) == []


def test_a_waiting_batch_taken_over_by_another_sender(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, gate = waiting_batches(senders, monkeypatch, 3)
    with other_connection(spool) as conn:  # its lease expired: another sender claimed them
        first = conn.execute("SELECT min(id) FROM batches").fetchone()[0]
        conn.execute("UPDATE batches SET owner = 'host/ns/1/other' WHERE id > ?", (first,))
    gate.opened.set()
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(ids(10))
    stats = sender.stats
    assert (stats.sent, stats.spooled, stats.dropped, stats.pending) == (10, 20, {}, 0)
    assert [r[4] for r in rows(spool)] == [10, 10]  # theirs to deliver


def test_unreadable_waiting_batches_are_dropped_and_counted(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    errors: list[DeliveryError] = []
    sender, gate = waiting_batches(senders, monkeypatch, 3, on_error=errors.append)
    with other_connection(spool) as conn:
        conn.execute("UPDATE payloads SET sizes = '[1]'")  # damaged on disk
    gate.opened.set()
    assert sender.flush(10)
    stats = sender.stats
    assert stats.sent == 10  # the batch in flight was in memory
    assert stats.dropped == {"spool_error": 20}
    assert stats.pending == 0
    assert [(e.reason, e.count) for e in errors] == [("spool_error", 10), ("spool_error", 10)]
    assert "cannot be used (DatabaseError: a spooled batch is inconsistent)" in reports()


def test_a_failing_read_back_hands_waiting_batches_to_memory(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, gate = waiting_batches(senders, monkeypatch, 3)
    fail_on(spool, "UPDATE")  # load() marks the batch attempted: it fails; reading works
    gate.opened.set()
    assert sender.flush(10)
    assert sorted(gate.delivered) == sorted(ids(30))
    assert sender.stats.sent == 30 and sender.stats.dropped == {}


# ------------------------------------------------------------------------------------ a full spool


def test_no_room_in_the_spool_sends_from_memory_within_a_bound(
    senders: Callable[..., BulkSender],
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    inserts = Inserts(monkeypatch)
    gate = Gate(shut=True)
    errors: list[DeliveryError] = []
    sender = senders(
        gate,
        spool_max_bytes=1000,  # smaller than the empty database: nothing fits
        max_batch_items=10,
        max_concurrent_requests=1,
        flush_interval=60,
        max_queue_bytes=2000,  # not roomy: batches are stored rather than kept queued
        on_error=errors.append,
    )
    enqueue(sender, items(10))
    assert gate.wait_requests(1)  # in flight, from memory
    enqueue(sender, items(10, start=10))  # waits in memory (one batch at most)
    enqueue(sender, items(10, start=20))  # over the bound: dropped
    assert inserts.wait(3)
    gate.opened.set()
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.dropped, stats.pending) == (20, {"spool_full": 10}, 0)
    assert sorted(gate.delivered) == sorted(ids(20))
    assert [(e.reason, e.count) for e in errors] == [("spool_full", 10)]
    assert "the spool is full" in reports()


def test_a_batch_waiting_in_memory_at_the_exit_deadline_is_dropped(
    senders: Callable[..., BulkSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = Inserts(monkeypatch)
    gate = Gate(shut=True)
    sender = senders(
        gate,
        spool_max_bytes=1000,
        max_batch_items=10,
        max_concurrent_requests=1,
        flush_interval=60,
        max_queue_bytes=2000,  # not roomy: batches are stored rather than kept queued
    )
    enqueue(sender, items(10))
    assert gate.wait_requests(1)
    enqueue(sender, items(10, start=10))  # no room in the spool: waits in memory
    assert inserts.wait(2)
    sender.start_closing(time.monotonic())  # the exit deadline passes
    gate.opened.set()
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.dropped, stats.spooled) == (10, {"shutdown": 10}, 0)


def test_with_no_room_a_batch_given_up_on_is_dropped(senders: Callable[..., BulkSender]) -> None:
    sender = senders(Gate(lambda n: 503), spool_max_bytes=1000, retry_budget=0.05)
    enqueue(sender, items(3))
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.dropped, stats.spooled, stats.pending) == ({"retries_exhausted": 3}, 0, 0)


def test_a_batch_retried_past_the_exit_deadline_stays_in_the_spool(
    senders: Callable[..., BulkSender], spool: Path, reports: Callable[[], str]
) -> None:
    failing = Gate(lambda n: 503)
    sender = senders(failing, retry_budget=30, flush_interval=60, max_batch_items=5)
    enqueue(sender, items(5))
    assert failing.wait_requests(2)  # being retried
    sender.start_closing(time.monotonic())  # the exit deadline passes
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.spooled, stats.dropped, stats.pending) == (0, 5, {}, 0)
    assert [(r[1], r[3], r[4]) for r in rows(spool)] == [(None, 0, 5)]  # surely not delivered
    sender.close(1)
    assert "5 item(s) not delivered before the shutdown deadline left in the spool" in reports()


def test_a_batch_of_duplicates_only_is_skipped_with_a_spool(
    senders: Callable[..., BulkSender], spool: Path
) -> None:
    gate = Gate()
    sender = senders(gate, flush_interval=60)
    assert sender.enqueue(Item.user("u1", {"plan": "pro"}))
    assert sender.flush(10)
    assert sender.enqueue(Item.user("u1", {"plan": "pro"}))  # the same update again
    assert sender.flush(10)
    assert (sender.stats.sent, sender.stats.deduplicated) == (1, 1)
    assert gate.requests == 1
    assert rows(spool) == []


def test_items_still_queued_at_the_stop_are_written_to_the_spool(
    senders: Callable[..., BulkSender],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    reports: Callable[[], str],
) -> None:
    entered, proceed = threading.Event(), threading.Event()
    real = SpoolStore.insert

    def slow_insert(store: SpoolStore, *args: Any) -> Any:
        entered.set()
        proceed.wait(10)
        return real(store, *args)

    monkeypatch.setattr(SpoolStore, "insert", slow_insert)
    sender = senders(Gate(lambda n: 503), max_batch_items=5, flush_interval=60)
    enqueue(sender, items(5))  # a full batch; refused: the sender writes it (slowly)
    assert entered.wait(10)
    enqueue(sender, items(3, start=5))  # queued meanwhile
    sender.engine.stop() if sender.engine else None  # the exit's stop, once its flush gave up
    proceed.set()
    assert sender.thread is not None
    sender.thread.join(10)
    assert [(r[1], r[3], r[4]) for r in rows(spool)] == [(None, 0, 5), (None, 0, 3)]
    stats = sender.stats
    assert (stats.sent, stats.spooled, stats.dropped, stats.pending) == (0, 8, {}, 0)
    assert "8 item(s) not delivered before the shutdown deadline left in the spool" in reports()


def test_a_delete_asked_for_before_the_stop_still_happens(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, proceed = threading.Event(), threading.Event()
    real = SpoolStore.delete

    def slow_delete(store: SpoolStore, row: int) -> None:
        entered.set()
        proceed.wait(10)
        real(store, row)

    monkeypatch.setattr(SpoolStore, "delete", slow_delete)
    gate = Gate(lambda n: 503 if n == 0 else None)  # stored after the first request failed
    sender = senders(gate, max_batch_items=4, flush_interval=60)
    enqueue(sender, items(4))
    assert entered.wait(10)  # delivered; its deletion from the spool is under way
    sender.engine.stop() if sender.engine else None  # the stop cancels the delivery awaiting it
    proceed.set()
    assert sender.thread is not None
    sender.thread.join(10)
    assert rows(spool) == []  # deleted all the same: it is not sent a second time
    stats = sender.stats
    assert (stats.sent, stats.spooled, stats.pending) == (4, 0, 0)


def test_an_exit_that_cannot_release_its_batches_leaves_them_to_the_next_sender(
    senders: Callable[..., BulkSender], spool: Path, reports: Callable[[], str]
) -> None:
    held = Gate(shut=True)
    sender = senders(held, max_batch_items=4, flush_interval=60)
    enqueue(sender, items(4))
    assert held.wait_requests(1)
    assert sender.engine is not None and sender.engine.spool is not None
    spool_worker = sender.engine.spool.executor
    assert spool_worker is not None
    fail_on(spool, "UPDATE")
    sender.close(0.2)
    assert sender.thread is not None
    sender.thread.join(10)
    spool_worker.thread.join(10)  # its connection closed: this sender is gone
    held.opened.set()
    assert "could not leave the queued items in the spool" in reports()
    assert sender.stats.dropped == {"shutdown": 4}
    assert [(r[2], r[4]) for r in rows(spool)] == [(1, 4)]  # still leased to it
    with other_connection(spool) as conn:
        conn.execute("DROP TRIGGER injected")
    up = Gate()
    later = senders(up)  # its owner is gone: taken over at once, not after the lease
    with up.cond:
        assert up.cond.wait_for(lambda: len(up.delivered) == 4, 10)
    assert later.flush(10)
    assert (later.stats.replayed, later.stats.redelivered) == (4, 4)


def test_own_waiting_batches_past_the_age_limit_are_dropped(
    senders: Callable[..., BulkSender], spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spool, "MAINTENANCE_SECONDS", 0.0)  # every pump
    errors: list[DeliveryError] = []
    sender, gate = waiting_batches(
        senders, monkeypatch, 3, spool_max_age=3600, on_error=errors.append
    )
    with other_connection(spool) as conn:
        conn.execute("UPDATE batches SET created = created - 7200")
    gate.opened.set()
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.dropped, stats.pending) == (10, {"spool_expired": 20}, 0)
    assert [(e.reason, e.count) for e in errors] == [("spool_expired", 20)]
    assert sorted(gate.delivered) == sorted(ids(10))  # the one in flight was spared
    assert rows(spool) == []


def test_rows_list_one_kind_per_item_for_0_1_0_readers(
    stores: Callable[..., SpoolStore], spool: Path
) -> None:
    """Version 0.1.0 refuses a row whose kinds list is not as long as the batch (and
    then gives up its spool): rows written now keep the list, one "item" each."""
    store = stores()
    batch = items(4)
    row = put(store, batch)
    assert row is not None
    store.release(row, False, batch[1:])
    with other_connection(spool) as conn:
        kinds, sizes = conn.execute(
            "SELECT kinds, sizes FROM payloads WHERE id = ?", (row,)
        ).fetchone()
    assert orjson.loads(kinds) == ["item"] * 3
    assert orjson.loads(sizes) == [len(body) for body in batch[1:]]
    assert store.read(row) == batch[1:]
