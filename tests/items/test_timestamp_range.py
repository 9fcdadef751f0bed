"""Timestamps that cannot be written as ISO 8601 in the years 1-9999 (UTC) are refused and
reported, never sent as a year 0, a year 10000 or a year 316889355; nothing valid is lost."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pytest
from support import FakeSender

from bucket_logging import InvalidItemError, Item
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging._items.item import format_timestamp
from bucket_logging._items.validation import timestamp_problem, validate_wire

PLUS14 = dt.timezone(dt.timedelta(hours=14))
MINUS14 = dt.timezone(dt.timedelta(hours=-14))

UNWRITABLE: list[Any] = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T13:59:59+14:00",
    1e16,
    -1e12,
    253402300800.0,  # 10000-01-01T00:00:00Z
    -62135596801.0,  # a second before 0001-01-01T00:00:00Z
    float("nan"),
    float("inf"),
    dt.datetime(1, 1, 1, tzinfo=PLUS14),
    dt.datetime(9999, 12, 31, 23, 0, tzinfo=MINUS14),
]

WRITABLE: list[tuple[Any, str]] = [
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ("0001-01-01T14:00:00+14:00", "0001-01-01T14:00:00+14:00"),
    ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ("9999-12-31T09:59:59-14:00", "9999-12-31T09:59:59-14:00"),
    (-62135596800.0, "0001-01-01T00:00:00.000Z"),
    (253402300799.0, "9999-12-31T23:59:59.000Z"),
    (0.0, "1970-01-01T00:00:00.000Z"),
    (dt.datetime(9999, 12, 31, 9, 0, tzinfo=MINUS14), "9999-12-31T23:00:00.000Z"),
]


@pytest.mark.parametrize("value", UNWRITABLE)
def test_the_item_api_refuses_an_unwritable_time(value: Any) -> None:
    with pytest.raises(InvalidItemError) as info:
        Item.event("e", 1, timestamp=value)
    assert "timestamp" in str(info.value)
    assert "1-9999" in str(info.value) or "ISO 8601" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), WRITABLE)
def test_the_edges_that_can_be_written_are_kept(value: Any, expected: str) -> None:
    assert Item.event("e", 1, timestamp=value).to_dict()["timestamp"] == expected


@pytest.mark.parametrize("text", [v for v in UNWRITABLE if isinstance(v, str)])
def test_the_shared_validation_refuses_it_for_the_local_server(text: str) -> None:
    assert timestamp_problem(text) is not None
    problems = validate_wire({"type": "event", "event": "e", "userId": 1, "timestamp": text})
    assert any("timestamp" in p for p in problems)


def test_format_timestamp_refuses_out_of_range() -> None:
    with pytest.raises(InvalidItemError):
        format_timestamp(1e16)
    assert format_timestamp(1.5) == "1970-01-01T00:00:01.500Z"


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "-62135596801"]
)
def test_a_log_line_with_an_unwritable_time_is_reported_and_kept(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    lines = JsonLines(sender=sender)
    before = time.time()
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        assert lines.track({"timestamp": value, "event": "x", "bucket_event": "E", "user_id": 1})
    [item] = sender.items
    stamp = item.to_dict()["timestamp"]
    # the time of tracking, not year 0 or 10000
    parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    assert before - 1 <= parsed <= time.time() + 1
    assert any("timestamp" in r.getMessage() for r in caplog.records), caplog.records


def test_the_first_time_formatted_may_be_in_the_second_before_the_epoch() -> None:
    import subprocess
    import sys

    code = "from bucket_logging._items.item import format_timestamp; print(format_timestamp(-0.5))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "1969-12-31T23:59:59.500Z"
