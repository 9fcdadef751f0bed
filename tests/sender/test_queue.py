"""The batch queue (bucket_logging._sender.queue) on its own: inbox, batches, bounds, its lock.

Its dedupe window is tested in test_dedupe.py.

Each test builds a :class:`BatchQueue` with its own :class:`Ledger` and no sender:
what it proves is what the queue hands out and what the ledger counts.
"""

from __future__ import annotations

import threading
import time

import pytest
from support import make_queue

from bucket_logging import Item
from bucket_logging._sender import queue as _queue


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
