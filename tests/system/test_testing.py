"""bucket_logging.testing.capture_tracking: what a block would send, with no network."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from support import FakeSender

from bucket_logging._frontends.handler import BucketHandler
from bucket_logging._frontends.processor import BucketProcessor
from bucket_logging._tracking import capture as _capture
from bucket_logging.testing import capture_tracking


@pytest.fixture(autouse=True)
def _no_capture_left() -> Iterator[None]:
    yield
    assert _capture.active == []


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("app.captured")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)
    log.setLevel(logging.NOTSET)
    log.propagate = True


def _no_ts(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "timestamp"} for c in calls]


def test_captures_handler_calls_instead_of_sending(logger: logging.Logger) -> None:
    sender = FakeSender()
    logger.addHandler(BucketHandler(sender=sender))
    with capture_tracking() as calls:
        logger.info("x", extra={"user_id": 1, "bucket_user": True, "bucket_event": "E"})
    assert _no_ts(calls) == [
        {"type": "user", "userId": 1},
        {"type": "event", "event": "E", "userId": 1},
    ]
    assert all("timestamp" in c for c in calls)
    assert sender.items == []
    logger.info("after", extra={"user_id": 1, "bucket_event": "After"})
    assert len(sender.items) == 1
    assert calls[-1]["event"] == "E"


def test_captures_processor_calls_with_an_offline_sender() -> None:
    log = structlog.wrap_logger(
        structlog.ReturnLogger(), processors=[BucketProcessor(offline=True), lambda *a: "line"]
    )
    with capture_tracking() as calls:
        assert log.info("x", user_id="u", bucket_feedback={"feature_id": "f", "score": 3}) == "line"
    assert _no_ts(calls) == [{"type": "feedback", "featureId": "f", "score": 3, "userId": "u"}]


def test_invalid_calls_are_not_captured(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logger.addHandler(BucketHandler(sender=FakeSender()))
    with capture_tracking() as calls:
        logger.info("x", extra={"user_id": 1, "bucket_event": 5})
    assert calls == []
    assert any("bucket_event must be" in r.getMessage() for r in caplog.records)


def test_nested_blocks_and_other_threads(logger: logging.Logger) -> None:
    logger.addHandler(BucketHandler(sender=FakeSender()))

    def log(name: str) -> None:
        logger.info("x", extra={"user_id": 1, "bucket_event": name})

    with capture_tracking() as outer:
        log("Outer")
        with capture_tracking() as inner:
            thread = threading.Thread(target=log, args=("Thread",))
            thread.start()
            thread.join()
        log("Outer again")
    assert [c["event"] for c in outer] == ["Outer", "Thread", "Outer again"]
    assert [c["event"] for c in inner] == ["Thread"]


def test_capture_ends_on_error(logger: logging.Logger) -> None:
    with pytest.raises(RuntimeError), capture_tracking():
        raise RuntimeError("test failed")
    assert _capture.active == []
