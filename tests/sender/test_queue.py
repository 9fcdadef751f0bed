"""The batch queue (bucket_logging._queue) on its own: inbox, batches, bounds, dedupe.

Each test builds a :class:`BatchQueue` with its own :class:`Ledger` and no sender:
what it proves is what the queue hands out and what the ledger counts.
"""

from __future__ import annotations

import threading
import time

import pytest
from support import make_queue

from bucket_logging import Item, _queue


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


def test_a_contended_queue_lock_is_awaited_with_the_gil_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A logging thread never blocks inside the queue lock's acquire().

    A thread blocked there is handed the lock before it has the GIL back, and every
    other logging thread then blocked behind it: 4 logging threads ran 3x slower.
    """
    queue, _ = make_queue()
    real_lock = queue.lock
    blocking: list[threading.Thread] = []

    class Watched:
        def acquire(self, blocking_: bool = True, timeout: float = -1) -> bool:
            if blocking_:
                blocking.append(threading.current_thread())
            return bool(real_lock.acquire(blocking_, timeout))

        def release(self) -> None:
            real_lock.release()

        def __enter__(self) -> bool:
            return bool(real_lock.__enter__())

        def __exit__(self, *exc: object) -> None:
            real_lock.__exit__(*exc)

    held, let_go = threading.Event(), threading.Event()

    def holder() -> None:  # another thread holds the lock until the putter has yielded
        with real_lock:
            held.set()
            let_go.wait(10)

    yields: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        yields.append(seconds)
        if len(yields) == 3:
            let_go.set()
        real_sleep(0.001)

    monkeypatch.setattr(_queue.time, "sleep", sleep)
    queue.lock = Watched()  # type: ignore[assignment]
    holding = threading.Thread(target=holder)
    holding.start()
    assert held.wait(10)
    put = threading.Thread(target=queue.put_locked, args=(Item.event("e", 1).body,))
    put.start()
    put.join(10)
    holding.join(10)
    monkeypatch.undo()
    assert not put.is_alive() and not holding.is_alive()
    assert len(yields) >= 3 and set(yields) == {0}
    assert put not in blocking  # never waited inside acquire()
    assert queue.ledger.stats().queued == 1


def test_a_count_taken_in_the_middle_of_a_drain_does_not_drain_again() -> None:
    """A signal handler (or finaliser) that counts or flushes while this thread moves the
    inbox into the batches: the nested drain emptied the inbox under the outer loop
    (IndexError out of the log call) or cut an entry in half (broken JSON)."""
    queue, _ = make_queue(max_batch_items=4)
    items = [Item.event("e", i) for i in range(4)]
    counted: list[int] = []

    class Counting(bytes):
        def __len__(self) -> int:  # read by the drain, in the middle of it
            if not counted:
                queue.drain()  # as bucket_logging.flush() in a SIGTERM handler
                counted.append(queue.ledger.pending)
            return super().__len__()

    assert queue.put(Counting(items[0].body))
    for item in items[1:]:
        assert queue.put(item.body)  # the 4th: the inbox holds a batch's worth
    assert counted == [0]  # the nested count saw the queue as it was, and left it
    taken = queue.take()
    assert taken is not None and taken[0].entries() == [item.body for item in items]


def test_a_put_re_entered_while_the_queue_changes_is_deferred() -> None:
    """A tracked event logged by a signal handler in the middle of a put is queued
    later from the sender's thread, never appended into a half-changed batch."""
    deferred: list[bytes] = []
    queue, _ = make_queue(defer=lambda body: deferred.append(body) or True)
    inner = Item.event("inner", 1).body

    class Reentering(bytes):
        def __len__(self) -> int:
            if not deferred:
                assert queue.put_locked(inner)  # a signal handler's log call
            return super().__len__()

    outer = Item.event("outer", 1).body
    assert queue.put_locked(Reentering(outer))
    assert deferred == [inner]
    taken = queue.take()
    assert taken is not None and taken[0].entries() == [outer]


def test_an_entry_put_while_the_queue_stops_is_counted_as_closed() -> None:
    """The put checked that the queue runs, then the close ran to its end, then the
    entry reached the inbox: it was neither counted by the close nor reported."""
    queue, _ = make_queue()

    class Late(bytes):
        def __len__(self) -> int:  # read after the check, before the append
            queue.running = False  # what close() does on another thread meanwhile
            return super().__len__()

    body = Late(Item.event("e", 1).body)
    assert queue.put(body) is False
    assert queue.ledger.stats().dropped == {"closed": 1}  # counted by the call itself


def test_a_wake_for_a_full_batch_leaves_the_batch_being_filled() -> None:
    """Only sealed batches are taken when not partial: a burst goes out as full bodies."""
    queue, wakes = make_queue(max_batch_items=3)
    items = [Item.event("e", i) for i in range(4)]
    for item in items:
        assert queue.put_locked(item.body)
    assert wakes == [1]
    assert queue.has_full_batch()
    taken = queue.take(partial=False)
    assert taken is not None and len(taken[0]) == 3
    assert queue.take(partial=False) is None  # the fourth waits for the timer or a flush
    assert queue.sizes() == (0, [1])
    queue.woken()
    assert queue.put_locked(Item.event("e", 5).body)
    assert queue.put_locked(Item.event("e", 6).body)
    assert wakes == [1, 1]  # sealed again: the sender is woken again
