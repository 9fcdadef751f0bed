"""LoguruSink against a real local tracking server (reached as ``localhost``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import structlog
from loguru import logger
from support import Scripts

from bucket_logging import LoguruSink, TrackingServer
from bucket_logging._runtime import state as _process

TIMEOUT = 20.0


@pytest.fixture
def url(server: TrackingServer) -> str:
    """The server's URL by host name."""
    return f"http://localhost:{server.port}"


@pytest.fixture
def key(url: str) -> Iterator[str]:
    yield f"trLoguru{uuid.uuid4().hex[:12]}"
    for sender in list(_process.state.live):
        if sender.base_url == url:
            sender.close(timeout=2.0)


@pytest.fixture
def sinks() -> Iterator[list[int]]:
    """Ids of loguru handlers added by the test; removed at its end."""
    ids: list[int] = []
    structlog.contextvars.clear_contextvars()
    yield ids
    structlog.contextvars.clear_contextvars()
    for handler_id in ids:
        logger.remove(handler_id)


def add(sinks: list[int], sink: LoguruSink, **options: Any) -> None:
    sinks.append(logger.add(sink, **options))


def calls(server: TrackingServer, sink: LoguruSink) -> list[dict[str, Any]]:
    logger.complete()
    assert sink.flush(TIMEOUT), "not delivered in time"
    return [{k: v for k, v in c.items() if k != "timestamp"} for c in server.calls]


def test_kwargs_bind_and_contextualize_carry_tags_and_ids(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink)
    logger.info("sent", bucket_event="Sent message", user_id=1, bucket_attributes={"n": 2})
    logger.bind(user_id=2).info("profile", bucket_user={"name": "Ada"})
    with logger.contextualize(user_id=3, company_id="acme"):
        logger.info("viewed", bucket_event="Viewed report")
        logger.bind(bucket_company={"seats": 5}).info("org")
    logger.info("not tagged", user_id=4)
    assert calls(server, sink) == [
        {"type": "event", "event": "Sent message", "userId": 1, "attributes": {"n": 2}},
        {"type": "user", "userId": 2, "attributes": {"name": "Ada"}},
        {"type": "event", "event": "Viewed report", "userId": 3, "companyId": "acme"},
        {"type": "company", "companyId": "acme", "userId": 3, "attributes": {"seats": 5}},
    ]


def test_timestamp_is_the_time_of_the_log_call(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    seen: list[datetime] = []
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink)
    sinks.append(logger.add(lambda m: seen.append(m.record["time"]), level="INFO"))
    logger.info("sent", bucket_event="Sent message", user_id=1)
    assert sink.flush(TIMEOUT)
    expected = seen[0].astimezone(timezone.utc).isoformat(timespec="milliseconds")
    assert server.calls[0]["timestamp"] == expected.replace("+00:00", "Z")


def test_ids_from_structlog_contextvars(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink)
    structlog.contextvars.bind_contextvars(user_id="u-9", company_id=7)
    logger.info("sent", bucket_event="Sent message")
    assert calls(server, sink) == [
        {"type": "event", "event": "Sent message", "userId": "u-9", "companyId": 7}
    ]


def test_rules_match_the_message_and_the_module_name(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    rules = [
        {"match": "Report viewed", "event": "Viewed report", "attributes": ["report"]},
        {"match": "User * signed in", "event": "Signed in", "logger": "test_lo*"},
        {"match": "Exported", "event": "Exported", "logger": "elsewhere.*"},
    ]
    sink = LoguruSink(key, base_url=url, rules=rules)
    add(sinks, sink)
    logger.info("Report viewed", user_id=1, report="sales", other=3)
    logger.info("User {} signed in", "ada", user_id=2)
    logger.info("Exported", user_id=3)  # the rule's logger does not match
    logger.info("Something else", user_id=4)
    assert calls(server, sink) == [
        {"type": "event", "event": "Viewed report", "userId": 1, "attributes": {"report": "sales"}},
        {"type": "event", "event": "Signed in", "userId": 2},
    ]


def test_enqueue_true_and_complete(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink, enqueue=True)
    for i in range(50):
        logger.bind(user_id=i).info("sent", bucket_event="Sent message")
    with logger.contextualize(company_id="acme"):
        logger.info("org", user_id=1, bucket_company=True)
    got = calls(server, sink)
    assert len(got) == 51
    assert sorted(c["userId"] for c in got if c["type"] == "event") == list(range(50))
    assert {"type": "company", "companyId": "acme", "userId": 1} in got


def test_bad_tags_are_reported_never_raised(
    server: TrackingServer,
    url: str,
    key: str,
    sinks: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink, catch=False)  # an exception would reach the log call
    logger.info("no user", bucket_event="Sent message")
    logger.info("bad", bucket_user=3, user_id=1)
    logger.info("good", bucket_event="Sent message", user_id=1)
    assert calls(server, sink) == [{"type": "event", "event": "Sent message", "userId": 1}]
    problems = [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]
    assert any("needs a user id" in p for p in problems)
    assert any("bucket_user must be True or a dict" in p for p in problems)
    sink(object())  # not a loguru message: ignored
    sink("plain text")


def test_records_of_the_library_and_its_http_client_are_not_tracked(
    server: TrackingServer, url: str, key: str, sinks: list[int]
) -> None:
    sink = LoguruSink(key, base_url=url)
    add(sinks, sink)
    logger.patch(lambda r: r.update(name="httpx._client")).info(
        "request", bucket_event="Sent message", user_id=1
    )
    logger.patch(lambda r: r.update(name="bucket_logging._sender.sender")).info(
        "x", bucket_user=True, user_id=1
    )
    logger.info("mine", bucket_event="Mine", user_id=1)
    assert calls(server, sink) == [{"type": "event", "event": "Mine", "userId": 1}]


def test_repr_and_public_export() -> None:
    sink = LoguruSink(offline=True, rules=[{"match": "a", "event": "b"}])
    assert repr(sink) == "<LoguruSink 1 rule(s)>"
    import bucket_logging

    assert "LoguruSink" in bucket_logging.__all__


def test_importing_the_package_does_not_import_loguru(scripts: Scripts) -> None:
    done = scripts.run(
        """
        import sys, bucket_logging
        assert "loguru" not in sys.modules
        print(bucket_logging.LoguruSink.__name__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "LoguruSink"


@pytest.mark.parametrize("enqueue", [False, True])
def test_delivers_at_exit_without_flush(
    server: TrackingServer, server_url: str, scripts: Scripts, enqueue: bool
) -> None:
    # localhost: the sender's first request happens at exit, and still resolves the name
    done = scripts.run(
        f"""
        import time
        from loguru import logger
        from bucket_logging import LoguruSink

        class Slow(LoguruSink):  # a backlog in loguru's queue at exit
            def __call__(self, message):
                time.sleep(0.002)
                super().__call__(message)

        logger.remove()
        logger.add(Slow(), enqueue={enqueue})
        for i in range(200):
            logger.info("sent", bucket_event="Sent message", user_id=i)
        """,
        env={"BUCKET_TRACKING_KEY": "trExitKey0123456789", "BUCKET_TRACKING_URL": server_url},
    )
    assert done.returncode == 0, done.stderr
    assert server.wait_for(200, TIMEOUT)
    assert sorted(c["userId"] for c in server.calls) == list(range(200))
    assert "trExitKey0123456789" not in done.stderr + json.dumps(server.calls)
