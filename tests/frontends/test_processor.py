"""BucketProcessor in structlog chains, and exactly-once tracking when bridged into logging."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from support import FakeSender

from bucket_logging import ConfigurationError
from bucket_logging._frontends.handler import BucketHandler
from bucket_logging._frontends.processor import BucketProcessor
from bucket_logging._items.item import format_timestamp
from bucket_logging._runtime import diagnostics as _diagnostics


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger at DEBUG; restored afterwards."""
    logger = logging.getLogger()
    saved = (logger.handlers[:], logger.level)
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in logger.handlers[:]:
        if handler not in saved[0]:
            logger.removeHandler(handler)
    logger.setLevel(saved[1])
    quiet = logging.getLogger("app.quiet")
    quiet.setLevel(logging.NOTSET)


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


# --------------------------------------------------------------------------- processor alone


def _alone(processor: BucketProcessor, stream: io.StringIO) -> Any:
    chain: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
    if processor is not None:
        chain.append(processor)
    chain.append(structlog.processors.JSONRenderer(sort_keys=True))
    return structlog.wrap_logger(structlog.WriteLogger(stream), processors=chain)


def test_processor_tracks_and_leaves_the_line_unchanged() -> None:
    # (mark_tracked=False: the default adds "bucket_tracked": true, see test_no_double_tracking)
    sender = FakeSender()
    with_it, without = io.StringIO(), io.StringIO()
    unmarked = BucketProcessor(sender=sender, mark_tracked=False)
    for stream, processor in ((with_it, unmarked), (without, None)):
        log = _alone(processor, stream)  # type: ignore[arg-type]
        log.info("Message sent", bucket_event="Sent message", user_id=42, channel="email")
        log.info("untagged", user_id=42)
    assert with_it.getvalue() == without.getvalue()
    assert json.loads(with_it.getvalue().splitlines()[0])["bucket_event"] == "Sent message"
    assert sender.calls == [{"type": "event", "event": "Sent message", "userId": 42}]


def test_processor_returns_the_same_dict() -> None:
    processor = BucketProcessor(sender=FakeSender())
    event_dict = {"event": "x", "bucket_event": "E", "user_id": 1}
    copy = dict(event_dict)
    assert processor(None, "info", event_dict) is event_dict
    assert event_dict == {**copy, "bucket_tracked": True}  # (the mark: see test_no_double_tracking)
    assert type(event_dict["event"]) is str


def test_processor_ids_from_merged_and_unmerged_contextvars() -> None:
    sender = FakeSender()
    structlog.contextvars.bind_contextvars(user_id="u1", company_id="c1")
    merged = _alone(BucketProcessor(sender=sender), io.StringIO())
    merged.info("a", bucket_event="Merged")
    bare = structlog.wrap_logger(
        structlog.ReturnLogger(), processors=[BucketProcessor(sender=sender), lambda *a: "x"]
    )
    bare.info("b", bucket_event="Looked up")
    assert sender.calls == [
        {"type": "event", "event": "Merged", "userId": "u1", "companyId": "c1"},
        {"type": "event", "event": "Looked up", "userId": "u1", "companyId": "c1"},
    ]


def test_processor_timestamp_is_the_call_time() -> None:
    sender = FakeSender()
    processor = BucketProcessor(sender=sender)
    before = format_timestamp(time.time())
    processor(None, "info", {"event": "x", "bucket_user": True, "user_id": 1})
    after = format_timestamp(time.time())
    assert before <= sender.items[0].to_dict()["timestamp"] <= after


def test_processor_every_tag() -> None:
    sender = FakeSender()
    processor = BucketProcessor(sender=sender)
    processor(
        None,
        "info",
        {
            "event": "signed in",
            "user_id": 1,
            "company_id": 2,
            "bucket_user": {"name": "Ada"},
            "bucket_company": True,
            "bucket_event": "Signed in",
            "bucket_attributes": {"m": "sso"},
            "bucket_feedback": {"feature_id": "f", "score": 5},
            "bucket_active": False,
        },
    )
    assert sender.calls == [
        {"type": "user", "userId": 1, "attributes": {"name": "Ada"}, "context": {"active": False}},
        {"type": "company", "companyId": 2, "userId": 1, "context": {"active": False}},
        {
            "type": "event",
            "event": "Signed in",
            "userId": 1,
            "companyId": 2,
            "attributes": {"m": "sso"},
            "context": {"active": False},
        },
        {"type": "feedback", "featureId": "f", "score": 5, "userId": 1, "companyId": 2},
    ]


def test_processor_rules_use_event_text_and_logger_name(root: logging.Logger) -> None:
    sender = FakeSender()
    rules = [
        {"match": "Export *", "logger": "app.export*", "event": "Exported", "attributes": "*"},
        {"match": "Viewed", "event": "Viewed"},
    ]
    processor = BucketProcessor(sender=sender, rules=rules)
    stdlib_logger = logging.getLogger("app.export.csv")
    processor(
        stdlib_logger, "info", {"event": "Export done", "user_id": 1, "rows": 3, "level": "info"}
    )
    processor(logging.getLogger("web"), "info", {"event": "Export done", "user_id": 1})
    processor(None, "info", {"event": "Export x", "logger": "app.export", "user_id": 1})
    processor(None, "info", {"event": "Viewed", "user_id": 1})
    assert sender.calls == [
        {"type": "event", "event": "Exported", "userId": 1, "attributes": {"rows": 3}},
        {"type": "event", "event": "Exported", "userId": 1},
        {"type": "event", "event": "Viewed", "userId": 1},
    ]


def test_processor_bad_input_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    sender = FakeSender()
    processor = BucketProcessor(sender=sender)
    event_dict = {"event": "x", "user_id": 1, "bucket_user": True, "bucket_event": 3}
    assert processor(None, "info", event_dict) is event_dict
    assert sender.calls == [{"type": "user", "userId": 1}]
    assert any("bucket_event must be the event name" in m for m in reports(caplog))


def test_processor_never_raises_on_odd_input() -> None:
    class OddLogger:
        @property
        def name(self) -> str:
            raise RuntimeError("no name")

    processor = BucketProcessor(sender=FakeSender(), rules=[{"match": "*", "event": "E"}])
    odd: dict[str, Any] = {"event": ["unhashable"], "bucket_event": "E"}
    assert processor(OddLogger(), "info", odd) is odd
    assert processor(None, "info", {}) == {}


def test_processor_skips_sender_threads() -> None:
    sender = FakeSender()
    processor = BucketProcessor(sender=sender)

    def run() -> None:
        _diagnostics.internal_threads.add(threading.get_ident())
        try:
            processor(None, "info", {"event": "x", "user_id": 1, "bucket_event": "E"})
        finally:
            _diagnostics.internal_threads.discard(threading.get_ident())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert sender.calls == []


def test_processor_options() -> None:
    sender = FakeSender()
    processor = BucketProcessor(sender=sender)
    assert processor.flush(1.0) is True
    assert sender.flushes == [1.0]
    assert processor.sender is sender
    assert "0 rule(s)" in repr(processor)
    with pytest.raises(ConfigurationError, match="rule #0"):
        BucketProcessor(sender=sender, rules=[{"match": 1, "event": "E"}])
    offline = BucketProcessor(offline=True)
    assert offline.sender is BucketProcessor(offline=True).sender


# --------------------------------------------------------------------------- bridged: exactly once


Final = Callable[..., Any]
WRAP: Final = structlog.stdlib.ProcessorFormatter.wrap_for_formatter
KWARGS: Final = structlog.stdlib.render_to_log_kwargs
BRIDGES = [
    pytest.param(WRAP, id="wrap_for_formatter"),
    pytest.param(KWARGS, id="render_to_log_kwargs"),
]
if hasattr(structlog.stdlib, "render_to_log_args_and_kwargs"):
    BRIDGES.append(
        pytest.param(
            structlog.stdlib.render_to_log_args_and_kwargs, id="render_to_log_args_and_kwargs"
        )
    )


def _bridge(
    root: logging.Logger,
    final: Final,
    sender: FakeSender,
    *,
    processor_first: bool = True,
    handler_first: bool = True,
    processor_rules: list[dict[str, Any]] | None = None,
    handler_rules: list[dict[str, Any]] | None = None,
) -> io.StringIO:
    """structlog -> stdlib with a BucketProcessor in the chain and a BucketHandler on root."""
    stream = io.StringIO()
    rendering = logging.StreamHandler(stream)
    if final is WRAP:
        rendering.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(sort_keys=True),
                ]
            )
        )
    bucket = BucketHandler(sender=sender, rules=handler_rules)
    for handler in (bucket, rendering) if handler_first else (rendering, bucket):
        root.addHandler(handler)
    processor = BucketProcessor(sender=sender, rules=processor_rules)
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
    ]
    tail: list[Any] = [
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.StackInfoRenderer(),
    ]
    chain += [processor, *tail] if processor_first else [*tail, processor]
    chain.append(final)
    structlog.configure(
        processors=chain,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return stream


@pytest.mark.parametrize("final", BRIDGES)
@pytest.mark.parametrize(
    "processor_first", [True, False], ids=["processor-early", "processor-late"]
)
@pytest.mark.parametrize("handler_first", [True, False], ids=["bucket-first", "bucket-last"])
def test_bridged_events_are_tracked_exactly_once(
    root: logging.Logger, final: Final, processor_first: bool, handler_first: bool
) -> None:
    sender = FakeSender()
    stream = _bridge(
        root, final, sender, processor_first=processor_first, handler_first=handler_first
    )
    structlog.contextvars.bind_contextvars(company_id="acme")
    log = structlog.get_logger("app.sl")
    log.info("signed in", user_id=1, bucket_user={"name": "Ada"}, bucket_event="Signed in")
    log.info("sent %s messages", 3, user_id=1, bucket_event="Sent message")
    log.info("untagged", user_id=1)
    logging.getLogger("app.std").info("plain", extra={"user_id": 2, "bucket_event": "Std event"})
    log.warning("again", user_id=1, bucket_event="Signed in")
    assert sender.events == ["user", "Signed in", "Sent message", "Std event", "Signed in"]
    assert sender.calls[1] == {
        "type": "event",
        "event": "Signed in",
        "userId": 1,
        "companyId": "acme",
    }
    assert sender.calls[3] == {
        "type": "event",
        "event": "Std event",
        "userId": 2,
        "companyId": "acme",
    }
    output = stream.getvalue()
    assert "signed in" in output and "plain" in output
    assert "claim" not in output


@pytest.mark.parametrize("final", BRIDGES)
def test_bridged_rules_are_applied_once(root: logging.Logger, final: Final) -> None:
    sender = FakeSender()
    rule = {"match": "Report *", "event": "Viewed report"}
    _bridge(root, final, sender, processor_rules=[rule], handler_rules=[rule])
    structlog.get_logger("app").info("Report viewed", user_id=1)
    logging.getLogger("app").info("Report printed", extra={"user_id": 1})
    assert sender.events == ["Viewed report", "Viewed report"]


@pytest.mark.parametrize("final", BRIDGES)
def test_handler_rules_apply_to_events_the_processor_left(
    root: logging.Logger, final: Final
) -> None:
    sender = FakeSender()
    _bridge(root, final, sender, handler_rules=[{"match": "Report *", "event": "Viewed report"}])
    structlog.get_logger("app").info("Report viewed", user_id=1)
    assert sender.events == ["Viewed report"]


@pytest.mark.parametrize("final", BRIDGES)
def test_bad_bridged_event_is_reported_once(
    root: logging.Logger, final: Final, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    _bridge(root, final, sender)
    structlog.get_logger("app").info("oops", user_id=1, bucket_event=404)
    assert sender.calls == []
    assert len([m for m in reports(caplog) if "bucket_event must be" in m]) == 1


@pytest.mark.parametrize("final", BRIDGES)
def test_handler_on_a_child_logger_and_root(root: logging.Logger, final: Final) -> None:
    """Two BucketHandlers on the record's path: the claim covers both."""
    sender = FakeSender()
    _bridge(root, final, sender)
    child = logging.getLogger("app")
    child.addHandler(BucketHandler(sender=sender))
    try:
        structlog.get_logger("app.sl").info("x", user_id=1, bucket_event="Once")
        logging.getLogger("app.std").info("y", extra={"user_id": 1, "bucket_event": "Twice"})
    finally:
        child.handlers.clear()
    assert sender.events == ["Once", "Twice", "Twice"]  # plain records: one per handler


@pytest.mark.parametrize("final", BRIDGES)
def test_same_constants_in_a_later_stdlib_call_are_tracked(
    root: logging.Logger, final: Final
) -> None:
    """A stdlib record sharing the objects of a claimed event is not mistaken for it."""
    sender = FakeSender()
    _bridge(root, final, sender)
    message, name, attrs = "Signed in", "Signed in event", {"m": "sso"}
    log = structlog.get_logger("app")
    std = logging.getLogger("app.std")
    log.info(message, user_id=1, bucket_event=name, bucket_attributes=attrs)
    std.info(message, extra={"user_id": 1, "bucket_event": name, "bucket_attributes": attrs})
    logging.getLogger("app.quiet").setLevel(logging.WARNING)
    structlog.get_logger("app.quiet").info(message, user_id=1, bucket_event=name)  # not emitted
    std.info(message, extra={"user_id": 1, "bucket_event": name})
    assert sender.events == [name] * 4


def test_minimal_chain_dropped_event_leaves_no_claim(root: logging.Logger) -> None:
    """Without timestamp or level keys, a claim could match by objects alone."""
    sender = FakeSender()
    root.addHandler(BucketHandler(sender=sender))
    structlog.configure(
        processors=[BucketProcessor(sender=sender), structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    logging.getLogger("app.quiet").setLevel(logging.WARNING)
    message, name, user = "Signed in", "Signed in event", "u-1"
    structlog.get_logger("app.quiet").info(message, user_id=user, bucket_event=name)
    logging.getLogger("app.std").info(message, extra={"user_id": user, "bucket_event": name})
    assert sender.events == [name, name]


def test_processor_in_a_plain_stdlib_chain_without_handler(root: logging.Logger) -> None:
    sender = FakeSender()
    stream = io.StringIO()
    root.addHandler(logging.StreamHandler(stream))
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            BucketProcessor(sender=sender),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.get_logger("app").info("sent", user_id=1, bucket_event="Sent")
    assert sender.events == ["Sent"]
    assert '"bucket_event": "Sent"' in stream.getvalue()


@pytest.mark.parametrize(
    "make_logger",
    [
        lambda: structlog.WriteLogger(io.StringIO()),
        lambda: structlog.PrintLogger(io.StringIO()),
        lambda: structlog.BytesLogger(io.BytesIO()),
        structlog.testing.ReturnLogger,
        structlog.testing.CapturingLogger,
    ],
)
def test_structlog_own_loggers_leave_no_claim(
    root: logging.Logger, make_logger: Callable[[], Any]
) -> None:
    """Their events never become records: a stdlib record on the same thread is tracked."""
    from bucket_logging._tracking import claims as _claims

    sender = FakeSender()
    root.addHandler(BucketHandler(sender=sender))
    logger = make_logger()
    render = (
        (lambda _l, _m, ed: repr(ed).encode())
        if isinstance(logger, structlog.BytesLogger)
        else structlog.processors.JSONRenderer()
    )
    chain = [BucketProcessor(sender=sender), render]
    log = structlog.wrap_logger(logger, processors=chain)
    attrs = {"m": "sso"}
    log.info("Signed in", user_id=1, bucket_event="Signed in", bucket_attributes=attrs)
    assert _claims.local.claim is None
    logging.getLogger("app.std").info(
        "Signed in", extra={"user_id": 1, "bucket_event": "Signed in", "bucket_attributes": attrs}
    )
    assert sender.events == ["Signed in", "Signed in"]


def test_a_custom_logger_is_claimed(root: logging.Logger) -> None:
    """A logger of unknown kind may hand the event to logging: the event is claimed."""
    from bucket_logging._tracking import claims as _claims

    class Custom:
        def info(self, *args: Any, **kwargs: Any) -> None:
            pass

    sender = FakeSender()
    log = structlog.wrap_logger(Custom(), processors=[BucketProcessor(sender=sender)])
    log.info("Signed in", user_id=1, bucket_event="Signed in")
    claim = _claims.local.claim
    assert claim is not None and claim[1] == "Signed in"
    _claims.release_claim()
