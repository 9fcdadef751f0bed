"""Drop reports say what was dropped: the summary of suppressed reports sums up their items
(not the shown report's count), "an event item"; the README's local-server section shows
the installed command."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime import diagnostics as _diagnostics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys={"another-key"}) as srv:  # ours is refused
        yield srv


def test_the_summary_of_suppressed_drops_counts_their_items(
    server: TrackingServer, make_sender: Callable[..., BulkSender], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    sender = make_sender(base_url=server.url)
    for i in range(3):
        sender.enqueue(Item.event("Clicked", user_id=i))
    sender.flush(10)  # 3 items dropped: reported
    sender.enqueue(Item.event("Clicked", user_id=9))
    sender.flush(10)  # 1 item dropped: suppressed (the same topic, within the limit)
    _diagnostics.report_suppressed()
    said = [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]
    assert any("3 item(s) not delivered" in m for m in said), said
    [summary] = [m for m in said if "suppressed" in m]
    assert summary.startswith("1 more message(s) about 1 item(s) in all suppressed"), summary


def test_a_dropped_event_is_an_event_item(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    sender = BulkSender("k", base_url="http://127.0.0.1:9", handle_sigterm=False)
    sender.close(0.1)
    sender.enqueue(Item.event("Clicked", user_id=1))
    sender.enqueue(Item.user(1))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped an event item" in said and "dropped a event" not in said


def test_the_local_server_is_started_with_the_installed_command() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert not re.search(r"\.venv/bin/python -m bucket_logging", text), path.name
    assert "bucket-logging serve --port 8787" in (ROOT / "docs" / "testing.md").read_text()
