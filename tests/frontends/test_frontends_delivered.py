"""The logging front ends against a real local tracking server, delivery asserted.

The unit tests (test_handler.py, test_processor.py, test_tracker.py) use fake
senders. Here every front end runs with a real sender talking HTTP to a
:class:`~bucket_logging.TrackingServer`, and every assertion is on what the server
received once the sender was flushed: each tag, id resolution, dictConfig and
fileConfig entries, the structlog chain, the bridged set-ups (exactly once), rules,
bad input, and the root-DEBUG-with-httpx and ``logging.shutdown()`` cases in
subprocesses.

Each test has its own server and its own tracking key, so ``get_sender``'s shared
registry never mixes tests; the senders are closed when the test ends. Nothing
sleeps: the tests wait on ``flush`` / ``wait_for`` / ``join`` with generous
timeouts.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
from support import Scripts, free_port

from bucket_logging import BucketHandler, BucketProcessor, TrackingServer
from bucket_logging._runtime import state as _process

#: Seconds any wait may take: generous, the machine is small and shared.
TIMEOUT = 20.0

WRAP = structlog.stdlib.ProcessorFormatter.wrap_for_formatter
KWARGS = structlog.stdlib.render_to_log_kwargs


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    # restarted on its port by some tests: off the ephemeral range, so it stays free
    with TrackingServer(port=free_port()) as srv:
        yield srv


@pytest.fixture
def key(server: TrackingServer) -> Iterator[str]:
    """A tracking key of this test alone; its senders are closed at the end."""
    yield f"trIntegration{uuid.uuid4().hex[:12]}"
    for sender in list(_process.state.live):
        if sender.base_url == server.url:
            sender.close(timeout=2.0)


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    """Put the root logger, the ``it.*`` loggers and structlog back as they were."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    for handler in root.handlers[:]:
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in saved_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved_level)
    for name in list(logging.root.manager.loggerDict):
        if name == "it" or name.startswith("it."):
            logger = logging.getLogger(name)
            for handler in logger.handlers[:]:
                logger.removeHandler(handler)
                handler.close()
            logger.filters.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
            logger.disabled = False
    logging.getLogger("bucket_logging").disabled = False


# --------------------------------------------------------------------------- helpers


class Recorder(logging.Handler):
    """Keeps the records it sees (to read their ``created``)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def app_logger(name: str, *handlers: logging.Handler) -> logging.Logger:
    """A test logger at DEBUG with only ``handlers``, not propagating to root."""
    logger = logging.getLogger(name)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def flushed(server: TrackingServer, front_end: BucketHandler | BucketProcessor) -> list[Any]:
    """Flush the front end's sender; the calls the server accepted."""
    assert front_end.sender.flush(TIMEOUT), "the queue was not delivered in time"
    return server.calls


def stripped(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in call.items() if k != "timestamp"} for call in calls]


def canon(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls without timestamps, in a stable order (batches may race)."""
    return sorted(stripped(calls), key=lambda call: json.dumps(call, sort_keys=True))


def iso_ms(created: float) -> str:
    """``created`` as the API's timestamp: UTC, millisecond precision (truncated)."""
    text = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bucket_logging"]


def guarded(call: Callable[[], object], what: str, timeout: float = TIMEOUT) -> float:
    """Run ``call`` on a thread; fail (instead of hanging) if it does not return.

    Returns the seconds it took. Exceptions of ``call`` are re-raised here.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"guarded {what}", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"{what} did not return within {timeout} s (deadlock?)"
    if errors:
        raise errors[0]
    return took


# --------------------------------------------------------------------------- 1. tags


def test_each_tag_is_delivered(server: TrackingServer, key: str) -> None:
    handler = BucketHandler(key, base_url=server.url)
    log = app_logger("it.tags", handler)
    feedback = {
        "feature_id": "f1",
        "score": 4,
        "comment": "nice",
        "question": "How do you like it?",
        "prompted_question": "Do you like it?",
        "source": "widget",
        "prompt_id": "prompt-0001",
        "feedback_id": "fb-1",
    }
    log.info(
        "sent",
        extra={
            "user_id": 1,
            "bucket_event": "Sent message",
            "bucket_attributes": {"position": "popover", "count": 2},
        },
    )
    log.info("profile", extra={"user_id": 2, "bucket_user": {"name": "Ada", "plan": "pro"}})
    log.info("seen", extra={"user_id": 3, "bucket_user": True})
    log.info("org", extra={"user_id": 4, "company_id": "acme", "bucket_company": {"seats": 5}})
    log.info("rated", extra={"user_id": 5, "company_id": "acme", "bucket_feedback": feedback})
    log.info(
        "background sync",
        extra={
            "user_id": 6,
            "company_id": "beta",
            "bucket_active": False,
            "bucket_user": True,
            "bucket_company": True,
            "bucket_event": "Synced",
        },
    )
    log.info("untagged", extra={"user_id": 7, "plan": "pro"})

    calls = flushed(server, handler)
    inactive = {"active": False}
    assert canon(calls) == canon(
        [
            {
                "type": "event",
                "event": "Sent message",
                "userId": 1,
                "attributes": {"position": "popover", "count": 2},
            },
            {"type": "user", "userId": 2, "attributes": {"name": "Ada", "plan": "pro"}},
            {"type": "user", "userId": 3},
            {"type": "company", "companyId": "acme", "userId": 4, "attributes": {"seats": 5}},
            {
                "type": "feedback",
                "featureId": "f1",
                "score": 4,
                "comment": "nice",
                "question": "How do you like it?",
                "promptedQuestion": "Do you like it?",
                "source": "widget",
                "promptId": "prompt-0001",
                "feedbackId": "fb-1",
                "userId": 5,
                "companyId": "acme",
            },
            {"type": "user", "userId": 6, "context": inactive},
            {"type": "company", "companyId": "beta", "userId": 6, "context": inactive},
            {
                "type": "event",
                "event": "Synced",
                "userId": 6,
                "companyId": "beta",
                "context": inactive,
            },
        ]
    )
    assert all(r.kind == "bulk" and r.status == 200 for r in server.requests)


def test_one_record_makes_user_company_and_event_stamped_with_record_created(
    server: TrackingServer, key: str
) -> None:
    handler = BucketHandler(key, base_url=server.url)
    seen = Recorder()
    log = app_logger("it.signin", seen, handler)
    log.info(
        "User %s signed in",
        "ada",
        extra={
            "user_id": "u1",
            "company_id": "acme",
            "bucket_user": {"name": "Ada"},
            "bucket_company": {"name": "Acme"},
            "bucket_event": "Signed in",
        },
    )
    # A record from the past: the timestamp is the record's, not the send time.
    past = logging.getLogger("it.signin.past")
    past.addFilter(_set_created(1_600_000_000.123456))
    past.info("late", extra={"user_id": "u2", "bucket_event": "Imported"})

    calls = flushed(server, handler)
    assert canon(calls) == canon(
        [
            {"type": "user", "userId": "u1", "attributes": {"name": "Ada"}},
            {
                "type": "company",
                "companyId": "acme",
                "userId": "u1",
                "attributes": {"name": "Acme"},
            },
            {"type": "event", "event": "Signed in", "userId": "u1", "companyId": "acme"},
            {"type": "event", "event": "Imported", "userId": "u2"},
        ]
    )
    signin_record = seen.records[0]
    signin = {c["timestamp"] for c in calls if c["userId"] == "u1"}
    assert signin == {iso_ms(signin_record.created)}
    [imported] = [c for c in calls if c["userId"] == "u2"]
    assert imported["timestamp"] == "2020-09-13T12:26:40.123Z"


def _set_created(created: float) -> Callable[[logging.LogRecord], bool]:
    def set_created(record: logging.LogRecord) -> bool:
        record.created = created
        return True

    return set_created


# --------------------------------------------------------------------------- 2. ids


def test_one_contextvars_binding_serves_the_handler_and_the_processor(
    server: TrackingServer, key: str
) -> None:
    handler = BucketHandler(key, base_url=server.url)
    log = app_logger("it.ids", handler)
    processor = BucketProcessor(key, base_url=server.url)
    assert processor.sender is handler.sender  # one key and URL, one sender
    stream = io.StringIO()
    slog = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[
            structlog.contextvars.merge_contextvars,
            processor,
            structlog.processors.JSONRenderer(),
        ],
    )
    user = uuid.UUID("12345678-1234-5678-1234-567812345678")

    structlog.contextvars.bind_contextvars(user_id="u-ctx", company_id="c-ctx")  # middleware
    log.info("stdlib", extra={"bucket_event": "From stdlib"})
    slog.info("structlog", bucket_event="From structlog")
    log.info("record first", extra={"user_id": 7, "bucket_event": "Record id"})
    slog.info("record first", user_id=user, bucket_event="Record id (structlog)")
    structlog.contextvars.clear_contextvars()
    log.info("no context", extra={"user_id": 8, "bucket_user": True})

    assert canon(flushed(server, handler)) == canon(
        [
            {"type": "event", "event": "From stdlib", "userId": "u-ctx", "companyId": "c-ctx"},
            {"type": "event", "event": "From structlog", "userId": "u-ctx", "companyId": "c-ctx"},
            {"type": "event", "event": "Record id", "userId": 7, "companyId": "c-ctx"},
            {
                "type": "event",
                "event": "Record id (structlog)",
                "userId": str(user),
                "companyId": "c-ctx",
            },
            {"type": "user", "userId": 8},
        ]
    )
    assert len(stream.getvalue().splitlines()) == 2  # the structlog lines were rendered


def test_configurable_id_field_names(server: TrackingServer, key: str) -> None:
    fields = {"user_id_field": "uid", "company_id_field": "org"}
    handler = BucketHandler(key, base_url=server.url, **fields)
    log = app_logger("it.fields", handler)
    processor = BucketProcessor(key, base_url=server.url, **fields)
    slog = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[
            structlog.contextvars.merge_contextvars,
            processor,
            structlog.processors.KeyValueRenderer(),
        ],
    )
    log.info(
        "from the record",
        extra={"uid": 9, "org": "o1", "user_id": "not-this", "bucket_event": "Record fields"},
    )
    structlog.contextvars.bind_contextvars(uid="ctx-uid", org="ctx-org", user_id="not-this")
    log.info("from the context", extra={"bucket_event": "Context fields"})
    slog.info("from the context", bucket_event="Context fields (structlog)")
    log.info("default name ignored", extra={"user_id": 1, "bucket_user": True})  # uid: ctx-uid

    assert canon(flushed(server, handler)) == canon(
        [
            {"type": "event", "event": "Record fields", "userId": 9, "companyId": "o1"},
            {
                "type": "event",
                "event": "Context fields",
                "userId": "ctx-uid",
                "companyId": "ctx-org",
            },
            {
                "type": "event",
                "event": "Context fields (structlog)",
                "userId": "ctx-uid",
                "companyId": "ctx-org",
            },
            {"type": "user", "userId": "ctx-uid"},
        ]
    )


# --------------------------------------------------------------------------- 3. config files


def _dict_config(key: str, url: str, **options: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "bucket": {
                "class": "bucket_logging.BucketHandler",
                "tracking_key": key,
                "base_url": url,
                "level": "INFO",
                "user_id_field": "uid",
                "rules": [
                    {
                        "match": "User * signed in",
                        "logger": "it.dict*",
                        "event": "Signed in",
                        "attributes": ["method"],
                    }
                ],
                **options,
            }
        },
        "loggers": {"it.dict": {"handlers": ["bucket"], "level": "DEBUG", "propagate": False}},
    }


def _bucket_handler(logger_name: str) -> BucketHandler:
    [handler] = logging.getLogger(logger_name).handlers
    assert isinstance(handler, BucketHandler)
    return handler


def test_dict_config_with_a_real_key_delivers(server: TrackingServer, key: str) -> None:
    # dictConfig holds logging's module lock while it builds the handler, whose new
    # sender starts a thread: this once deadlocked. The guard fails fast instead.
    config = _dict_config(key, server.url)
    guarded(lambda: logging.config.dictConfig(config), "dictConfig")
    handler = _bucket_handler("it.dict")
    assert handler.level == logging.INFO
    log = logging.getLogger("it.dict")
    log.info("User %s signed in", "ada", extra={"uid": 3, "method": "sso", "other": 1})
    log.debug("User %s signed in", "ada", extra={"uid": 3})  # below the handler's level
    log.info("tagged", extra={"uid": 3, "bucket_event": "Tagged"})
    log.info("untagged", extra={"uid": 3})

    assert canon(flushed(server, handler)) == canon(
        [
            {"type": "event", "event": "Signed in", "userId": 3, "attributes": {"method": "sso"}},
            {"type": "event", "event": "Tagged", "userId": 3},
        ]
    )


def test_dict_config_reconfiguration_while_items_are_in_flight(
    server: TrackingServer, key: str
) -> None:
    # shutdown_timeout=30: a close() that waited for the held request would take 30 s.
    config = _dict_config(key, server.url, shutdown_timeout=30.0)
    guarded(lambda: logging.config.dictConfig(config), "dictConfig")
    first = _bucket_handler("it.dict")
    server.delay(45)  # every request is held (until the server stops, in the test)
    log = logging.getLogger("it.dict")
    log.info("in flight", extra={"uid": 1, "bucket_event": "In flight"})
    assert not first.sender.flush(0)  # starts the request now, does not wait for it
    assert server.wait_for_received(1, timeout=TIMEOUT)  # held by the server
    log.info("queued", extra={"uid": 1, "bucket_event": "Queued"})

    took = guarded(lambda: logging.config.dictConfig(config), "dictConfig re-configuration")
    assert took < 15.0  # not the 30 s shutdown_timeout nor the 45 s delay
    second = _bucket_handler("it.dict")
    assert second is not first
    assert second.sender is first.sender  # shared, and still open
    log.info("after", extra={"uid": 1, "bucket_event": "After"})

    # Release the held request (the client sees a reset and retries), then deliver.
    server.stop()
    server.reset_faults()
    server.start()
    calls = flushed(server, second)
    assert canon(calls) == canon(
        [
            {"type": "event", "event": "In flight", "userId": 1},
            {"type": "event", "event": "Queued", "userId": 1},
            {"type": "event", "event": "After", "userId": 1},
        ]
    )


def test_file_config_with_a_real_key_delivers(
    server: TrackingServer, key: str, tmp_path: Path
) -> None:
    kwargs = {
        "tracking_key": key,
        "base_url": server.url,
        "company_id_field": "org",
        "rules": [{"match": "Exported *", "event": "Exported", "attributes": "*"}],
    }
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
            qualname=it.ini

            [handler_bucket]
            class=bucket_logging.BucketHandler
            level=INFO
            args=()
            kwargs={kwargs}
            """
        ).replace("{kwargs}", repr(kwargs))
    )
    guarded(lambda: logging.config.fileConfig(ini, disable_existing_loggers=False), "fileConfig")
    handler = _bucket_handler("it.ini")
    log = logging.getLogger("it.ini")
    log.info("Exported %d rows", 10, extra={"user_id": 1, "org": "o", "fmt": "csv"})
    log.info("tagged", extra={"user_id": 1, "org": "o", "bucket_company": True})
    log.debug("Exported %d rows", 1, extra={"user_id": 1})  # below the handler's level

    assert canon(flushed(server, handler)) == canon(
        [
            {
                "type": "event",
                "event": "Exported",
                "userId": 1,
                "companyId": "o",
                "attributes": {"fmt": "csv"},
            },
            {"type": "company", "companyId": "o", "userId": 1},
        ]
    )


# --------------------------------------------------------------------------- 4. structlog


def test_structlog_chain_renders_and_delivers(server: TrackingServer, key: str) -> None:
    stream = io.StringIO()
    processor = BucketProcessor(key, base_url=server.url)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            processor,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(user_id=42, company_id="acme")
    log = structlog.get_logger()
    before = time.time()
    log.info("message sent", bucket_event="Sent message", bucket_attributes={"position": "popover"})
    after = time.time()
    log.info("untagged", detail=1)
    log.warning("profile", bucket_user={"name": "Ada"})

    calls = flushed(server, processor)
    assert canon(calls) == canon(
        [
            {
                "type": "event",
                "event": "Sent message",
                "userId": 42,
                "companyId": "acme",
                "attributes": {"position": "popover"},
            },
            {"type": "user", "userId": 42, "attributes": {"name": "Ada"}},
        ]
    )
    [event] = [c for c in calls if c["type"] == "event"]
    assert iso_ms(before) <= event["timestamp"] <= iso_ms(after)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {
            "event": "message sent",
            "level": "info",
            "user_id": 42,
            "company_id": "acme",
            "bucket_event": "Sent message",
            "bucket_attributes": {"position": "popover"},
            "bucket_tracked": True,
        },
        {"event": "untagged", "level": "info", "user_id": 42, "company_id": "acme", "detail": 1},
        {
            "event": "profile",
            "level": "warning",
            "user_id": 42,
            "company_id": "acme",
            "bucket_user": {"name": "Ada"},
            "bucket_tracked": True,
        },
    ]


# --------------------------------------------------------------------------- 5. bridged


BRIDGES = pytest.mark.parametrize(
    "bridge", [WRAP, KWARGS], ids=["wrap_for_formatter", "render_to_log_kwargs"]
)


def _bridge(server: TrackingServer, key: str, bridge: Any) -> tuple[BucketHandler, io.StringIO]:
    """structlog -> stdlib: a BucketProcessor in the chain, a BucketHandler on root."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stream = io.StringIO()
    rendering = logging.StreamHandler(stream)
    if bridge is WRAP:
        rendering.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(),
                ]
            )
        )
    else:
        rendering.setFormatter(logging.Formatter("%(name)s %(message)s"))
    bucket = BucketHandler(key, base_url=server.url)
    root.addHandler(bucket)
    root.addHandler(rendering)
    processor = BucketProcessor(key, base_url=server.url)
    assert processor.sender is bucket.sender
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            processor,
            structlog.processors.TimeStamper(fmt="iso"),
            bridge,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return bucket, stream


@BRIDGES
def test_bridged_setup_tracks_each_event_exactly_once(
    server: TrackingServer, key: str, bridge: Any
) -> None:
    bucket, stream = _bridge(server, key, bridge)
    structlog.contextvars.bind_contextvars(company_id="acme")
    slog = structlog.get_logger("it.bridge.sl")
    std = logging.getLogger("it.bridge.std")
    n = 5
    expected: list[dict[str, Any]] = []
    for i in range(n):
        slog.info("structlog event", user_id=i, bucket_event=f"Structlog {i}")
        std.info("stdlib record", extra={"user_id": 100 + i, "bucket_event": f"Stdlib {i}"})
        slog.info("untagged structlog", user_id=i)
        std.info("untagged stdlib", extra={"user_id": i})
        expected.append(
            {"type": "event", "event": f"Structlog {i}", "userId": i, "companyId": "acme"}
        )
        expected.append(
            {"type": "event", "event": f"Stdlib {i}", "userId": 100 + i, "companyId": "acme"}
        )
    slog.debug("below the level", user_id=1, bucket_event="Not logged")
    slog.warning("signed in", user_id=9, bucket_user={"name": "Ada"}, bucket_event="Signed in")
    expected.append({"type": "user", "userId": 9, "attributes": {"name": "Ada"}})
    expected.append({"type": "event", "event": "Signed in", "userId": 9, "companyId": "acme"})

    calls = flushed(server, bucket)
    assert canon(calls) == canon(expected)
    assert bucket.sender.stats.queued == len(expected)  # type: ignore[attr-defined]
    output = stream.getvalue()
    assert output.count("structlog event") == n and output.count("stdlib record") == n
    assert "signed in" in output and "below the level" not in output


@BRIDGES
def test_bridged_setup_exactly_once_from_several_threads(
    server: TrackingServer, key: str, bridge: Any
) -> None:
    bucket, _ = _bridge(server, key, bridge)
    threads, per_thread = 4, 25
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        structlog.contextvars.bind_contextvars(user_id=f"t{t}")  # this thread's context
        slog = structlog.get_logger("it.bridge.sl")
        std = logging.getLogger("it.bridge.std")
        start.wait(TIMEOUT)
        for i in range(per_thread):
            slog.info("structlog event", bucket_event="Structlog", bucket_attributes={"i": i})
            std.info(
                "stdlib record", extra={"bucket_event": "Stdlib", "bucket_attributes": {"i": i}}
            )

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(TIMEOUT)
        assert not worker.is_alive()

    calls = flushed(server, bucket)
    assert canon(calls) == canon(
        [
            {"type": "event", "event": name, "userId": f"t{t}", "attributes": {"i": i}}
            for t in range(threads)
            for i in range(per_thread)
            for name in ("Structlog", "Stdlib")
        ]
    )


# --------------------------------------------------------------------------- 6. rules


RULES: list[dict[str, Any]] = [
    {"match": "User %s signed in", "event": "Signed in"},
    {
        "match": "Exported * rows",
        "logger": "it.rules.export*",
        "event": "Exported data",
        "attributes": ["format", "rows"],
    },
    {"match": "Report viewed", "event": "Viewed report", "attributes": "*"},
    {"match": "Synced", "event": "Synced", "active": False},
]


def test_rules_turn_untagged_records_into_events(server: TrackingServer, key: str) -> None:
    handler = BucketHandler(key, base_url=server.url, rules=RULES)
    app_logger("it.rules", handler)
    auth = logging.getLogger("it.rules.auth")
    auth.info("User %s signed in", "ada", extra={"user_id": 1})  # exact
    auth.info("User %s signed out", "ada", extra={"user_id": 1})  # no rule
    logging.getLogger("it.rules.export.csv").info(  # glob + logger glob
        "Exported %d rows", 10, extra={"user_id": 1, "format": "csv", "rows": 10, "other": "x"}
    )
    logging.getLogger("it.rules.other").info(  # logger does not match
        "Exported %d rows", 5, extra={"user_id": 1, "format": "csv", "rows": 5}
    )
    auth.info(  # "*": every structured field, not the ids
        "Report viewed", extra={"user_id": 1, "company_id": "acme", "report": "q3", "page": 2}
    )
    auth.info("Synced", extra={"user_id": 2})
    structlog.contextvars.bind_contextvars(user_id=3)
    auth.info("User %s signed in", "bob")  # id from the context

    assert canon(flushed(server, handler)) == canon(
        [
            {"type": "event", "event": "Signed in", "userId": 1},
            {
                "type": "event",
                "event": "Exported data",
                "userId": 1,
                "attributes": {"format": "csv", "rows": 10},
            },
            {
                "type": "event",
                "event": "Viewed report",
                "userId": 1,
                "companyId": "acme",
                "attributes": {"report": "q3", "page": 2},
            },
            {"type": "event", "event": "Synced", "userId": 2, "context": {"active": False}},
            {"type": "event", "event": "Signed in", "userId": 3},
        ]
    )


def test_records_matching_no_rule_send_nothing(server: TrackingServer, key: str) -> None:
    handler = BucketHandler(key, base_url=server.url, rules=RULES)
    app_logger("it.rules", handler)
    logging.getLogger("it.rules.auth").info("User %s signed out", "ada", extra={"user_id": 1})
    logging.getLogger("it.rules.other").info("Exported %d rows", 5, extra={"user_id": 1})
    logging.getLogger("it.rules.auth").info("Report viewed twice", extra={"user_id": 1})
    assert handler.sender.flush(TIMEOUT)
    assert server.requests == []
    assert handler.sender.stats.queued == 0  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- 7. bad input

#: An attribute value that makes an item larger than the API's 2 MB limit.
BIG = "x" * 2_100_000

BAD_INPUTS = [
    pytest.param(
        {"user_id": 1, "bucket_event": 7},
        ([], "bucket_event must be the event name"),
        id="int-event",
    ),
    pytest.param(
        {"user_id": 1, "bucket_feedback": {"feature_id": "f1", "score": 9}},
        ([], "score must be a number from 1 to 5"),
        id="feedback-score-9",
    ),
    pytest.param(
        {"user_id": 1, "bucket_user": "x"},
        ([], "bucket_user must be True or a dict"),
        id="user-str",
    ),
    pytest.param(
        {"bucket_event": "No user"},
        ([], "event 'No user' needs a user id"),
        id="event-without-user",
    ),
    pytest.param(
        {"user_id": 1, "bucket_event": "Big", "bucket_attributes": {"blob": BIG}},
        ([], "byte limit"),
        id="oversized-attribute",
    ),
    pytest.param(
        {
            "user_id": 1,
            "bucket_user": {"name": "Ada"},
            "bucket_event": "Big",
            "bucket_attributes": {"blob": BIG},
        },
        ([{"type": "user", "userId": 1, "attributes": {"name": "Ada"}}], "byte limit"),
        id="oversized-event-beside-a-valid-user",
    ),
    pytest.param(
        {"user_id": 1, "bucket_event": "Rated", "bucket_feedback": {"feature_id": "f", "score": 9}},
        ([{"type": "event", "event": "Rated", "userId": 1}], "score must be a number from 1 to 5"),
        id="bad-feedback-beside-a-valid-event",
    ),
]


@pytest.mark.parametrize(("extra", "outcome"), BAD_INPUTS)
def test_bad_input_is_reported_not_sent_and_the_rest_is_delivered(
    server: TrackingServer,
    key: str,
    caplog: pytest.LogCaptureFixture,
    extra: dict[str, Any],
    outcome: tuple[list[dict[str, Any]], str],
) -> None:
    sent, problem = outcome  # the record's valid calls, and what the report says
    handler = BucketHandler(key, base_url=server.url)
    log = app_logger("it.bad", handler)
    log.info("before", extra={"user_id": 1, "bucket_event": "Before"})
    log.info("the bad one", extra=extra)  # never raises
    log.info("after", extra={"user_id": 1, "bucket_event": "After"})

    calls = flushed(server, handler)
    assert canon(calls) == canon(
        [
            {"type": "event", "event": "Before", "userId": 1},
            *sent,
            {"type": "event", "event": "After", "userId": 1},
        ]
    )
    assert all(r.status == 200 for r in server.requests)  # nothing reached the server
    found = reports(caplog)
    assert len(found) == 1, [r.getMessage() for r in found]
    [report] = found
    assert problem in report.getMessage()
    assert "the bad one" in report.getMessage() and "it.bad" in report.getMessage()
    assert report.levelno == logging.WARNING
    assert report.exc_info is None and report.exc_text is None  # no traceback
    assert len(report.getMessage()) < 1000  # the 2 MB value is not echoed


# --------------------------------------------------------------------------- shutdown bounded


def test_logging_shutdown_is_bounded_when_the_endpoint_hangs(
    server: TrackingServer, key: str
) -> None:
    # logging.shutdown() calls flush() (no timeout) then close(): both are bounded by
    # shutdown_timeout, so a hanging endpoint does not hold the exit.
    handler = BucketHandler(key, base_url=server.url, shutdown_timeout=0.5)
    log = app_logger("it.hang", handler)
    server.delay(45)  # a hanging endpoint
    log.info("held", extra={"user_id": 1, "bucket_event": "Held"})
    try:
        # What the exit does with logging's handler list, for this handler alone.
        took = guarded(lambda: logging.shutdown([lambda: handler]), "logging.shutdown()", 10.0)
        assert took < 8.0  # about 2 x 0.5 s; never the 45 s the request is held
    finally:
        server.stop()  # release the held request (a reset: the sender retries)
        server.reset_faults()
        server.start()
    # The shared sender is still open: the item arrives once the endpoint answers.
    calls = flushed(server, handler)
    assert stripped(calls) == [{"type": "event", "event": "Held", "userId": 1}]


# --------------------------------------------------------------------------- 8, 9. processes


ROOT_DEBUG_SCRIPT = """\
    import logging

    import httpx
    import structlog

    from bucket_logging import BucketHandler

    url = "{url}"
    logging.basicConfig(level=logging.DEBUG)
    # A catch-all rule: any record that reached the tracker would become a call.
    logging.getLogger().addHandler(BucketHandler(rules=[{{"match": "*", "event": "Any log"}}]))
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    structlog.contextvars.bind_contextvars(user_id="u1")

    app = logging.getLogger("app")
    for i in range(3):
        app.info("tagged %d", i, extra={{"bucket_event": f"Tagged {{i}}"}})
    response = httpx.get(url + "/x")  # the app's own request, on the main thread
    print("status", response.status_code)
    app.info("plain app line")
    app.debug("done")
"""


def test_root_debug_with_httpx_ships_only_the_app_and_exits(
    server: TrackingServer, key: str, scripts: Scripts
) -> None:
    proc = scripts.run(ROOT_DEBUG_SCRIPT.format(url=server.url), env=app_of(server, key))
    assert proc.returncode == 0, proc.stderr
    assert "status 404" in proc.stdout
    assert canon(server.calls) == canon(
        [
            {"type": "event", "event": "Tagged 0", "userId": "u1"},
            {"type": "event", "event": "Tagged 1", "userId": "u1"},
            {"type": "event", "event": "Tagged 2", "userId": "u1"},
            {"type": "event", "event": "Any log", "userId": "u1"},  # "plain app line"
            {"type": "event", "event": "Any log", "userId": "u1"},  # "done"
        ]
    )
    # The app's own request is logged; the sender's requests are not.
    assert f"HTTP Request: GET {server.url}/x" in proc.stderr
    assert "request=<Request [b'GET']>" in proc.stderr  # httpcore's DEBUG lines show
    assert "POST" not in proc.stderr and "/bulk" not in proc.stderr
    assert "WARNING:bucket_logging" not in proc.stderr
    assert key not in proc.stdout and key not in proc.stderr


def app_of(server: TrackingServer, key: str) -> dict[str, str]:
    """The variables that point a script's library at ``server`` with ``key``."""
    return {"BUCKET_TRACKING_URL": server.url, "BUCKET_TRACKING_KEY": key}


LOGGING_SHUTDOWN_SCRIPT = """\
    import logging
    import os

    from bucket_logging import BucketHandler

    # flush_interval=60: nothing is sent by the timer; exit hooks are skipped below.
    log = logging.getLogger("app")
    log.addHandler(BucketHandler(flush_interval=60.0))
    log.setLevel(logging.INFO)
    for i in range(5):
        log.info("queued", extra={{"user_id": i, "bucket_event": "Queued {{}}".format(i)}})
    log.info("profile", extra={{"user_id": 1, "bucket_user": {{"name": "Ada"}}}})
    logging.shutdown()
    print("shut down", flush=True)
    os._exit(0)  # no atexit hooks: only logging.shutdown() delivered
"""


def test_logging_shutdown_delivers_what_was_queued(
    server: TrackingServer, key: str, scripts: Scripts
) -> None:
    proc = scripts.run(LOGGING_SHUTDOWN_SCRIPT.format(), env=app_of(server, key))
    assert proc.returncode == 0, proc.stderr
    assert "shut down" in proc.stdout
    assert canon(server.calls) == canon(
        [
            *({"type": "event", "event": f"Queued {i}", "userId": i} for i in range(5)),
            {"type": "user", "userId": 1, "attributes": {"name": "Ada"}},
        ]
    )
    assert key not in proc.stdout and key not in proc.stderr
