"""The first sender of a process says once, at INFO on ``bucket_logging``, where tracking
goes: the API, the host, the spool, and whether a SIGTERM handler was installed; never the
key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import KEY

from bucket_logging import TrackingServer
from bucket_logging._runtime import state as _process


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture
def first(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has not said it yet."""
    monkeypatch.setattr(_process.state, "announced", False)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bucket_logging" and r.levelno == logging.INFO and "tracking" in r.getMessage()
    ]


def test_the_first_sender_says_where_tracking_goes_once(
    first: None,
    server: TrackingServer,
    make_sender: object,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger="bucket_logging")
    make = make_sender
    make(base_url=server.url, spool_dir=str(tmp_path))  # type: ignore[operator]
    make(base_url=server.url, api="runtime", tracking_key="sec_other")  # type: ignore[operator]
    [line] = _lines(caplog)
    assert f"tracking to Bucket's tracking API at http://127.0.0.1:{server.port}" in line
    assert f"spool at {tmp_path}" in line
    assert "SIGTERM handler" in line
    assert KEY not in caplog.text and "sec_other" not in caplog.text


def test_an_offline_sender_says_it_sends_nothing(
    first: None, make_sender: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bucket_logging")
    make_sender(offline=True)  # type: ignore[operator]
    [line] = _lines(caplog)
    assert line.endswith("offline: tracking calls are validated and counted, none is sent")


SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from bucket_logging import BucketHandler
logging.getLogger().addHandler(BucketHandler(handle_sigterm={sigterm}))
"""


@pytest.mark.parametrize(
    ("sigterm", "said"),
    [
        ("True", "a SIGTERM handler delivers the queue before the process ends"),
        ("False", "no SIGTERM handler (handle_sigterm is off)"),
    ],
)
def test_an_app_says_at_start_up_whether_sigterm_is_handled(
    server: TrackingServer, tmp_path: Path, sigterm: str, said: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT.format(sigterm=sigterm))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    env |= {"REFLAG_SECRET_KEY": "sec_startup", "REFLAG_API_BASE_URL": server.url}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "tracking to" in line]
    assert lines == [
        f"bucket_logging tracking to Reflag's Runtime API at {server.url}; no spool; {said}"
    ]
    assert "sec_startup" not in done.stderr
