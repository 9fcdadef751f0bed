"""The pytest plugin (``bucket_tracking``), ``BUCKET_OFFLINE`` and an empty capture that explains
itself; ``bucket-logging --version``."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import bucket_logging
from bucket_logging import BucketHandler, BulkSender, ConfigurationError
from bucket_logging.testing import capture_tracking

pytest_plugins = ["pytester"]


def test_bucket_tracking_fixture_captures_with_no_key_and_no_network(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    monkeypatch.delenv("BUCKET_OFFLINE", raising=False)
    pytester.makepyfile(
        """
        import logging
        from bucket_logging import BucketHandler

        def test_tracked(bucket_tracking):
            log = logging.getLogger("app.plugin")
            log.setLevel(logging.INFO)
            log.addHandler(BucketHandler())  # no key anywhere: BUCKET_OFFLINE is set
            log.info("hi", extra={"bucket_event": "Signed in", "user_id": 42})
            assert [(c["type"], c["event"], c["userId"]) for c in bucket_tracking] == [
                ("event", "Signed in", 42)
            ]
        """
    )
    # a subprocess: the entry point of the installed package registers the plugin
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # and in this process, by module name (so that coverage sees the plugin run)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:bucket_logging", "-p", "bucket_logging.pytest_plugin"
    )
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_by_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.value for e in entry_points(group="pytest11")}
    assert "bucket_logging.pytest_plugin" in names


@pytest.mark.parametrize("value", ["1", "true", "ON", "yes"])
def test_bucket_offline_needs_no_key(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    monkeypatch.setenv("BUCKET_OFFLINE", value)
    sender = BulkSender()
    assert sender.offline
    assert bucket_logging.get_sender().offline


@pytest.mark.parametrize("value", ["", "0", "false", "off"])
def test_bucket_offline_off_still_needs_a_key(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    monkeypatch.setenv("BUCKET_OFFLINE", value)
    with pytest.raises(ConfigurationError, match="BUCKET_OFFLINE=1"):
        BulkSender(require_key=True)


def test_an_empty_capture_without_any_front_end_explains_itself(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bucket_logging._runtime.state import state

    monkeypatch.setattr(state, "trackers_built", 0)  # as in a process that built none
    with caplog.at_level(logging.WARNING, logger="bucket_logging"), capture_tracking() as calls:
        logging.getLogger("app").info("x", extra={"bucket_event": "E", "user_id": 1})
    assert calls == []
    assert "no BucketHandler or BucketProcessor exists" in caplog.text


def test_an_empty_capture_with_a_front_end_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    BucketHandler(sender=BulkSender(offline=True))
    with caplog.at_level(logging.WARNING, logger="bucket_logging"), capture_tracking() as calls:
        pass
    assert calls == []
    assert caplog.records == []


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"bucket-logging {bucket_logging.__version__}"
