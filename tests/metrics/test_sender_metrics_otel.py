"""A sender's counters as OpenTelemetry metrics (bucket_logging.metrics.use_opentelemetry),
read by the SDK's InMemoryMetricReader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import bucket_logging.metrics
from bucket_logging import BulkSender, Item, TrackingServer


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "bucket_logging"
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


def test_the_counters_and_histograms_reach_a_meter_provider(
    server: TrackingServer, server_url: str, make_sender: Callable[..., BulkSender]
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bucket_logging.metrics.use_opentelemetry(provider)
    bucket_logging.metrics.use_opentelemetry(provider)  # once per provider
    server.reject_items(lambda entry: entry.get("userId") == "u2")
    sender = make_sender(base_url=server_url, max_queue_items=500)
    for i in range(6):
        sender.enqueue(Item.event("Metrics tested", user_id=f"u{i}"))
    assert sender.flush(10)
    found = points(reader)
    assert [p.value for p in found["bucket_logging.items.sent"]] == [5]
    assert [p.value for p in found["bucket_logging.items.queued"]] == [6]
    dropped = {p.attributes["reason"]: p.value for p in found["bucket_logging.items.dropped"]}
    assert dropped == {"rejected": 1}
    requests = found["bucket_logging.bulk_requests"][0].value
    assert requests == sender.stats.requests >= 2  # the 400, then its halves
    assert found["bucket_logging.bulk_request.duration"][0].count == requests
    assert found["bucket_logging.bulk_request.items"][0].sum >= 6
    assert [p.value for p in found["bucket_logging.queue.capacity"]] == [500]
    provider.shutdown()
