"""A sender's counters as prometheus_client metrics (bucket_logging.metrics.use_prometheus).

Real senders against the local tracking server (by both loopback names), a fresh
registry per test; the values are read back through the registry, as a scrape reads them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest

import bucket_logging.metrics
from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime.state import state
from bucket_logging._sender.observe import Counts, Levels


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def events(n: int, prefix: str = "u") -> list[Item]:
    return [Item.event("Metrics tested", user_id=f"{prefix}{i}") for i in range(n)]


def test_sent_rejected_failed_and_the_requests_are_counted(
    server: TrackingServer, server_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    registry = CollectorRegistry()
    bucket_logging.metrics.use_prometheus(registry)
    server.reject_items(lambda entry: entry.get("userId") in ("u3", "u7"))
    server.fail_next(2, 503)
    sender = make_sender(base_url=server_url)
    for item in events(10):
        sender.enqueue(item)
    assert sender.flush(10)
    stats = sender.stats
    assert (stats.sent, stats.rejected) == (8, 2)
    assert value(registry, "bucket_logging_items_queued_total") == 10
    assert value(registry, "bucket_logging_items_sent_total") == 8
    assert value(registry, "bucket_logging_items_dropped_total", reason="rejected") == 2
    assert value(registry, "bucket_logging_items_dropped_total", reason="queue_full") == 0
    assert value(registry, "bucket_logging_bulk_request_failures_total") == 2
    assert value(registry, "bucket_logging_bulk_request_retries_total") == 2
    requests = value(registry, "bucket_logging_bulk_requests_total")
    assert requests == stats.requests
    # every request's duration and size, answered or failed
    assert value(registry, "bucket_logging_bulk_request_duration_seconds_count") == requests
    assert value(registry, "bucket_logging_bulk_request_items_count") == requests
    assert value(registry, "bucket_logging_queue_capacity_items") == sender.config.max_queue_items
    assert value(registry, "bucket_logging_build_info", version=bucket_logging.__version__) == 1
    text = generate_latest(registry).decode()
    assert 'bucket_logging_items_dropped_total{reason="rejected"} 2.0' in text


def test_items_dropped_for_a_full_queue_and_the_queue_level_are_counted(
    refused_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    registry = CollectorRegistry()
    bucket_logging.metrics.use_prometheus(registry)
    sender = make_sender(
        base_url=refused_url, max_queue_items=3, flush_interval=0.05, retry_budget=60.0
    )
    for item in events(8):
        sender.enqueue(item)
    assert until(
        lambda: value(registry, "bucket_logging_items_dropped_total", reason="queue_full") == 5
    )
    assert until(lambda: value(registry, "bucket_logging_destination_failing_seconds") > 0)
    assert value(registry, "bucket_logging_queue_capacity_items") == 3
    assert value(registry, "bucket_logging_bulk_request_failures_total") >= 1


def test_two_senders_add_up_and_a_closed_one_leaves_the_gauges(
    server: TrackingServer, server_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    registry = CollectorRegistry()
    bucket_logging.metrics.use_prometheus(registry)
    first = make_sender(base_url=server_url, max_queue_items=1000)
    second = make_sender(base_url=server_url, max_queue_items=2000)
    for item in events(3):
        first.enqueue(item)
    for item in events(4, "v"):
        second.enqueue(item)
    assert first.flush(10) and second.flush(10)
    assert value(registry, "bucket_logging_items_sent_total") == 7
    assert value(registry, "bucket_logging_queue_capacity_items") == 3000
    first.close(5)
    assert value(registry, "bucket_logging_queue_capacity_items") == 2000
    assert value(registry, "bucket_logging_items_sent_total") == 7


def test_observers_are_told_on_the_senders_thread_only(
    server: TrackingServer, server_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    """The log call's thread never moves a metric: it only counts in the ledger."""
    threads: set[int] = set()

    class Recorder:
        def counted(self, sender: int, counts: Counts, levels: Levels | None) -> None:
            threads.add(threading.get_ident())

        def requested(self, seconds: float, items: int) -> None:
            threads.add(threading.get_ident())

    state.observers.append(Recorder())
    sender = make_sender(base_url=server_url, max_queue_items=2)
    for item in events(5):  # 3 dropped (queue_full) on this thread
        sender.enqueue(item)
    assert sender.flush(10)
    sender.close(5)
    assert sender.stats.dropped == {"queue_full": 3}
    assert threads, "the observer was never told"
    assert threading.get_ident() not in threads
    assert sender.engine is not None and threads == {sender.engine.thread_id}


def test_use_prometheus_twice_reports_once(
    server: TrackingServer, server_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    registry = CollectorRegistry()
    bucket_logging.metrics.use_prometheus(registry)
    bucket_logging.metrics.use_prometheus(registry)
    state.reset()  # (the tests' reset forgets the observers; the registry keeps its metrics)
    bucket_logging.metrics.use_prometheus(registry)
    sender = make_sender(base_url=server_url)
    for item in events(4):
        sender.enqueue(item)
    assert sender.flush(10)
    assert value(registry, "bucket_logging_items_sent_total") == 4


def test_an_observer_that_raises_is_reported_and_delivery_goes_on(
    server: TrackingServer,
    server_url: str,
    make_sender: Callable[..., BulkSender],
    lines: list[str],
) -> None:
    class Broken:
        def counted(self, *args: Any) -> None:
            raise RuntimeError("observer bug")

        def requested(self, *args: Any) -> None:
            raise RuntimeError("observer bug")

    state.observers.append(Broken())
    sender = make_sender(base_url=server_url)
    for item in events(3):
        sender.enqueue(item)
    assert sender.flush(10)
    assert sender.stats.sent == 3
    assert any("a metrics observer raised" in line for line in lines)


def test_the_spool_levels_are_measured_on_the_senders_thread(
    refused_url: str, make_sender: Callable[..., BulkSender], tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    bucket_logging.metrics.use_prometheus(registry)
    # the destination is down: the batch stays in the spool while it is retried
    sender = make_sender(base_url=refused_url, spool_dir=str(tmp_path), flush_interval=0.05)
    for item in events(5):
        sender.enqueue(item)
    capacity = sender.config.spool.max_bytes if sender.config.spool else 0
    assert until(lambda: value(registry, "bucket_logging_spool_items") == 5)
    assert value(registry, "bucket_logging_spool_capacity_bytes") == capacity
    assert value(registry, "bucket_logging_spool_size_bytes") > 0
    assert until(lambda: value(registry, "bucket_logging_spool_oldest_age_seconds") > 0)
