"""An offline sender sends nothing, counts its items and shows them at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
import pytest

from bucket_logging import BulkSender, Item

Make = Callable[..., BulkSender]


def events(n: int, start: int = 0) -> list[Item]:
    return [Item.event("e", i, {"i": i}) for i in range(start, start + n)]


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


#: The first sender's start-up line (see tests/sender/test_startup_line.py).
STARTUP = "offline: tracking calls are validated and counted, none is sent"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the library said, but for the start-up line."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bucket_logging" and not r.getMessage().endswith(STARTUP)
    ]


def test_offline_without_debug_logging_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="bucket_logging")
    sender = BulkSender(offline=True)
    assert all(sender.enqueue(item) for item in events(3))
    assert sender.stats.offline == 3
    assert messages(caplog) == []  # nothing for each item
    assert [r.getMessage() for r in caplog.records] == [STARTUP]
    sender.close()


def test_offline_debug_output_shows_each_item(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    caplog.set_level(logging.DEBUG, logger="bucket_logging")
    sender = BulkSender(offline=True)
    assert sender.enqueue(Item.event("Sent message", "u1", {"caf\u00e9": 1}))
    [line] = messages(caplog)
    assert line.startswith('offline: {"type":"event","event":"Sent message","userId":"u1",')
    assert orjson.loads(line.removeprefix("offline: "))["attributes"] == {"caf\u00e9": 1}
    sender.close()
