"""``bucket_logging.track(...)``: one call for code paths with no log statement, on the
tracker's path (validation, reports, bound ids, captures, the shared sender)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import structlog
from support import KEY, TRACKING_ENV

import bucket_logging
from bucket_logging import BucketHandler, BulkSender, TrackingServer
from bucket_logging._runtime import state as _process
from bucket_logging.testing import capture_tracking

Make = Callable[..., BulkSender]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture
def no_shared_senders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_process.state, "registry", {})
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    for sender in list(_process.state.registry.values()):
        sender.close(1.0)  # type: ignore[call-arg]


def _plain(calls: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in c.items() if k != "timestamp"} for c in calls]


def test_track_goes_through_the_handlers_shared_sender(
    server: TrackingServer, no_shared_senders: None
) -> None:
    handler = BucketHandler(KEY, base_url=server.url)  # the process's shared sender
    bucket_logging.track("Exported report", user_id=42, attributes={"format": "csv"})
    bucket_logging.track(user_id=42, user={"name": "Ada"}, company_id="acme", company=True)
    assert handler.flush(10)
    assert _plain(server.calls) == [
        {"type": "event", "event": "Exported report", "userId": 42,
         "attributes": {"format": "csv"}},
        {"type": "user", "userId": 42, "attributes": {"name": "Ada"}},
        {"type": "company", "companyId": "acme", "userId": 42},
    ]  # fmt: skip


def test_ids_bound_for_the_request_are_used(server: TrackingServer, make_sender: Make) -> None:
    sender = make_sender(base_url=server.url)
    with structlog.contextvars.bound_contextvars(user_id="ada", company_id="acme"):
        bucket_logging.track("Clicked", sender=sender)
    assert sender.flush(10)
    assert _plain(server.calls) == [
        {"type": "event", "event": "Clicked", "userId": "ada", "companyId": "acme"}
    ]


def test_a_wrong_call_is_reported_and_counted_never_raised(
    make_sender: Make, server: TrackingServer, caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(base_url=server.url)
    bucket_logging.track("Clicked", sender=sender)  # no user id anywhere
    bucket_logging.track("", user_id=1, sender=sender)  # an empty event name
    bucket_logging.track(sender=sender)  # nothing at all
    assert sender.stats.refused == {"missing_id": 1, "invalid_tag": 1}
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "bucket_logging")
    assert "needs a user id" in said
    assert "called with no event, user or company" in said


def test_captured_like_a_log_call(no_shared_senders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET_OFFLINE", "1")
    with capture_tracking() as calls:
        bucket_logging.track("Signed in", user_id=7)
    assert _plain(calls) == [{"type": "event", "event": "Signed in", "userId": 7}]


def test_captured_with_no_key_and_no_sender_at_all(no_shared_senders: None) -> None:
    with capture_tracking() as calls:
        bucket_logging.track("Signed in", user_id=8)
    assert [c["userId"] for c in calls] == [8]


def test_no_key_is_reported_not_raised(
    no_shared_senders: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    bucket_logging.track("Signed in", user_id=7)
    said = [r.getMessage() for r in caplog.records]
    assert any("no key" in m and "tracking is off" in m for m in said), said
    assert bucket_logging.get_sender().stats.offline == 1  # counted, not sent
