"""A front end's options are never silently lost to a shared sender: one whose options
differ from the existing sender's for its key and URL gets a sender of its own, so its
``before_send`` applies to what it logs (issue 30, item 6)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from support import KEY

from bucket_logging import BucketHandler, TrackingServer, flush


def _scrub(item: dict[str, Any]) -> dict[str, Any]:
    item.get("attributes", {}).pop("email", None)
    return item


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.shared_sender_options")
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_a_second_handler_s_before_send_is_applied(
    log: logging.Logger, server_url: str, server: TrackingServer
) -> None:
    first = BucketHandler(KEY, base_url=server_url, flush_interval=60)
    second = BucketHandler(KEY, base_url=server_url, flush_interval=60, before_send=_scrub)
    assert second.sender is not first.sender  # other options: a sender of its own
    second_log = logging.getLogger("tests.shared_sender_options.scrubbed")
    second_log.propagate = False
    log.addHandler(first)
    second_log.addHandler(second)
    try:
        second_log.warning(
            "signed up", extra={"bucket_event": "signed_up", "user_id": "u1", "email": "a@b.c"}
        )
        assert flush(5)
        assert server.wait_for(1)
        [call] = server.calls
        assert call["event"] == "signed_up"
        assert "email" not in call.get("attributes", {}), call
    finally:
        second_log.removeHandler(second)
        second.close()


def test_handlers_with_the_same_options_share_one_sender(server_url: str) -> None:
    a = BucketHandler(KEY, base_url=server_url, flush_interval=60, before_send=_scrub)
    b = BucketHandler(KEY, base_url=server_url, flush_interval=60, before_send=_scrub)
    c = BucketHandler(KEY, base_url=server_url)  # no options: the first one's
    try:
        assert a.sender is b.sender is c.sender
    finally:
        for handler in (a, b, c):
            handler.close()
