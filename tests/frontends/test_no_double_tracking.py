"""A log the application already tracked is not tracked again by ``bucket-logging ship``:
the BucketProcessor marks each event it tracked (``"bucket_tracked": true``) and the JSON
lines path of ``ship`` and ``relay`` skips marked lines; ``mark_tracked=False`` turns the
mark off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bucket_logging import TrackingServer
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging.testing import capture_tracking

KEY = "trTWICEkey-8d2e4f6a0b1c3957"

APP = """
    import structlog
    from bucket_logging import BucketProcessor

    log_file = open({log!r}, "w")
    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso"),
            BucketProcessor(mark_tracked={mark}),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(log_file),
    )
    log = structlog.get_logger("app.auth")
    for i in range(20):
        log.info("signed in", bucket_event="Signed in", user_id=f"u{{i}}")
    log.info("a line the app does not track", user_id="u0")
"""


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


def _env(url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    return {**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": url}


def _run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=_env(url), capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("mark", [True, False])
def test_shipping_the_log_of_an_app_that_tracks_sends_each_event_once(
    server: TrackingServer, tmp_path: Path, mark: bool
) -> None:
    log = tmp_path / "app.log"
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP.format(log=str(log), mark=mark)))
    done = _run([sys.executable, str(app)], server.url)
    assert done.returncode == 0, done.stderr
    assert len(server.calls_of("event")) == 20  # the app tracked them, at exit
    assert ('"bucket_tracked": true' in log.read_text()) is mark

    done = _run([sys.executable, "-m", "bucket_logging", "ship", str(log)], server.url)
    assert done.returncode == 0, done.stderr
    # marked (the default): the 20 lines were tracked already, nothing is sent again;
    # unmarked (mark_tracked=False): ship cannot tell, and tracks them a second time
    assert len(server.calls_of("event")) == (20 if mark else 40)
    if mark:  # ship's switch: track the marked lines anyway
        args = [sys.executable, "-m", "bucket_logging", "ship", "--track-marked", str(log)]
        done = _run(args, server.url)
        assert done.returncode == 0, done.stderr
        assert len(server.calls_of("event")) == 40


def test_the_json_lines_front_end_skips_marked_lines_unless_told_not_to() -> None:
    line = {"event": "signed in", "bucket_event": "Signed in", "user_id": 1}
    front = JsonLines(offline=True)
    with capture_tracking() as calls:
        assert front.track({**line, "bucket_tracked": True}) is False
        assert front.track(dict(line)) is True
    assert [c["event"] for c in calls] == ["Signed in"]
    front.track_marked = True
    with capture_tracking() as calls:
        assert front.track({**line, "bucket_tracked": True}) is True
    assert len(calls) == 1


def test_the_mark_is_not_reported_as_a_misspelled_tag(caplog: pytest.LogCaptureFixture) -> None:
    front = JsonLines(offline=True)
    front.track_marked = True
    with capture_tracking():
        front.track({"event": "x", "bucket_event": "E", "user_id": 1, "bucket_tracked": True})
    assert not [r for r in caplog.records if "not a tag" in r.getMessage()]
