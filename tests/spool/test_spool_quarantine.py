"""Malformed spool rows are quarantined and reported; delivery goes on.

A row another version, a disk fault or a hand edit left malformed must not kill
the sender's thread: the row is quarantined and reported, delivery goes on, and a
sender whose thread is gone never reports a successful flush.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from support import KEY, Endpoint

from bucket_logging import BulkSender, Item
from bucket_logging._spool.rows import destination
from bucket_logging._spool.store import SPOOL_FILE, SpoolStore


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    """A spool holding one free batch of this key (two items)."""
    directory = tmp_path / "spool"
    store = SpoolStore(str(directory), destination(KEY), 1 << 28, 86400.0)
    store.open()
    store.insert([Item.event("old", 1).body, Item.event("old", 2).body], False, frozenset())
    store.release_all()
    store.close()
    yield directory


def edit(directory: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(directory / SPOOL_FILE, isolation_level=None)
    try:
        conn.execute(statement, args)
    finally:
        conn.close()


class Said(logging.Handler):
    """Sets an event when the library says something containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def deliver_new_items(
    directory: Path, caplog: pytest.LogCaptureFixture, expect: str | None = None
) -> Endpoint:
    """A new sender on the spool delivers 10 new items (after it said ``expect``);
    returns what the endpoint got."""
    caplog.set_level(logging.INFO, logger="bucket_logging")
    said = Said(expect or "")
    logging.getLogger("bucket_logging").addHandler(said)
    endpoint = Endpoint()
    sender = BulkSender(
        KEY, transport=endpoint.transport(), spool_dir=directory, flush_interval=0.05
    )
    try:
        if expect is not None:
            assert said.event.wait(10), caplog.text
        for i in range(10):
            assert sender.enqueue(Item.event("new", i))
        assert sender.flush(10)
        assert sender.thread is not None and sender.thread.is_alive()
    finally:
        sender.close(2)
        logging.getLogger("bucket_logging").removeHandler(said)
    assert [c["event"] for c in endpoint.delivered].count("new") == 10
    assert "stopped unexpectedly" not in caplog.text
    return endpoint


@pytest.mark.parametrize("sizes", [b"5", b'{"a": 1}', b'["x"]', b"[-1, 3]"])
def test_a_row_with_malformed_sizes_is_quarantined(
    spool: Path, caplog: pytest.LogCaptureFixture, sizes: bytes
) -> None:
    edit(spool, "UPDATE payloads SET sizes = ?", sizes)
    endpoint = deliver_new_items(spool, caplog, expect="quarantined")
    assert [c["event"] for c in endpoint.delivered].count("old") == 0
    assert "quarantined" in caplog.text
    conn = sqlite3.connect(spool / SPOOL_FILE)
    try:  # kept for a look, never claimed again
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (1,)
        assert conn.execute("SELECT dest FROM batches").fetchone()[0].startswith("quarantined")
    finally:
        conn.close()


def test_a_row_without_its_payload_is_quarantined(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edit(spool, "DELETE FROM payloads")
    deliver_new_items(spool, caplog, expect="quarantined")


def test_an_owner_with_a_20_digit_pid_is_left_to_its_lease(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SpoolStore(str(spool), destination(KEY), 1 << 28, 86400.0)
    host, pidns = store.owner.split("/")[:2]
    edit(
        spool,
        "UPDATE batches SET owner = ?, lease = 1e12",
        f"{host}/{pidns}/{'9' * 20}/t0ken",
    )
    endpoint = deliver_new_items(spool, caplog)
    assert [c["event"] for c in endpoint.delivered].count("old") == 0  # its lease holds


def test_a_sender_whose_thread_is_gone_never_reports_a_successful_flush() -> None:
    endpoint = Endpoint()
    sender = BulkSender(KEY, transport=endpoint.transport(), flush_interval=60)
    try:
        assert sender.engine is not None
        sender.engine.stop()  # the thread ends, as if it had died; nothing was closed
        assert sender.thread is not None
        sender.thread.join(10)
        assert sender.enqueue(Item.event("e", 1))
        assert sender.flush(1) is False
    finally:
        sender.close(0.5)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(b'{"type":"event","event":"x","userId":"u",' + b'"p":"' + b"x" * 10 + b'"}',
                     id="unknown field"),
        pytest.param(b'{"type":"event","event":"' + b"x" * 2_000_001 + b'","userId":"u"}',
                     id="over 2,000,000 bytes"),
        pytest.param(b"[1, 2]", id="not an object"),
        pytest.param(b"{nope", id="not JSON"),
    ],
)  # fmt: skip
def test_a_replayed_row_gets_the_checks_of_fresh_items(
    spool: Path, caplog: pytest.LogCaptureFixture, entry: bytes
) -> None:
    """A row another process wrote is checked before it is sent (issue 15, item 3): an
    invalid entry would have made the server reject the batch (bisected) or, too
    large, broken the 2,000,000-byte body limit."""
    good = Item.event("old", 1).body
    bodies = [good, entry]
    edit(spool, "UPDATE payloads SET sizes = ?, bodies = ?",
         orjson.dumps([len(b) for b in bodies]), b"".join(bodies))  # fmt: skip
    endpoint = deliver_new_items(spool, caplog, expect="quarantined")
    assert [c["event"] for c in endpoint.delivered].count("old") == 0
    assert all(len(r.body) <= 2_000_000 for r in endpoint.requests)
    assert "entry 1 of a spooled batch is invalid" in caplog.text
