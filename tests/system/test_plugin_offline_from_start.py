"""The pytest plugin makes a test run offline before collection: an app that builds its
BucketProcessor / BucketHandler at import (as the README shows) is imported by a test module
or a conftest with no tracking key; ``@pytest.mark.bucket_online`` asks for real senders;
``bucket_offline = false`` and an explicit ``BUCKET_OFFLINE`` turn it off."""

from __future__ import annotations

import pytest
from support import TRACKING_ENV

pytest_plugins = ["pytester"]

APP = """
    import logging

    import structlog
    from bucket_logging import BucketHandler, BucketProcessor

    structlog.configure(processors=[BucketProcessor(), structlog.processors.JSONRenderer()])
    logging.getLogger("app").addHandler(BucketHandler())
    log = structlog.get_logger("app")

    def sign_in(user_id):
        log.info("signed in", bucket_event="Signed in", user_id=user_id)
"""

TEST = """
    import pytest
    import app
    from bucket_logging import BulkSender, ConfigurationError

    def test_sign_in_is_tracked(bucket_tracking):
        app.sign_in(42)
        assert [c["event"] for c in bucket_tracking] == ["Signed in"]

    def test_senders_are_offline():
        assert BulkSender().offline

    @pytest.mark.bucket_online
    def test_a_test_that_asks_for_a_real_sender_gets_one():
        with pytest.raises(ConfigurationError, match="no Bucket tracking key"):
            BulkSender(require_key=True)  # online: it needs a key
"""


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)


def test_an_app_built_at_import_is_collected_with_no_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP, test_app=TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_conftest_that_imports_the_app_is_offline_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP, test_app=TEST)
    pytester.makeconftest("import app  # noqa: F401")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_bucket_offline_false_in_the_configuration_turns_it_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_REQUIRE_KEY", "1")  # (online without a key: an error)
    pytester.makepyfile(app=APP, test_app=TEST)
    pytester.makeini("[pytest]\nbucket_offline = false\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ConfigurationError: no Bucket tracking key*"])


def test_an_explicit_bucket_offline_is_left_as_it_is(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_OFFLINE", "0")
    monkeypatch.setenv("BUCKET_REQUIRE_KEY", "1")  # (online without a key: an error)
    pytester.makepyfile(app=APP, test_app=TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)


def test_in_process_by_module_name(pytester: pytest.Pytester) -> None:
    # (in this process, so that coverage sees the plugin's hooks run)
    pytester.makepyfile(
        test_env="""
        import os
        import pytest

        def test_offline():
            assert os.environ["BUCKET_OFFLINE"] == "1"

        @pytest.mark.bucket_online
        def test_online():
            assert "BUCKET_OFFLINE" not in os.environ
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:bucket_logging", "-p", "bucket_logging.pytest_plugin"
    )
    result.assert_outcomes(passed=2)
    import os

    assert "BUCKET_OFFLINE" not in os.environ  # put back at the end of the run
