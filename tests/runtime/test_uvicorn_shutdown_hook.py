"""The hook on a uvicorn server's shutdown, piece by piece (the real servers, stopped by
SIGTERM, are in ``test_stop_paths.py`` and ``test_stop_paths_uvicorn029.py``).

A sender that starts while SIGTERM is held by a ``uvicorn.server.Server`` hooks that
server's ``shutdown()``: when it returns, what is queued is delivered and the senders
stay open; past ``shutdown_timeout`` they are closed and the loss reported; where the
hook cannot be set, one warning gives the lifespan line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support import KEY

from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime import uvicorn_stop as _uvicorn_stop

uvicorn_server = pytest.importorskip("uvicorn.server")
uvicorn_config = pytest.importorskip("uvicorn.config")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - not served
    pass


class StoppingServer(uvicorn_server.Server):  # type: ignore[misc]
    """A uvicorn server whose shutdown only records that it ran (nothing is served)."""

    def __init__(self) -> None:
        super().__init__(uvicorn_config.Config(_app))
        self.shut_down = False

    async def shutdown(self, sockets: Any = None) -> None:
        await asyncio.sleep(0)
        self.shut_down = True


class SyncShutdownServer(uvicorn_server.Server):  # type: ignore[misc]
    """A (future) uvicorn whose shutdown is not a coroutine method: it cannot be hooked."""

    def __init__(self) -> None:
        super().__init__(uvicorn_config.Config(_app))

    def shutdown(self, sockets: Any = None) -> None:  # type: ignore[override]
        pass


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys={KEY}) as srv:
        yield srv


@pytest.fixture
def sigterm_to() -> Iterator[None]:
    """Restore SIGTERM's disposition after a test that gives it to a server."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def sender_for(server: TrackingServer, **options: Any) -> BulkSender:
    return BulkSender(
        KEY, base_url=f"http://localhost:{server.port}", flush_interval=30,
        handle_sigterm=False, **options,
    )  # fmt: skip


def test_the_server_holding_sigterm_is_recognised() -> None:
    uvicorn = StoppingServer()
    assert _uvicorn_stop.capturing_server(uvicorn.handle_exit) is uvicorn
    assert _uvicorn_stop.capturing_server(uvicorn.shutdown) is None  # not its signal handler
    assert _uvicorn_stop.capturing_server(signal.SIG_DFL) is None
    assert _uvicorn_stop.capturing_server(lambda signum, frame: None) is None


def test_a_sender_started_under_the_servers_capture_delivers_when_its_shutdown_returns(
    server: TrackingServer, sigterm_to: None
) -> None:
    uvicorn = StoppingServer()
    signal.signal(signal.SIGTERM, uvicorn.handle_exit)  # as capture_signals() does
    sender = sender_for(server)  # the app, imported inside the capture
    try:
        for n in range(5):
            sender.enqueue(Item.event("Hit", user_id="u1", attributes={"n": n}))
        assert server.call_count == 0  # the flush interval is far away
        asyncio.run(uvicorn.shutdown())
        assert uvicorn.shut_down
        assert server.call_count == 5  # delivered when the server's shutdown returned
        assert not sender.closed  # the process may go on: the sender stays open
        shutdown = uvicorn.shutdown
        _uvicorn_stop.watch()  # a second sender starting: hooked once
        assert uvicorn.shutdown is shutdown
    finally:
        sender.close()


def test_past_the_shutdown_timeout_the_senders_are_closed_and_the_loss_reported(
    server: TrackingServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.delay(60)  # the endpoint hangs
    uvicorn = StoppingServer()
    sender = sender_for(server, shutdown_timeout=0.5)
    assert _uvicorn_stop.hook(uvicorn)
    sender.enqueue(Item.event("Hit", user_id="u1", attributes={"n": 0}))
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        asyncio.run(uvicorn.shutdown())
    assert sender.closed  # the signal ends the process next: the loss is told now
    assert sender.stats.dropped.get("shutdown") == 1
    assert "not delivered: shutdown" in caplog.text


def test_where_the_hook_cannot_be_set_one_warning_gives_the_lifespan_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        assert not _uvicorn_stop.hook(SyncShutdownServer())
        assert not _uvicorn_stop.hook(SyncShutdownServer())
    warnings = [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]
    assert len(warnings) == 1, warnings
    assert "await bucket_logging.aflush(5)" in warnings[0]
    assert "lifespan" in warnings[0]


def test_under_the_servers_capture_the_start_up_line_says_uvicorns_shutdown_delivers(
    server: TrackingServer,
    sigterm_to: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bucket_logging._runtime import state as _process

    monkeypatch.setattr(_process.state, "announced", False)  # the process's first sender
    caplog.set_level(logging.INFO, logger="bucket_logging")
    uvicorn = StoppingServer()
    signal.signal(signal.SIGTERM, uvicorn.handle_exit)  # uvicorn --workers: the app inside
    sender = BulkSender(KEY, base_url=server.url, flush_interval=30)
    try:
        [line] = [r.getMessage() for r in caplog.records if "tracking to" in r.getMessage()]
        assert line.endswith("; uvicorn's shutdown delivers the queue before the process ends")
        assert "no SIGTERM handler" not in caplog.text
    finally:
        sender.close()
