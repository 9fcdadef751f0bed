"""BucketLogRecordProcessor in a real OpenTelemetry SDK LoggerProvider: stdlib logging
through OpenTelemetry's LoggingHandler and the Logs API, delivered to a real local
tracking server reached by localhost and 127.0.0.1."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _helpers import FakeSender, _fresh_rate_limits
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

from bucket_logging import TrackingServer, _process
from bucket_logging.otel import BucketLogRecordProcessor

__all__ = ["_fresh_rate_limits"]

TIMEOUT = 20.0


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture(params=["localhost", "127.0.0.1"])
def url(request: pytest.FixtureRequest, server: TrackingServer) -> Iterator[str]:
    base = f"http://{request.param}:{server.port}"
    yield base
    for sender in list(_process.state.live):
        if sender.base_url == base:
            sender.close(timeout=2.0)


@pytest.fixture
def key() -> str:
    return f"trOtel{uuid.uuid4().hex[:12]}"


@pytest.fixture
def provider() -> Iterator[LoggerProvider]:
    provider = LoggerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


class Created(logging.Handler):
    """Keeps the records it sees (their ``created`` times)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def otel_handler(kind: str, provider: LoggerProvider) -> logging.Handler:
    """OpenTelemetry's stdlib logging handler: the SDK's (deprecated since SDK 1.40) or
    the one of ``opentelemetry-instrumentation-logging`` that replaces it."""
    if kind == "instrumentation":
        from opentelemetry.instrumentation.logging.handler import LoggingHandler as Handler

        return Handler(logger_provider=provider)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(logger_provider=provider)


@pytest.fixture(params=["sdk", "instrumentation"])
def stdlib(
    request: pytest.FixtureRequest, provider: LoggerProvider
) -> Iterator[tuple[logging.Logger, Created]]:
    """A logger whose records go through OpenTelemetry's LoggingHandler."""
    log = logging.getLogger(f"app.otel{uuid.uuid4().hex[:6]}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = otel_handler(request.param, provider)
    created = Created()
    log.addHandler(handler)
    log.addHandler(created)
    yield log, created
    log.removeHandler(handler)
    log.removeHandler(created)


def ms(created: float) -> str:
    """A record's ``created`` as the item's timestamp (UTC, milliseconds)."""
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(created, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_stdlib_logging_through_the_logging_handler_arrives_once_with_ids_attributes_time(
    server: TrackingServer,
    url: str,
    key: str,
    provider: LoggerProvider,
    stdlib: tuple[logging.Logger, Created],
) -> None:
    log, created = stdlib
    processor = BucketLogRecordProcessor(key, base_url=url)
    provider.add_log_record_processor(processor)
    for i in range(40):
        log.info(
            "user %s signed in",
            i,
            extra={
                "bucket_event": "Signed in",
                "user_id": i,
                "company_id": "acme",
                "bucket_attributes": {"plan": "pro", "n": i, "tags": ["a", "b"]},
            },
        )
    log.info("profile", extra={"user_id": 7, "bucket_user": {"name": "Ada"}})
    log.info("flat", extra={"user_id": 8, "bucket_event": "Upgraded", "bucket_attributes.seats": 5})
    log.info("not tracked", extra={"user_id": 9})
    assert provider.force_flush(int(TIMEOUT * 1000))
    assert server.wait_for(42, TIMEOUT)
    calls = server.calls
    assert len(calls) == 42
    for i, call in enumerate(calls[:40]):
        assert call == {
            "type": "event",
            "event": "Signed in",
            "userId": i,
            "companyId": "acme",
            "attributes": {"plan": "pro", "n": i, "tags": ["a", "b"]},
            "timestamp": ms(created.records[i].created),
        }
    assert calls[40] == {
        "type": "user",
        "userId": 7,
        "attributes": {"name": "Ada"},
        "timestamp": ms(created.records[40].created),
    }
    assert calls[41]["event"] == "Upgraded"
    assert calls[41]["attributes"] == {"seats": 5}


def test_the_logs_api_directly(
    server: TrackingServer, url: str, key: str, provider: LoggerProvider
) -> None:
    from opentelemetry._logs import LogRecord

    provider.add_log_record_processor(
        BucketLogRecordProcessor(key, base_url=url, user_id_field="user.id")
    )
    otel_logger = provider.get_logger("app.billing")
    t_ns = 1_767_323_045_678_000_000
    otel_logger.emit(
        LogRecord(
            timestamp=t_ns,
            body="invoice paid",
            attributes={
                "bucket_event": "Paid invoice",
                "user.id": "u-1",
                "bucket_attributes.amount": 12.5,
            },
        )
    )
    otel_logger.emit(  # no timestamp: the observed time
        body="plan changed",
        attributes={"bucket_company": True, "user.id": "u-2", "company_id": "c-2"},
    )
    otel_logger.emit(body="no tags", attributes={"user.id": "u-3"})
    processor_flushed = provider.force_flush(int(TIMEOUT * 1000))
    assert processor_flushed
    calls = server.calls
    assert calls[0] == {
        "type": "event",
        "event": "Paid invoice",
        "userId": "u-1",
        "attributes": {"amount": 12.5},
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    assert {k: v for k, v in calls[1].items() if k != "timestamp"} == {
        "type": "company",
        "companyId": "c-2",
        "userId": "u-2",
    }
    assert len(calls) == 2


def test_rules_match_the_formatted_body_and_the_scope_name(
    server: TrackingServer,
    url: str,
    key: str,
    provider: LoggerProvider,
    stdlib: tuple[logging.Logger, Created],
) -> None:
    log, _ = stdlib
    rules = [
        {"match": "User * signed in", "event": "Signed in", "logger": "app.otel*"},
        {"match": "Report viewed", "event": "Viewed report", "attributes": ["report"]},
        {"match": "Exported", "event": "Exported", "logger": "elsewhere"},
    ]
    provider.add_log_record_processor(BucketLogRecordProcessor(key, base_url=url, rules=rules))
    log.info("User %s signed in", "ada", extra={"user_id": 1})
    log.info("Report viewed", extra={"user_id": 2, "report": "sales"})
    log.info("Exported", extra={"user_id": 3})  # the rule's logger does not match
    log.info("Something else", extra={"user_id": 4})
    assert provider.force_flush(int(TIMEOUT * 1000))
    assert [{k: v for k, v in c.items() if k != "timestamp"} for c in server.calls] == [
        {"type": "event", "event": "Signed in", "userId": 1},
        {"type": "event", "event": "Viewed report", "userId": 2, "attributes": {"report": "sales"}},
    ]


def test_shutdown_delivers_what_is_queued(
    server: TrackingServer, url: str, key: str, stdlib: tuple[logging.Logger, Created]
) -> None:
    provider = LoggerProvider(shutdown_on_exit=False)
    log, _ = stdlib
    handler = otel_handler("instrumentation", provider)
    log.addHandler(handler)
    try:
        provider.add_log_record_processor(BucketLogRecordProcessor(key, base_url=url))
        for i in range(10):
            log.info("sent", extra={"bucket_event": "Sent", "user_id": i})
        provider.shutdown()
    finally:
        log.removeHandler(handler)
    assert sorted(c["userId"] for c in server.calls) == list(range(10))


def test_on_emit_never_raises_and_invalid_tags_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = FakeSender()
    processor = BucketLogRecordProcessor(sender=sender)

    class Broken:
        @property
        def log_record(self) -> Any:
            raise RuntimeError("boom")

    processor.on_emit(Broken())
    processor.on_emit(None)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    otel_logger = provider.get_logger("app")
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        otel_logger.emit(body="bad", attributes={"bucket_event": 5, "user_id": 1})
        otel_logger.emit(body="good", attributes={"bucket_event": "Good", "user_id": 1})
    assert sender.events == ["Good"]
    assert "bucket_event must be the event name" in caplog.text
    assert processor.force_flush(1000)
    provider.shutdown()


def test_the_librarys_own_records_are_not_tracked() -> None:
    sender = FakeSender()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BucketLogRecordProcessor(sender=sender))
    provider.get_logger("bucket_logging").emit(
        body="x", attributes={"bucket_event": "Own", "user_id": 1}
    )
    provider.get_logger("bucket_logging.sender").emit(
        body="x", attributes={"bucket_event": "Own", "user_id": 1}
    )
    assert sender.items == []
    provider.shutdown()


def test_sdk_values_become_plain_values() -> None:
    sender = FakeSender()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BucketLogRecordProcessor(sender=sender))
    provider.get_logger("app").emit(
        body={"event": "structured", "user_id": 3},
        attributes={
            "bucket_event": "Structured",
            "bucket_attributes": {"list": (1, 2), "nested": {"b": b"\x01"}},
        },
    )
    assert sender.calls == [
        {
            "type": "event",
            "event": "Structured",
            "userId": 3,
            "attributes": {"list": [1, 2], "nested": {"b": "AQ=="}},
        }
    ]
    provider.shutdown()


def test_importing_bucket_logging_does_not_import_opentelemetry() -> None:
    program = (
        "import sys, bucket_logging, bucket_logging._otlp, bucket_logging._jsonlines\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'google'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], check=True, capture_output=True, text=True
    )
    assert done.stdout.strip() == "[]"


def test_an_untagged_record_without_a_matching_rule_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cheap first step: no ``bucket_*`` key and no rule (or a template no rule
    matches, cached) costs a scan of the keys; the fields are never built."""
    from bucket_logging import otel

    built: list[dict[str, Any]] = []

    def spy(*args: Any) -> dict[str, Any]:
        fields = otel_record_fields(*args)
        built.append(fields)
        return fields

    otel_record_fields = otel.record_fields
    monkeypatch.setattr(otel, "record_fields", spy)
    sender = FakeSender()
    plain = BucketLogRecordProcessor(sender=sender)
    ruled = BucketLogRecordProcessor(
        sender=sender, rules=[{"match": "Report viewed", "event": "Viewed report"}]
    )
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(plain)
    provider.add_log_record_processor(ruled)
    otel_logger = provider.get_logger("app")
    for _ in range(3):
        otel_logger.emit(body="Something else", attributes={"user_id": 1, "n": 2})
    # plain: never; ruled: until the template is known to match no rule
    assert len(built) == 1
    otel_logger.emit(body="Report viewed", attributes={"user_id": 1})
    otel_logger.emit(body="x", attributes={"bucket_event": "E", "user_id": 1})
    assert sender.events == ["Viewed report", "E", "E"]
    provider.shutdown()


def test_sdk_values_of_every_kind_become_plain() -> None:
    import enum
    from collections import OrderedDict

    from bucket_logging._otlp import MAX_DEPTH, plain_value

    class Level(enum.IntEnum):
        HIGH = 3

    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert plain_value(OrderedDict(a=(1, b"\x02")), 0) == {"a": [1, "Ag=="]}
    assert plain_value({1: bytearray(b"\x03")}, 0) == {"1": "Aw=="}
    assert plain_value(Level.HIGH, 0) == 3
    assert plain_value(Thing(), 0) == "thing"
    assert plain_value([1], MAX_DEPTH) is None


def test_older_sdks_hand_over_log_data_through_emit() -> None:
    """SDKs before ``on_emit`` call ``emit(LogData)``: it holds the same two parts."""
    from types import SimpleNamespace

    sender = FakeSender()
    processor = BucketLogRecordProcessor(sender=sender)
    log_record = SimpleNamespace(
        attributes={"bucket_event": "Old", "user_id": 1, "bucket_attributes.n": 2},
        body="old sdk",
        timestamp=1_767_323_045_678_000_000,
        observed_timestamp=0,
    )
    processor.emit(
        SimpleNamespace(log_record=log_record, instrumentation_scope=SimpleNamespace(name="a"))
    )
    assert sender.calls == [{"type": "event", "event": "Old", "userId": 1, "attributes": {"n": 2}}]
    assert sender.items[0].to_dict()["timestamp"] == "2026-01-02T03:04:05.678Z"
