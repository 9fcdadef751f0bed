"""The JSON-line adapter shared by ``ship`` and ``relay``: fields, template, name, time."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from support import FakeSender

from bucket_logging._frontends.jsonlines import JsonLines, parse_time

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-02T03:04:05.678Z", T),
        ("2026-01-02T03:04:05.678+00:00", T),
        ("2026-01-02T05:04:05.678+02:00", T),
        ("2026-01-02T05:04:05.678+0200", T),
        ("2026-01-02 03:04:05,678", T),  # python-json-logger's asctime, naive: UTC
        ("2026-01-02T03:04:05.678123456Z", T + 0.000123),
        (T, T),
        (int(T * 1000), round(T, 3)),
        (int(T * 1_000_000), T),
        (int(T * 1_000_000_000), T),
        (str(T), T),
        (0, 0.0),
    ],
)
def test_parse_time_reads_iso_and_epoch(value: object, expected: float) -> None:
    got = parse_time(value)
    assert got is not None
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value", ["yesterday", "", "12:00", None, True, [1], -5, float("nan"), float("inf")]
)
def test_parse_time_refuses_what_is_not_a_time(value: object) -> None:
    assert parse_time(value) is None


def test_slow_path_reads_what_old_pythons_cannot() -> None:
    from bucket_logging._frontends import jsonlines as _jsonlines

    parsed = _jsonlines._parse_iso_slowly("2026-01-02T05:04:05,678123456+02:00")
    assert parsed is not None
    assert parsed.timestamp() == pytest.approx(T + 0.000123, abs=1e-6)
    assert _jsonlines._parse_iso_slowly("2026-13-02") is None
    assert _jsonlines._parse_iso_slowly("nope") is None
    naive = _jsonlines._parse_iso_slowly("2026-01-02 03:04")
    assert naive is not None
    assert naive.tzinfo is timezone.utc


def front(**options: Any) -> tuple[JsonLines, FakeSender]:
    sender = FakeSender()
    return JsonLines(sender=sender, **options), sender


def test_a_tagged_line_is_tracked_with_its_own_timestamp() -> None:
    lines, sender = front()
    assert lines.track(
        {
            "timestamp": "2026-01-02T03:04:05.678Z",
            "event": "sent",
            "bucket_event": "Sent message",
            "user_id": 1,
            "company_id": "acme",
            "bucket_attributes": {"n": 2},
        }
    )
    assert lines.track({"time": T, "message": "who", "bucket_user": {"name": "Ada"}, "user_id": 2})
    assert not lines.track({"event": "untagged", "user_id": 3})
    [event, user] = [item.to_dict() for item in sender.items]
    assert event == {
        "type": "event",
        "event": "Sent message",
        "userId": 1,
        "companyId": "acme",
        "attributes": {"n": 2},
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    assert user["timestamp"] == "2026-01-02T03:04:05.678Z"


def test_rules_match_message_keys_and_logger_keys() -> None:
    rules = [
        {"match": "Report viewed", "event": "Viewed report", "attributes": "*"},
        {"match": "Exported *", "event": "Exported", "logger": "app.export"},
    ]
    lines, sender = front(rules=rules)
    for obj in (
        {"message": "Report viewed", "user_id": 1, "report": "sales", "time": T, "@timestamp": T},
        {"msg": "Exported 3 rows", "logger": "app.export", "user_id": 2},
        {"msg": "Exported 3 rows", "name": "app.export", "user_id": 3},
        {"msg": "Exported 3 rows", "logger_name": "elsewhere", "user_id": 4},
        {"event": {"dataset": "ecs"}, "message": "Report viewed", "user_id": 5},
    ):
        lines.track(obj)
    assert sender.calls == [
        {"type": "event", "event": "Viewed report", "userId": 1, "attributes": {"report": "sales"}},
        {"type": "event", "event": "Exported", "userId": 2},
        {"type": "event", "event": "Exported", "userId": 3},
        {"type": "event", "event": "Viewed report", "userId": 5},
    ]


def test_the_library_own_lines_and_odd_objects_are_not_tracked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines, sender = front()
    assert not lines.track({"logger": "bucket_logging", "bucket_event": "x", "user_id": 1})
    assert not lines.track({"logger": "httpx", "bucket_user": True, "user_id": 1})
    assert lines.track({"timestamp": "soon", "bucket_event": "E", "user_id": 1})
    assert len(sender.items) == 1  # stamped with the time of tracking
    assert any("is not ISO 8601" in r.getMessage() for r in caplog.records)
    assert lines.flush(1.0)


def test_loguru_serialized_lines_are_read_from_their_record() -> None:
    import io
    import json

    from loguru import logger

    out = io.StringIO()
    handler_id = logger.add(out, serialize=True, format="{message}")
    try:
        logger.bind(user_id=7).info("sent {}", 3, bucket_event="Sent message")
        logger.info("Report viewed", user_id=8, report="sales")
    finally:
        logger.remove(handler_id)
    rules = [{"match": "Report viewed", "event": "Viewed report", "logger": "test_json*"}]
    lines, sender = front(rules=rules)
    for text in out.getvalue().splitlines():
        assert lines.track(json.loads(text))
    assert sender.calls == [
        {"type": "event", "event": "Sent message", "userId": 7},
        {"type": "event", "event": "Viewed report", "userId": 8},
    ]
    stamp = json.loads(out.getvalue().splitlines()[0])["record"]["time"]["timestamp"]
    expected = datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds")
    assert sender.items[0].to_dict()["timestamp"] == expected.replace("+00:00", "Z")
    assert not lines.track({"text": "x", "record": "not a dict"})
