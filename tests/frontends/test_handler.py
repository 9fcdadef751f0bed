"""BucketHandler: stdlib records, dictConfig and fileConfig, bridged records, safety."""

from __future__ import annotations

import io
import logging
import logging.config
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from support import FakeSender

from bucket_logging import ConfigurationError, Item
from bucket_logging._frontends.handler import BucketHandler
from bucket_logging._items.item import format_timestamp
from bucket_logging._runtime import diagnostics as _diagnostics
from bucket_logging.testing import capture_tracking


def _strip(call: dict[str, Any]) -> dict[str, Any]:
    call = dict(call)
    call.pop("timestamp", None)
    return call


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and the test loggers back as they were."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    for handler in saved[0]:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved[1])
    for name in ("app", "app.dict", "app.ini", "httpx", "httpcore", "httpcore.http11"):
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.disabled = False


@pytest.fixture
def app(restore_logging: None) -> tuple[logging.Logger, BucketHandler, FakeSender]:
    sender = FakeSender()
    handler = BucketHandler(sender=sender)
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, handler, sender


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


# --------------------------------------------------------------------------- basics


def test_tagged_record_is_tracked_with_record_created(app: Any) -> None:
    logger, _, sender = app
    logger.info("sent", extra={"user_id": 1, "bucket_event": "Sent message"})
    assert sender.calls == [{"type": "event", "event": "Sent message", "userId": 1}]


def test_timestamp_is_record_created(restore_logging: None) -> None:
    sender = FakeSender()
    handler = BucketHandler(sender=sender)
    record = logging.LogRecord("app", logging.INFO, "f.py", 1, "sent", (), None)
    record.created = 1_600_000_000.5
    record.__dict__.update({"user_id": 1, "bucket_event": "E"})
    handler.handle(record)
    assert sender.items[0].to_dict()["timestamp"] == format_timestamp(1_600_000_000.5)


def test_untagged_records_are_ignored(app: Any) -> None:
    logger, _, sender = app
    logger.info("hello %s", "world", extra={"user_id": 1, "plan": "pro"})
    logger.info({"not": "structlog"})
    assert sender.calls == []


def test_ids_from_contextvars(app: Any) -> None:
    logger, _, sender = app
    structlog.contextvars.bind_contextvars(user_id="u9", company_id="c9")
    logger.info("x", extra={"bucket_event": "E", "bucket_company": True})
    assert sender.calls == [
        {"type": "company", "companyId": "c9", "userId": "u9"},
        {"type": "event", "event": "E", "userId": "u9", "companyId": "c9"},
    ]


def test_handle_never_takes_the_lock(app: Any) -> None:
    logger, handler, sender = app

    class NoLock:
        def acquire(self) -> None:
            raise AssertionError("the lock was taken")

        release = acquire

    handler.lock = NoLock()  # type: ignore[assignment]
    logger.info("untagged")
    logger.info("tagged", extra={"user_id": 1, "bucket_event": "E"})
    assert len(sender.calls) == 1
    handler.lock = threading.RLock()


def test_filters_apply(app: Any) -> None:
    logger, handler, sender = app
    handler.addFilter(lambda record: record.getMessage() != "skip me")
    logger.info("skip me", extra={"user_id": 1, "bucket_event": "Skipped"})
    logger.info("keep me", extra={"user_id": 1, "bucket_event": "Kept"})
    assert [c["event"] for c in sender.calls] == ["Kept"]


def test_level_applies(app: Any) -> None:
    logger, handler, sender = app
    handler.setLevel(logging.WARNING)
    logger.info("low", extra={"user_id": 1, "bucket_event": "Low"})
    logger.warning("high", extra={"user_id": 1, "bucket_event": "High"})
    assert [c["event"] for c in sender.calls] == ["High"]


def test_emit_tracks_too(restore_logging: None) -> None:
    sender = FakeSender()
    handler = BucketHandler(sender=sender)
    record = logging.makeLogRecord({"name": "app", "msg": "m", "user_id": 1, "bucket_user": True})
    handler.emit(record)
    assert sender.calls == [{"type": "user", "userId": 1}]


def test_flush_and_close_flush_the_sender(restore_logging: None) -> None:
    sender = FakeSender()
    handler = BucketHandler(sender=sender)
    handler.flush()
    handler.flush(2.5)
    handler.close()
    # no timeout given: bounded by the default (a custom sender has no shutdown_timeout)
    assert sender.flushes == [5.0, 2.5, 5.0]


def test_flush_answers_like_the_processors(restore_logging: None) -> None:
    class Slow(FakeSender):
        def flush(self, timeout: float | None = None) -> bool:
            super().flush(timeout)
            return False  # timed out

    assert BucketHandler(sender=FakeSender()).flush(5) is True
    assert BucketHandler(sender=Slow()).flush(5) is False


def test_close_is_bounded_by_the_senders_shutdown_timeout(restore_logging: None) -> None:
    sender = FakeSender()
    sender.shutdown_timeout = 1.5  # type: ignore[attr-defined]
    BucketHandler(sender=sender).close()
    assert sender.flushes == [1.5]


def test_logging_shutdown_flushes(restore_logging: None) -> None:
    sender = FakeSender()
    handler = BucketHandler(sender=sender)
    logging.shutdown([lambda: handler])  # what atexit does with logging._handlerList
    # flush() and close() both flushed, each bounded by the default (no shutdown_timeout)
    assert sender.flushes == [5.0, 5.0]


def test_flush_errors_are_reported(restore_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeSender):
        def flush(self, timeout: float | None = None) -> bool:
            raise RuntimeError("stuck")

    handler = BucketHandler(sender=Broken())
    handler.close()
    assert any("stuck" in m for m in reports(caplog))


def test_construction_without_a_key_is_offline_unless_a_key_is_required(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="tracking key"):
        BucketHandler(require_key=True)
    assert BucketHandler().sender.offline  # (no key: off, said once)
    handler = BucketHandler(offline=True)
    assert handler.sender is BucketHandler(offline=True).sender
    assert "rule" in repr(handler)


# --------------------------------------------------------------------------- configuration files


def test_dict_config(restore_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "bucket": {
                    "class": "bucket_logging._frontends.handler.BucketHandler",
                    "level": "INFO",
                    "offline": True,
                    "user_id_field": "uid",
                    "rules": [
                        {
                            "match": "User * signed in",
                            "logger": "app.*",
                            "event": "Signed in",
                            "attributes": ["method"],
                        }
                    ],
                }
            },
            "loggers": {"app.dict": {"handlers": ["bucket"], "level": "DEBUG", "propagate": False}},
        }
    )
    logger = logging.getLogger("app.dict")
    [handler] = logger.handlers
    assert isinstance(handler, BucketHandler)
    assert handler.level == logging.INFO
    with capture_tracking() as calls:
        logger.info("User %s signed in", "ada", extra={"uid": 3, "method": "sso"})
        logger.debug("User %s signed in", "ada", extra={"uid": 3})  # below the handler's level
        logger.info("tagged", extra={"uid": 3, "bucket_event": 7})  # reported
    assert [_strip(c) for c in calls] == [
        {"type": "event", "event": "Signed in", "userId": 3, "attributes": {"method": "sso"}}
    ]
    assert any("bucket_event must be the event name" in m for m in reports(caplog))


def test_dict_config_bad_rule_names_the_rule(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="Unable to configure handler 'bucket'") as info:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "bucket": {
                        "class": "bucket_logging._frontends.handler.BucketHandler",
                        "offline": True,
                        "rules": [{"match": "x", "event": "E", "attributes": "oops"}],
                    }
                },
            }
        )
    assert isinstance(info.value.__cause__, ConfigurationError)
    assert "rule #0" in str(info.value.__cause__)


def test_file_config(restore_logging: None, tmp_path: Path) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [loggers]
            keys=root,app

            [handlers]
            keys=bucket

            [formatters]
            keys=

            [logger_root]
            level=WARNING
            handlers=

            [logger_app]
            level=DEBUG
            handlers=bucket
            propagate=0
            qualname=app.ini

            [handler_bucket]
            class=bucket_logging._frontends.handler.BucketHandler
            level=INFO
            args=()
            kwargs={"offline": True, "company_id_field": "org",
                "rules": [{"match": "Exported *", "event": "Exported", "attributes": "*"}]}
            """
        )
    )
    logging.config.fileConfig(ini, disable_existing_loggers=False)
    logger = logging.getLogger("app.ini")
    assert isinstance(logger.handlers[0], BucketHandler)
    with capture_tracking() as calls:
        logger.info("Exported %d rows", 10, extra={"user_id": 1, "org": "o", "fmt": "csv"})
        logger.info("tagged", extra={"user_id": 1, "bucket_user": True})
    assert [_strip(c) for c in calls] == [
        {
            "type": "event",
            "event": "Exported",
            "userId": 1,
            "companyId": "o",
            "attributes": {"fmt": "csv"},
        },
        {"type": "user", "userId": 1},
    ]


# ------------------------------------------------------------------------ handler alone, structlog


def _structlog_into_stdlib(final: Any) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            final,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


@pytest.mark.parametrize(
    "final",
    [structlog.stdlib.ProcessorFormatter.wrap_for_formatter, structlog.stdlib.render_to_log_kwargs],
    ids=["wrap_for_formatter", "render_to_log_kwargs"],
)
def test_handler_alone_reads_structlog_records(app: Any, final: Any) -> None:
    _, _, sender = app
    _structlog_into_stdlib(final)
    structlog.contextvars.bind_contextvars(company_id="acme")
    log = structlog.get_logger("app")
    log.info("signed in", user_id=5, bucket_user={"name": "Ada"}, bucket_event="Signed in")
    log.info("nothing to track", user_id=5)
    assert sender.calls == [
        {"type": "user", "userId": 5, "attributes": {"name": "Ada"}},
        {"type": "event", "event": "Signed in", "userId": 5, "companyId": "acme"},
    ]


def test_handler_rules_match_structlog_event_text(restore_logging: None) -> None:
    sender = FakeSender()
    logger = logging.getLogger("app")
    logger.addHandler(
        BucketHandler(
            sender=sender,
            rules=[{"match": "report *", "logger": "app", "event": "Viewed", "attributes": "*"}],
        )
    )
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _structlog_into_stdlib(structlog.stdlib.ProcessorFormatter.wrap_for_formatter)
    structlog.get_logger("app").info("report viewed", user_id=1, report="q3")
    assert sender.calls == [
        {"type": "event", "event": "Viewed", "userId": 1, "attributes": {"report": "q3"}}
    ]


# --------------------------------------------------------------------------- safety


def test_internal_loggers_are_never_tracked(restore_logging: None) -> None:
    sender = FakeSender()
    root = logging.getLogger()
    root.addHandler(BucketHandler(sender=sender, rules=[{"match": "*", "event": "Any"}]))
    root.setLevel(logging.DEBUG)
    tags = {"user_id": 1, "bucket_event": "E"}
    for name in ("bucket_logging", "bucket_logging.sender", "httpx", "httpcore.http11"):
        logging.getLogger(name).info("internal", extra=tags)
    logging.getLogger("httpxtra").info("app logger with a similar name", extra=tags)
    assert [c["event"] for c in sender.calls] == ["E"]


def test_sender_threads_are_never_tracked(app: Any) -> None:
    logger, _, sender = app

    def on_sender_thread() -> None:
        _diagnostics.internal_threads.add(threading.get_ident())
        try:
            logger.info("from the sender", extra={"user_id": 1, "bucket_event": "E"})
        finally:
            _diagnostics.internal_threads.discard(threading.get_ident())

    thread = threading.Thread(target=on_sender_thread)
    thread.start()
    thread.join()
    assert sender.calls == []


def test_root_at_debug_with_httpx_ships_only_the_app(restore_logging: None) -> None:
    sender = FakeSender()
    root = logging.getLogger()
    root.addHandler(BucketHandler(sender=sender, rules=[{"match": "*", "event": "Any log"}]))
    root.setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"success": True}))
    with httpx.Client(transport=transport) as client:
        client.post("http://tracking.test/key/bulk", json=[])  # httpx logs this at INFO
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("app").info("app line", extra={"user_id": 1})
    assert sender.calls == [{"type": "event", "event": "Any log", "userId": 1}]


def test_log_call_never_raises(restore_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeSender):
        def enqueue(self, item: Item) -> bool:
            raise RuntimeError("enqueue exploded")

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    root = logging.getLogger()
    root.addHandler(BucketHandler(sender=Broken()))
    root.setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logger = logging.getLogger("app")
    logger.info("one", extra={"user_id": 1, "bucket_event": "E"})
    logger.info(
        "two", extra={"user_id": 1, "bucket_event": "E", "bucket_attributes": {"x": Unprintable()}}
    )
    logger.info("three", extra={"user_id": Unprintable(), "bucket_user": Unprintable()})
    logger.info("four", extra={"user_id": 1, "bucket_feedback": {Unprintable(): 1}})
    assert any("enqueue exploded" in m for m in reports(caplog))


def test_broken_record_never_raises(app: Any) -> None:
    _, handler, sender = app
    record = logging.makeLogRecord({"msg": "m", "bucket_event": "E", "user_id": 1})
    del record.created
    handler.handle(record)
    assert sender.calls == []


def test_tagged_value_that_logs_does_not_reenter(app: Any) -> None:
    logger, _, sender = app

    class Chatty:
        def __str__(self) -> str:
            logger.info("inner", extra={"user_id": 2, "bucket_event": "Inner"})
            return "chatty"

    logger.info(
        "outer", extra={"user_id": 1, "bucket_event": "Outer", "bucket_attributes": {"c": Chatty()}}
    )
    assert [c["event"] for c in sender.calls] == ["Outer"]


def test_reports_reach_a_root_bucket_handler_untracked(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    stream = io.StringIO()
    root = logging.getLogger()
    root.addHandler(BucketHandler(sender=sender, rules=[{"match": "*", "event": "Any"}]))
    root.addHandler(logging.StreamHandler(stream))
    logging.getLogger("app").warning("bad", extra={"bucket_event": 1})
    assert sender.calls == []
    assert "bucket_event must be the event name" in stream.getvalue()
