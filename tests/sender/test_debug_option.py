"""``debug=True`` (or ``BUCKET_DEBUG=1``): each request's summary (items, bytes, status) at
INFO on ``bucket_logging``, while online; never the key."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from support import KEY

from bucket_logging import BulkSender, Item, TrackingServer

Make = Callable[..., BulkSender]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bucket_logging" and r.levelno == logging.INFO and "POST " in r.getMessage()
    ]


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_each_request_is_summed_up(
    server: TrackingServer,
    make_sender: Make,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    caplog.set_level(logging.INFO, logger="bucket_logging")
    if how == "variable":
        monkeypatch.setenv("BUCKET_DEBUG", "1")
    sender = make_sender(base_url=server.url, debug=how == "argument")
    items = [Item.event("Clicked", user_id=i) for i in range(3)]
    for item in items:
        sender.enqueue(item)
    assert sender.flush(10)
    server.fail_next(1, status=503)
    sender.enqueue(Item.event("Clicked", user_id=4))
    assert sender.flush(10)
    size = len(b"[" + b",".join(i.body for i in items) + b"]")
    host = f"127.0.0.1:{server.port}"
    summaries = _summaries(caplog)
    assert summaries[0].endswith(f"POST {host} bulk: 3 item(s), {size} bytes -> HTTP 200")
    assert " bulk: 1 item(s), " in summaries[1] and summaries[1].endswith(" -> HTTP 503")
    assert summaries[2].endswith("-> HTTP 200")
    assert len(summaries) == 3
    assert KEY not in caplog.text


def test_off_by_default(
    server: TrackingServer, make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bucket_logging")
    sender = make_sender(base_url=server.url)
    sender.enqueue(Item.event("Clicked", user_id=1))
    assert sender.flush(10)
    assert _summaries(caplog) == []
