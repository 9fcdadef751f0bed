"""The pytest plugin of bucket_logging: tests are offline from the start; the
``bucket_tracking`` fixture.

Installed with the package (an entry point in the ``pytest11`` group), so a test
suite needs no set-up::

    def test_sign_in_is_tracked(client, bucket_tracking):
        client.post("/login", data={"user": "ada"})
        assert [c["event"] for c in bucket_tracking if c["type"] == "event"] == ["Signed in"]

**Offline from the start.** Before pytest loads the first ``conftest.py`` or collects
a test module, the plugin sets ``BUCKET_OFFLINE=1`` for the whole run, so an
application that builds its ``BucketHandler`` or ``BucketProcessor`` at import time
(as the README shows) needs no tracking key and sends nothing from the tests. It
leaves the variable alone when the environment sets it already (``BUCKET_OFFLINE=0
pytest`` sends for real), and does nothing with ``bucket_offline = false`` in the
pytest configuration (``[tool.pytest.ini_options]``). A test that needs a real sender
(against a local ``TrackingServer``, say) is marked ``@pytest.mark.bucket_online``:
the variable is unset while it runs, so the senders it builds are online (senders
built before, at import, stay offline).

The fixture captures the tracking calls made during the test, as
:func:`bucket_logging.testing.capture_tracking` does: nothing reaches a sender, so no
network is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final

import pytest

__all__ = ["bucket_tracking"]

#: The variable the plugin sets, and the value it sets it to.
_VARIABLE: Final = "BUCKET_OFFLINE"
_ONLINE_MARK: Final = "bucket_online"

#: Whether this plugin set the variable (and so may unset it for a marked test).
_set_here = False


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``bucket_offline`` setting (on by default)."""
    parser.addini(
        "bucket_offline",
        "bucket_logging: set BUCKET_OFFLINE=1 for the run, before collection (default true)",
        type="bool",
        default=True,
    )


def _go_offline(config: pytest.Config) -> None:
    global _set_here
    if _set_here or _VARIABLE in os.environ:
        return
    try:
        wanted = bool(config.getini("bucket_offline"))
    except ValueError:  # (the setting is not registered: an odd plugin order)
        wanted = True
    if wanted:
        os.environ[_VARIABLE] = "1"
        _set_here = True


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Offline before the first ``conftest.py`` is imported (they may import the app)."""
    _go_offline(early_config)


def pytest_configure(config: pytest.Config) -> None:
    """Offline before collection (when the plugin was registered after the conftests),
    and the ``bucket_online`` marker."""
    _go_offline(config)
    config.addinivalue_line(
        "markers",
        f"{_ONLINE_MARK}: bucket_logging: senders built during this test are online "
        f"({_VARIABLE} is unset while it runs)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the environment back as it was."""
    global _set_here
    if _set_here:
        os.environ.pop(_VARIABLE, None)
        _set_here = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test marked ``bucket_online`` runs (set-up to tear-down) without the variable."""
    if not (_set_here and item.get_closest_marker(_ONLINE_MARK)):
        yield
        return
    value = os.environ.pop(_VARIABLE, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[_VARIABLE] = value


@pytest.fixture
def bucket_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The tracking calls made during the test (dicts as they would be sent); none is sent."""
    from .testing import capture_tracking  # noqa: PLC0415 - not imported when pytest starts

    monkeypatch.setenv(_VARIABLE, "1")
    with capture_tracking() as calls:
        yield calls
