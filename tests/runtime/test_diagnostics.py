"""The library tells its users what is going on: its lines name it, an unreachable
endpoint and an outage are said within seconds, different problems are each reported,
what was suppressed is said at exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import FAST, KEY, Lines, closed_port

from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime import diagnostics as _diagnostics


def _event(name: str = "Signed in", user: str = "u1") -> Item:
    return Item.event(name, user_id=user)


# -- whose lines they are -----------------------------------------------------------------


def test_a_delivery_message_names_the_library_once(lines: list[str]) -> None:
    with TrackingServer() as srv:
        srv.reject_items(lambda call: True)
        sender = BulkSender(KEY, base_url=srv.url, **FAST)
        try:
            sender.enqueue(_event())
            assert sender.flush(5)
        finally:
            sender.close(2)
    rejected = [line for line in lines if "rejected" in line]
    assert rejected, lines
    for line in lines:
        assert "bucket_logging: bucket_logging:" not in line
    assert rejected[0].count("rejected by the server") == 1, rejected[0]


def test_without_any_handler_the_last_resort_line_says_whose_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(_diagnostics.logger, "handlers", [])
    _diagnostics.report("t", "bucket_logging: something %s", "odd")
    assert capsys.readouterr().err == "bucket_logging: something odd\n"


# -- an unreachable endpoint is said within seconds ---------------------------------------


class Waiting(Lines):
    """:class:`Lines` that can be waited on."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            super().emit(record)
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> str | None:
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self.cond:
            self.cond.wait_for(found, timeout)
            return found()


@pytest.fixture
def waiting() -> Iterator[Waiting]:
    handler = Waiting()
    _diagnostics.logger.addHandler(handler)
    try:
        yield handler
    finally:
        _diagnostics.logger.removeHandler(handler)


def test_an_unreachable_endpoint_is_said_within_seconds(waiting: Waiting, host: str) -> None:
    port = closed_port()
    started = time.monotonic()
    sender = BulkSender(KEY, base_url=f"http://{host}:{port}", retry_budget=300.0)
    try:
        sender.enqueue(_event())
        line = waiting.wait_for("cannot deliver to", 5.0)
        assert line is not None, waiting.lines
        assert time.monotonic() - started < 5.0
        assert f"{host}:{port}" in line
        assert "ConnectError" in line
        assert KEY not in " ".join(waiting.lines)
        assert sum("cannot deliver to" in line for line in waiting.lines) == 1
    finally:
        sender.close(0.5)


def test_an_outage_and_its_end_are_said_once_each(waiting: Waiting) -> None:
    with TrackingServer(host="localhost") as srv:
        srv.fail_next(3, 503)
        sender = BulkSender(KEY, base_url=srv.url, **FAST)
        try:
            sender.enqueue(_event())
            assert sender.flush(10)
            sender.enqueue(_event(user="u2"))
            assert sender.flush(10)
        finally:
            sender.close(2)
    outage = [line for line in waiting.lines if "cannot deliver to" in line]
    recovered = [line for line in waiting.lines if "recovered" in line]
    assert len(outage) == 1, waiting.lines
    assert "HTTP 503" in outage[0]
    assert len(recovered) == 1, waiting.lines
    assert "(3 failed attempt(s))" in recovered[0]
    assert srv.url.split("//")[1].split("/")[0] in recovered[0]


def test_the_shutdown_loss_says_the_outage_behind_it(waiting: Waiting) -> None:
    port = closed_port()
    sender = BulkSender(KEY, base_url=f"http://127.0.0.1:{port}", retry_budget=300.0)
    sender.enqueue(_event())
    assert waiting.wait_for("cannot deliver to", 10.0)
    sender.close(0.2)
    # awaited generously: found at once when things go right (close() says it before
    # it returns), and a loaded machine must not turn a late line into a failure
    line = waiting.wait_for("not delivered before the shutdown deadline", 10.0)
    assert line is not None and f"127.0.0.1:{port} failing for" in line, waiting.lines
    assert "ConnectError" in line


# -- reports do not hide each other ----------------------------------------------------------


def test_different_problems_in_a_row_are_each_reported(lines: list[str]) -> None:
    from bucket_logging import BucketHandler

    handler = BucketHandler(KEY, offline=True)
    log = logging.getLogger("app.day2")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info("one", extra={"bucket_event": "", "user_id": "u1"})
        log.info("one", extra={"bucket_event": "Signed in"})  # no user id
        log.info("one", extra={"bucket_event": 42, "user_id": "u1"})
        log.info("one", extra={"bucket_event": 43, "user_id": "u1"})  # the same as above
    finally:
        log.removeHandler(handler)
    said = [line for line in lines if "Not sending" in line]
    assert len(said) == 3, said
    assert "must not be empty" in said[0]
    assert "needs a user id" in said[1]
    assert "not int 42" in said[2]


def test_refused_calls_are_counted_by_reason_and_passed_to_on_error() -> None:
    from bucket_logging import BucketHandler, DeliveryError, RefusedCallError

    errors: list[DeliveryError] = []
    got = threading.Event()

    def on_error(error: DeliveryError) -> None:
        errors.append(error)
        if len(errors) == 3:
            got.set()

    sender = BulkSender(KEY, offline=True, on_error=on_error)
    handler = BucketHandler(sender=sender)
    log = logging.getLogger("app.day2.count")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info("a", extra={"bucket_event": "Signed in"})
        log.info("b", extra={"bucket_event": "", "user_id": "u1"})
        log.info("c", extra={"bucket_attributes": {"plan": "pro"}})
        assert got.wait(5)
    finally:
        log.removeHandler(handler)
        sender.close(1)
    assert sender.stats.refused == {"missing_id": 1, "invalid_tag": 1, "orphan_tags": 1}
    assert [type(e) for e in errors] == [RefusedCallError] * 3
    first = errors[0]
    assert isinstance(first, RefusedCallError)
    assert (first.reason, first.kind, first.count) == ("missing_id", "event", 1)
    assert "needs a user id" in first.detail
    assert sender.stats.queued == 0


def test_what_was_suppressed_is_said_at_exit(tmp_path: Any) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import logging\n"
        "from bucket_logging import BucketHandler\n"
        "log = logging.getLogger('app')\n"
        "log.setLevel(logging.INFO)\n"
        "log.addHandler(BucketHandler(offline=True))\n"
        "for i in range(5):\n"
        "    log.info('no user', extra={'bucket_event': 'Signed in'})\n"
        "log.info('empty', extra={'bucket_event': '', 'user_id': 'u'})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert sum("needs a user id" in line for line in err) == 2, err
    summary = [line for line in err if "suppressed" in line]
    assert len(summary) == 1, err
    assert summary[0].startswith("bucket_logging: 4 more message(s) like this one suppressed: ")
    assert "needs a user id" in summary[0]
