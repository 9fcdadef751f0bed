"""Identical user and company updates are sent once within the dedupe window.

The window of the batch queue on its own (expiry, its cap, stale and dropped keys),
then a sender's: what reaches the endpoint, what the stats count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from support import Endpoint, make_queue

from bucket_logging import BulkSender, Item
from bucket_logging._sender import queue as _queue

Make = Callable[..., BulkSender]

#: A timestamp of the updates below.
NOW = 1_700_000_000.0


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


# --------------------------------------------------------------------------- the queue's window


def test_the_dedupe_window_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_queue, "_monotonic", lambda: clock[0])
    queue, _ = make_queue(dedupe_window=60)
    update = Item.user(1, {"a": 1})
    assert update.dedupe_key is not None
    assert queue.put_once(update.body, update.dedupe_key)
    clock[0] += 59
    assert queue.put_once(update.body, update.dedupe_key)  # within the window: skipped
    clock[0] += 2
    assert queue.put_once(update.body, update.dedupe_key)  # 61 s after the first: sent
    stats = queue.ledger.stats()
    assert (stats.queued, stats.deduplicated) == (2, 1)


def test_stale_dedupe_keys_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_queue, "_monotonic", lambda: clock[0])
    queue, _ = make_queue(max_queue_items=10**6, max_queue_bytes=10**9)
    body = Item.event("e", 1).body
    for i in range(_queue.DEDUPE_MAX_KEYS + 1):
        assert queue.put_once(body, b"stale-%d" % i)
    clock[0] += 3600
    update = Item.user("u1", {"plan": "pro"})
    assert update.dedupe_key is not None
    assert queue.put_once(update.body, update.dedupe_key)
    assert queue.dedupe_keys() == [update.dedupe_key]  # the stale entries are forgotten
    assert queue.put_once(update.body, update.dedupe_key)
    assert queue.ledger.stats().deduplicated == 1  # the fresh one still counts


def test_user_updates_past_50000_live_keys_do_not_rebuild_the_dedupe_window() -> None:
    """Past 50,000 live keys, each update rebuilt the whole window under the queue lock
    (3.8 ms per user update instead of about 1 µs)."""
    queue, _ = make_queue(max_queue_items=10**6, max_queue_bytes=10**9)
    body = Item.event("e", 1).body
    for i in range(50_000):
        assert queue.put_once(body, b"user-%d" % i)
    assert len(queue.dedupe_keys()) == 50_000  # all live: nothing to expire
    began = time.perf_counter()
    for i in range(50_000, 51_000):
        assert queue.put_once(body, b"user-%d" % i)
    assert time.perf_counter() - began < 1.0  # a rebuild each: about 4 s


def test_the_dedupe_window_is_capped_oldest_out_first() -> None:
    """Live keys past the cap: the oldest leave, so the window's memory is bounded (it
    grew by about 180 bytes per distinct user or company for as long as the window)."""
    queue, _ = make_queue(max_queue_items=10**6, max_queue_bytes=10**9)
    body = Item.event("e", 1).body
    cap = _queue.DEDUPE_MAX_KEYS
    for i in range(cap + 10):
        assert queue.put_once(body, b"user-%d" % i)
    keys = queue.dedupe_keys()
    assert len(keys) == cap
    assert keys[0] == b"user-10" and keys[-1] == b"user-%d" % (cap + 9)
    assert queue.put_once(body, b"user-0")  # forgotten: queued again, not skipped
    assert queue.ledger.stats().deduplicated == 0


def test_expired_dedupe_keys_leave_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_queue, "DEDUPE_MAX_KEYS", 3)
    clock = [1000.0]
    monkeypatch.setattr(_queue, "_monotonic", lambda: clock[0])
    queue, _ = make_queue(dedupe_window=60)
    old = [Item.user(f"old-{i}") for i in range(3)]
    new = [Item.user(f"new-{i}") for i in range(2)]

    def put(item: Item) -> None:
        assert item.dedupe_key is not None
        assert queue.put_once(item.body, item.dedupe_key)

    for item in old:
        put(item)
    clock[0] += 30
    put(old[0])  # still within the window: skipped, its time unchanged
    assert queue.ledger.stats().deduplicated == 1
    clock[0] += 31  # 61 s after the first three: all expired
    put(new[0])  # over the cap: the expired keys leave
    assert queue.dedupe_keys() == [new[0].dedupe_key]
    clock[0] += 30
    put(new[1])
    put(old[1])  # expired and gone: sent again
    put(old[2])  # past the cap, nothing expired: the oldest live key leaves
    assert queue.dedupe_keys() == [k.dedupe_key for k in (new[1], old[1], old[2])]
    clock[0] += 31
    put(new[0])  # forgotten by the cap: sent again
    assert queue.dedupe_keys() == [k.dedupe_key for k in (old[1], old[2], new[0])]
    assert queue.ledger.stats().deduplicated == 1


def test_a_dropped_update_leaves_no_dedupe_key() -> None:
    queue, _ = make_queue(max_queue_items=1)
    assert queue.put_locked(Item.event("e", 1).body)
    update = Item.user("u1", {"plan": "pro"})
    assert update.dedupe_key is not None
    assert queue.put_once(update.body, update.dedupe_key) is False  # full
    assert queue.dedupe_keys() == []
    assert queue.ledger.stats().dropped == {"queue_full": 1}


# --------------------------------------------------------------------------- a sender's


def test_identical_user_and_company_updates_are_sent_once(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(
        sender,
        [
            Item.user(1, {"name": "Ada"}, timestamp="2021-01-01T00:00:00Z"),
            Item.user(1, {"name": "Ada"}, timestamp="2021-01-01T00:00:01Z"),
            Item.company("acme", {"plan": "pro"}, user_id=1),
            Item.company("acme", {"plan": "pro"}, user_id=1),
            Item.user(1, {"name": "Ada Lovelace"}),  # different attributes
            Item.user(2, {"name": "Ada"}),  # a different user
            Item.company("acme", {"plan": "pro"}, user_id=2),  # a different association
            Item.event("e", 1, {"i": 0}),
            Item.event("e", 1, {"i": 0}),  # events are never deduplicated
        ],
    )
    assert sender.flush(10)
    kinds = [item["type"] for item in endpoint.delivered]
    assert kinds.count("user") == 3
    assert kinds.count("company") == 2
    assert kinds.count("event") == 2
    assert sender.stats.deduplicated == 2
    assert sender.stats.pending == 0
    # later, in another batch, still within the window
    enqueue_all(sender, [Item.user(1, {"name": "Ada"}), Item.user(3, {"name": "Ada"})])
    assert sender.flush(10)
    assert sender.stats.deduplicated == 3
    assert [item["userId"] for item in endpoint.delivered if item["type"] == "user"][-1] == 3


def test_dedupe_window_zero_turns_it_off(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60, dedupe_window=0)
    enqueue_all(sender, [Item.user(1, {"a": 1}) for _ in range(3)])
    assert sender.flush(10)
    enqueue_all(sender, [Item.company(1, {"a": 1}) for _ in range(2)])
    assert sender.flush(10)
    assert len(endpoint.delivered) == 5
    assert sender.stats.deduplicated == 0


def test_dedupe_window_expires(make_sender: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_queue, "_monotonic", lambda: clock[0])
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60, dedupe_window=60)
    assert sender.enqueue(Item.user(1, {"a": 1}))
    assert sender.flush(10)
    assert sender.enqueue(Item.user(1, {"a": 1}))
    assert sender.flush(10)
    assert len(endpoint.delivered) == 1
    clock[0] += 61  # past the window (instead of waiting 60 s)
    assert sender.enqueue(Item.user(1, {"a": 1}))
    assert sender.flush(10)
    assert len(endpoint.delivered) == 2
    assert sender.stats.deduplicated == 1


def test_an_identical_user_update_is_deduplicated_at_enqueue(make_sender: Make) -> None:
    """The same user update twice: queued once, the second counted as deduplicated."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    first = Item.user("u1", {"plan": "pro"}, timestamp=NOW)
    again = Item.user("u1", {"plan": "pro"}, timestamp=NOW + 1)
    other = Item.user("u1", {"plan": "free"}, timestamp=NOW + 2)
    assert first.dedupe_key == again.dedupe_key != other.dedupe_key
    assert sender.enqueue(first)
    assert sender.enqueue(again)
    assert sender.enqueue(other)
    stats = sender.stats
    assert stats.queued == 2 and stats.deduplicated == 1  # skipped at enqueue time
    assert sender.flush(10)
    assert sender.stats.deduplicated == 1
    assert endpoint.delivered == [first.to_dict(), other.to_dict()]


def test_a_dropped_update_is_not_remembered_by_the_dedupe(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """An update dropped for a full queue is sent when it comes again, not skipped."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), max_queue_items=1, flush_interval=60)
    event = Item.event("e", 1)
    update = Item.user("u1", {"plan": "pro"}, timestamp=NOW)
    assert sender.enqueue(event)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        assert sender.enqueue(update) is False  # the queue is full
    assert any("dropped a user item" in m for m in reports(caplog)), reports(caplog)
    assert sender.flush(10)
    assert endpoint.delivered == [event.to_dict()]
    again = Item.user("u1", {"plan": "pro"}, timestamp=NOW + 1)
    assert sender.enqueue(again)
    assert sender.flush(10)
    assert endpoint.delivered == [event.to_dict(), again.to_dict()]
    stats = sender.stats
    assert stats.deduplicated == 0
    assert stats.dropped == {"queue_full": 1}


def test_an_update_sent_in_an_earlier_batch_is_still_deduplicated(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(sender, [Item.user("u1", {"plan": "pro"})])
    assert sender.flush(10)
    assert sender.enqueue(Item.user("u1", {"plan": "pro"}))
    assert sender.flush(10)
    assert sender.stats.deduplicated == 1  # the fresh one still counts
    assert len(endpoint.delivered) == 1
