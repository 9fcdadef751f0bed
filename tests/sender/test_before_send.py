"""``before_send``: a sender option that sees each item before it is queued, may change it
or drop it (``None``: counted as ``dropped["before_send"]``); an exception in it is reported
and never reaches the log call. Every front end, ``track()`` and the captures share it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bucket_logging
from bucket_logging import BucketHandler, BucketProcessor, BulkSender, Item, TrackingServer
from bucket_logging.testing import capture_tracking

Make = Callable[..., BulkSender]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture
def make(server: TrackingServer, make_sender: Make) -> Make:
    return make_sender


def scrub(item: dict[str, Any]) -> dict[str, Any] | None:
    if item.get("event") == "Health check":
        return None
    item.get("attributes", {}).pop("email", None)
    return item


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def test_items_are_changed_or_dropped_before_they_are_queued(
    server: TrackingServer, make: Make
) -> None:
    sender = make(base_url=server.url, before_send=scrub)
    log = _logger("app.before_send", BucketHandler(sender=sender))
    attributes = {"email": "ada@example.com", "plan": "pro"}
    log.info(
        "in", extra={"bucket_event": "Signed in", "user_id": 1, "bucket_attributes": attributes}
    )
    log.info("ok", extra={"bucket_event": "Health check", "user_id": 1})
    log.info("u", extra={"bucket_user": {"email": "ada@example.com", "name": "Ada"}, "user_id": 1})
    sender.enqueue(Item.event("Exported", user_id=2, attributes={"email": "b@example.com"}))
    assert sender.flush(10)
    calls = [{k: v for k, v in c.items() if k != "timestamp"} for c in server.calls]
    assert calls == [
        {"type": "event", "event": "Signed in", "userId": 1, "attributes": {"plan": "pro"}},
        {"type": "user", "userId": 1, "attributes": {"name": "Ada"}},
        {"type": "event", "event": "Exported", "userId": 2, "attributes": {}},
    ]
    assert sender.stats.dropped == {"before_send": 1}
    assert sender.stats.sent == 3


def test_an_exception_in_it_is_reported_never_raised(
    server: TrackingServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["userId"] == 13:
            raise RuntimeError("scrubber broke")
        if item["userId"] == 14:
            return {"type": "event", "event": "no user"}  # not a valid item
        return item

    sender = make(base_url=server.url, before_send=broken)
    log = _logger("app.before_send.broken", BucketHandler(sender=sender))
    for user in (12, 13, 14, 15):
        log.info("x", extra={"bucket_event": "Clicked", "user_id": user})  # never raises
    assert sender.flush(10)
    assert [c["userId"] for c in server.calls] == [12, 15]
    assert sender.stats.dropped == {"before_send_error": 2}
    said = [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]
    assert any("before_send failed" in m and "scrubber broke" in m for m in said), said


def test_what_the_hook_logs_is_not_tracked(server: TrackingServer, make: Make) -> None:
    log = logging.getLogger("app.before_send.loud")

    def loud(item: dict[str, Any]) -> dict[str, Any]:
        log.info("inner", extra={"bucket_event": "From the hook", "user_id": 9})
        return item

    sender = make(base_url=server.url, before_send=loud)
    _logger("app.before_send.loud", BucketHandler(sender=sender))
    log.info("outer", extra={"bucket_event": "Outer", "user_id": 1})
    assert sender.flush(10)
    assert [c["event"] for c in server.calls] == ["Outer"]


def test_the_structlog_front_end_and_track_share_it(server: TrackingServer, make: Make) -> None:
    sender = make(base_url=server.url, before_send=scrub)
    processor = BucketProcessor(sender=sender)
    processor(None, "info", {"event": "x", "bucket_event": "Health check", "user_id": 1})
    processor(
        None, "info", {"event": "x", "bucket_event": "Paid", "user_id": 1,
                       "bucket_attributes": {"email": "a@b.c"}}
    )  # fmt: skip
    bucket_logging.track("Health check", user_id=3, sender=sender)
    bucket_logging.track("Exported", user_id=3, attributes={"email": "a@b.c"}, sender=sender)
    assert sender.flush(10)
    assert [(c["event"], c.get("attributes")) for c in server.calls] == [
        ("Paid", {}),
        ("Exported", {}),
    ]
    assert sender.stats.dropped == {"before_send": 2}


def test_captures_see_items_as_before_send_returns_them() -> None:
    sender = BulkSender(offline=True, before_send=scrub)
    log = _logger("app.before_send.capture", BucketHandler(sender=sender))
    with capture_tracking() as calls:
        log.info("ok", extra={"bucket_event": "Health check", "user_id": 1})
        log.info("in", extra={"bucket_event": "Signed in", "user_id": 1,
                              "bucket_attributes": {"email": "a@b.c"}})  # fmt: skip
    assert [(c["event"], c["attributes"]) for c in calls] == [("Signed in", {})]


def test_an_untagged_log_call_never_reaches_it() -> None:
    seen: list[dict[str, Any]] = []
    sender = BulkSender(offline=True, before_send=lambda item: seen.append(item) or item)
    log = _logger("app.before_send.untagged", BucketHandler(sender=sender))
    log.info("plain %s", "line", extra={"user_id": 1})
    assert seen == []
