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


def test_a_first_sender_built_off_the_main_thread_says_the_handler_is_asked_for(
    tmp_path: Path,
) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import logging, threading\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from bucket_logging import BulkSender\n"
        "t = threading.Thread(target=BulkSender, args=('trStartupKey-123',),\n"
        "                     kwargs={'base_url': 'http://127.0.0.1:9'})\n"
        "t.start(); t.join()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "tracking to" in line]
    assert len(said) == 1, done.stderr
    assert said[0].endswith(
        "the main thread is asked to install a SIGTERM handler that delivers the queue "
        "(the first sender was built off the main thread)"
    ), said


#: README's set-up: root at INFO with a console handler and the bucket handler, all
#: built by dictConfig (the bucket handler before the console one: names are sorted).
DICTCONFIG_SCRIPT = """
import logging.config
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "bucket": {"class": "bucket_logging.BucketHandler"},
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                    "formatter": "plain"},
    },
    "root": {"level": "INFO", "handlers": ["bucket", "console"]},
})
logging.getLogger("app").info("configured")
"""


def _run_dictconfig(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(DICTCONFIG_SCRIPT)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    return subprocess.run(
        [sys.executable, str(script)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_start_up_line_reaches_the_console_handler_dictconfig_sets_up(
    server: TrackingServer, tmp_path: Path
) -> None:
    done = _run_dictconfig(
        tmp_path, REFLAG_SECRET_KEY="sec_startup", REFLAG_API_BASE_URL=server.url
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("INFO bucket_logging")]
    assert said == [
        f"INFO bucket_logging tracking to Reflag's Runtime API at {server.url}; no spool; "
        "a SIGTERM handler delivers the queue before the process ends"
    ], done.stdout + done.stderr
    assert "INFO app configured" in done.stdout
    assert "sec_startup" not in done.stdout + done.stderr


def test_without_a_key_dictconfig_goes_on_and_one_warning_says_tracking_is_off(
    tmp_path: Path,
) -> None:
    done = _run_dictconfig(tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if "bucket_logging" in line]
    assert said == [
        "WARNING bucket_logging no key (REFLAG_SECRET_KEY or BUCKET_TRACKING_KEY, or "
        "tracking_key=...): tracking is off; calls are validated and counted, none is sent "
        "(BUCKET_OFFLINE=1 says it is on purpose, BUCKET_REQUIRE_KEY=1 makes a missing key "
        "an error)"
    ], done.stdout + done.stderr
    assert "INFO app configured" in done.stdout
    assert not done.stderr


def test_require_key_keeps_the_configuration_error(tmp_path: Path) -> None:
    done = _run_dictconfig(tmp_path, BUCKET_REQUIRE_KEY="1")
    assert done.returncode == 1
    assert "ConfigurationError: no Bucket tracking key or Reflag key" in done.stderr
    assert done.stderr.rstrip().endswith("ValueError: Unable to configure handler 'bucket'")


def test_a_keyless_sender_counts_what_it_would_have_sent(
    first: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bucket_logging import BulkSender, Item

    for name in ("BUCKET_TRACKING_KEY", "REFLAG_SECRET_KEY", "BUCKET_OFFLINE", "REFLAG_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="bucket_logging")
    sender = BulkSender()
    other = BulkSender()
    try:
        assert sender.offline and sender.config.keyless
        sender.enqueue(Item.event("Signed in", user_id=1))
        other.enqueue(Item.event("Signed in", user_id=2))
        assert sender.stats.offline == 1 and other.stats.offline == 1
    finally:
        sender.close(1)
        other.close(1)
    warned = [r for r in caplog.records if r.name == "bucket_logging"]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert "no key" in warned[0].getMessage() and "tracking is off" in warned[0].getMessage()
