"""Regression tests for front-end bugs found in review (each failed before its fix)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from bucket_logging import BucketHandler, BucketProcessor
from bucket_logging.testing import capture_tracking


@pytest.fixture
def bridged() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_a_bridged_event_no_bucket_handler_sees_leaves_no_claim(bridged: None) -> None:
    # The handler only takes WARNING: the INFO event's record never reaches it, so the
    # processor must not claim it, or the next stdlib record with the same constant
    # tags on this thread would pass for it and go untracked.
    structlog.configure(
        processors=[BucketProcessor(offline=True), structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(BucketHandler(offline=True, level="WARNING"))
    with capture_tracking() as calls:
        structlog.get_logger("app").info("clicked", bucket_event="Clicked", user_id=42)
        logging.getLogger("app").warning(
            "clicked from stdlib", extra={"bucket_event": "Clicked", "user_id": 42}
        )
    assert [c["event"] for c in calls] == ["Clicked", "Clicked"]
