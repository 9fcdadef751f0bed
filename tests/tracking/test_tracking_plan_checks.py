"""Every call checked against the tracking plan, on the one tracking path: each kind of
violation and each action (report, strip, drop) through each front end (stdlib,
structlog, loguru, the OpenTelemetry processor, ``track()``, the JSON lines of ``ship``
and ``relay``); counted in ``stats.plan_violations``, reported once per distinct problem
with the event, the attribute and the log call's place; never an exception."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger as loguru_logger

from bucket_logging import (
    BucketHandler,
    BucketProcessor,
    BulkSender,
    LoguruSink,
    track,
)
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging.testing import capture_tracking

PLANS = Path(__file__).parent / "plan_data"
PLAN = str(PLANS / "tracking-plan.yaml")
ITEM = "report_0a1b2c"

Emit = Callable[[dict[str, Any]], None]


def _stdlib(sender: BulkSender) -> Iterator[Emit]:
    log = logging.getLogger(f"app.plan{uuid.uuid4().hex[:6]}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = BucketHandler(sender=sender, tracking_plan=PLAN)
    log.addHandler(handler)
    yield lambda fields: log.info("the call", extra=fields)
    log.removeHandler(handler)


def _structlog(sender: BulkSender) -> Iterator[Emit]:
    processor = BucketProcessor(sender=sender, tracking_plan=PLAN)
    yield lambda fields: processor(None, "info", {"event": "the call", **fields})


def _loguru(sender: BulkSender) -> Iterator[Emit]:
    sink_id = loguru_logger.add(LoguruSink(sender=sender, tracking_plan=PLAN))
    yield lambda fields: loguru_logger.bind(**fields).info("the call")
    loguru_logger.remove(sink_id)


def _otel(sender: BulkSender) -> Iterator[Emit]:
    from opentelemetry.sdk._logs import LoggerProvider

    from bucket_logging.otel import BucketLogRecordProcessor

    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BucketLogRecordProcessor(sender=sender, tracking_plan=PLAN))
    otel = provider.get_logger("app.plan")
    yield lambda fields: otel.emit(body="the call", attributes=fields)
    provider.shutdown()


def _track(sender: BulkSender) -> Iterator[Emit]:
    def emit(fields: dict[str, Any]) -> None:
        track(
            fields.get("bucket_event"),
            user_id=fields.get("user_id"),
            company_id=fields.get("company_id"),
            attributes=fields.get("bucket_attributes"),
            user=fields.get("bucket_user"),
            company=fields.get("bucket_company"),
            sender=sender,
            tracking_plan=PLAN,
        )

    yield emit


def _jsonlines(sender: BulkSender) -> Iterator[Emit]:
    lines = JsonLines(sender=sender, tracking_plan=PLAN)
    yield lambda fields: lines.track({"event": "the call", **fields})


FRONT_ENDS = {
    "stdlib": _stdlib,
    "structlog": _structlog,
    "loguru": _loguru,
    "otel": _otel,
    "track": _track,
    "jsonlines": _jsonlines,
}


@pytest.fixture(params=sorted(FRONT_ENDS))
def front(
    request: pytest.FixtureRequest, make_sender: Callable[..., BulkSender]
) -> Iterator[tuple[Emit, BulkSender]]:
    sender = make_sender(offline=True)
    emitters = FRONT_ENDS[request.param](sender)
    yield next(emitters), sender
    next(emitters, None)


def _event(name: str, **attributes: Any) -> dict[str, Any]:
    return {"bucket_event": name, "user_id": "u-1", "bucket_attributes": attributes}


VIEWED = {"item_id": ITEM, "source": "web"}

#: Each kind of violation: the fields of a call, the attribute named.
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "unplanned_event": (_event("Report exportd", **VIEWED), None),
    "missing_attribute": (_event("Report viewed", source="web"), "item_id"),
    "wrong_type": (_event("Report viewed", **VIEWED, first_view="yes"), "first_view"),
    "invalid_value": (_event("Report viewed", item_id=ITEM, source="desktop"), "source"),
    "unexpected_attribute": (_event("Report viewed", **VIEWED, colour="red"), "colour"),
    "unplanned_user_attribute": (
        {"user_id": "u-1", "bucket_user": {"name": "Ada", "shoe_size": 42}},
        "shoe_size",
    ),
    "unplanned_company_attribute": (
        {"user_id": "u-1", "company_id": "c-1", "bucket_company": {"plan": "pro", "mascot": "cat"}},
        "mascot",
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_of_violation_is_counted_and_reported_with_its_place(
    front: tuple[Emit, BulkSender], lines: list[str], kind: str
) -> None:
    emit, sender = front
    fields, attribute = CASES[kind]
    emit(fields)
    emit(fields)  # the same problem twice: reported once, counted twice
    sender.flush(5)
    assert sender.stats.plan_violations == {kind: 2}
    said = [line for line in lines if "Tracking plan" in line]
    assert len(said) == 1, said
    # the log call's place: its logger and message (track(): "track" and the event)
    assert "message 'the call'" in said[0] or "logger 'track'" in said[0]
    if attribute is not None:
        assert f"attribute {attribute!r}" in said[0]
    assert said[0].endswith("; sent")
    assert sender.stats.offline == 2  # report: sent as it is


def test_an_unplanned_event_one_edit_away_is_named_as_a_likely_typo(
    front: tuple[Emit, BulkSender], lines: list[str]
) -> None:
    emit, _ = front
    with capture_tracking() as calls:
        emit(_event("Report Viewed", **VIEWED))
        emit(_event("Report vieved", **VIEWED))
    assert [c["event"] for c in calls] == ["Report Viewed", "Report vieved"]
    said = [line for line in lines if "Tracking plan" in line]
    assert len(said) == 2
    assert all("likely typo of 'Report viewed'" in line for line in said)


def test_strip_sends_the_call_without_its_unexpected_attributes(
    front: tuple[Emit, BulkSender], lines: list[str]
) -> None:
    emit, sender = front
    with capture_tracking() as calls:  # "Report exported": action strip
        emit(_event("Report exported", item_id=ITEM, source="web", format="csv", colour="red"))
    assert [c["attributes"] for c in calls] == [{"item_id": ITEM, "source": "web", "format": "csv"}]
    assert sender.stats.plan_violations == {"unexpected_attribute": 1}
    assert any(line.endswith("sent without it") for line in lines)


def test_drop_does_not_send_a_call_that_breaks_the_plan(
    front: tuple[Emit, BulkSender], lines: list[str]
) -> None:
    emit, sender = front
    with capture_tracking() as calls:  # "Invoice deleted": action drop
        emit(_event("Invoice deleted", item_id="invoice_00ff00", source="web", colour="red"))
        emit(_event("Invoice deleted", item_id="invoice_00ff00", source="web"))
    assert [c["attributes"] for c in calls] == [{"item_id": "invoice_00ff00", "source": "web"}]
    stats = sender.stats
    assert stats.plan_violations == {"unexpected_attribute": 1}
    assert stats.refused == {"plan_violation": 1}
    assert any(line.endswith("not sent") for line in lines)


def test_a_planned_call_is_sent_untouched_and_not_reported(
    front: tuple[Emit, BulkSender], lines: list[str]
) -> None:
    emit, sender = front
    fields = _event("Report viewed", **VIEWED, first_view=True, duration_ms=12)
    with capture_tracking() as calls:
        emit(fields)
    emit(fields)
    sender.flush(5)
    assert [c["attributes"] for c in calls] == [fields["bucket_attributes"]]
    assert sender.stats.plan_violations == {}
    assert not [line for line in lines if "Tracking plan" in line]


def test_a_call_that_fails_the_quick_verdict_is_encoded_once(
    front: tuple[Emit, BulkSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bucket_logging._tracking import tracker

    encoded: list[str] = []
    for name in ("event_body", "encode"):
        real = getattr(tracker, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            encoded.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(tracker, name, counting)
    emit, sender = front
    emit(_event("Report viewed", item_id=ITEM, source="desktop"))  # invalid_value: report
    sender.flush(5)
    assert sender.stats.plan_violations == {"invalid_value": 1}
    assert sender.stats.offline == 1  # sent as it is
    assert len(encoded) == 1, encoded


def test_odd_values_never_raise_from_the_log_call(front: tuple[Emit, BulkSender]) -> None:
    emit, sender = front

    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __str__(self) -> str:  # (OpenTelemetry's SDK makes its attributes strings)
            return "odd"

    emit(_event("Report viewed", item_id=Odd(), source=["web"]))
    emit({"user_id": "u-1", "bucket_user": {"name": Odd()}})
    sender.flush(5)


@pytest.mark.parametrize(
    ("feedback", "kind"),
    [
        ({"feature_id": "export", "score": 9}, "invalid_value"),  # 1 to 5
        ({"feature_id": "export", "comment": "no score"}, "missing_attribute"),
        ({"feature_id": "export", "score": 4, "prompted_question": "Why?"}, None),
        ({"feature_id": 7, "score": 4}, "wrong_type"),
    ],
)
def test_what_feedback_may_carry(
    make_sender: Callable[..., BulkSender], feedback: dict[str, Any], kind: str | None
) -> None:
    sender = make_sender(offline=True)
    emitters = _stdlib(sender)
    emit = next(emitters)
    emit({"user_id": "u-1", "bucket_feedback": feedback})
    assert sender.stats.plan_violations == ({kind: 1} if kind else {})
    next(emitters, None)


def test_a_plan_that_allows_no_feedback(
    make_sender: Callable[..., BulkSender], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"events": {}, "feedback": false}')
    sender = make_sender(offline=True)
    handler = BucketHandler(sender=sender, tracking_plan=plan)
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "rated", (), None)
    record.__dict__.update({"user_id": "u", "bucket_feedback": {"feature_id": "x", "score": 3}})
    handler.handle(record)
    assert sender.stats.plan_violations == {"unplanned_feedback": 1}
