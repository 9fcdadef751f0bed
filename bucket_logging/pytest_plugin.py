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

**The tracking plan.** With ``bucket_tracking_plan = plans/tracking.yaml`` in the
pytest configuration (or ``--bucket-tracking-plan``, or ``BUCKET_TRACKING_PLAN``), every
call the tests capture (the fixture, ``capture_tracking``) is checked against the plan,
and the session ends with ``tracking plan: 14 of 17 events emitted by the tests; never:
...`` and the violations seen, each with the first test that made it.
``bucket_plan_fail_on_violations`` and ``bucket_plan_fail_on_unemitted`` (ini, or
``--bucket-plan-fail-on-violations`` / ``--bucket-plan-fail-on-unemitted``) fail the
session for them (exit status 1), for CI.
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


#: The session's tracking plan check (None: no plan).
_plan_check: Any = None


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``bucket_offline`` setting (on by default) and the tracking plan's options."""
    parser.addini(
        "bucket_offline",
        "bucket_logging: set BUCKET_OFFLINE=1 for the run, before collection (default true)",
        type="bool",
        default=True,
    )
    group = parser.getgroup("bucket_logging")
    parser.addini(
        "bucket_tracking_plan",
        "bucket_logging: a tracking plan (YAML or JSON) the captured calls are checked "
        "against (default: BUCKET_TRACKING_PLAN)",
        default="",
    )
    group.addoption(
        "--bucket-tracking-plan",
        dest="bucket_tracking_plan",
        default=None,
        help="a tracking plan the calls captured by the tests are checked against",
    )
    for name, what in (
        ("violations", "a captured call breaks the tracking plan"),
        ("unemitted", "a planned event was never emitted by the tests"),
    ):
        parser.addini(
            f"bucket_plan_fail_on_{name}",
            f"bucket_logging: fail the session when {what}",
            type="bool",
            default=False,
        )
        group.addoption(
            f"--bucket-plan-fail-on-{name}",
            dest=f"bucket_plan_fail_on_{name}",
            action="store_true",
            default=False,
            help=f"fail the session when {what}",
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
    _start_plan(config)
    config.addinivalue_line(
        "markers",
        f"{_ONLINE_MARK}: bucket_logging: senders built during this test are online "
        f"({_VARIABLE} is unset while it runs)",
    )


def _start_plan(config: pytest.Config) -> None:
    global _plan_check
    path = config.getoption("bucket_tracking_plan", None) or config.getini("bucket_tracking_plan")
    if path and not os.path.isabs(path) and not config.getoption("bucket_tracking_plan", None):
        path = str(config.rootpath / path)  # (an ini path is the project's)
    path = path or os.environ.get("BUCKET_TRACKING_PLAN", "")
    if not path:
        return
    from ._tracking.plan_session import PlanSession  # noqa: PLC0415 - only with a plan

    try:
        _plan_check = PlanSession(path)
    except Exception as exc:  # a ConfigurationError: the file, the line, the entry
        raise pytest.UsageError(str(exc)) from None
    _plan_check.install()


def _option(config: pytest.Config, name: str) -> bool:
    return bool(config.getoption(name, False) or config.getini(name))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Where the captured calls are made (for the plan's report)."""
    if _plan_check is not None:
        _plan_check.place = item.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session for the plan when the options say so."""
    check = _plan_check
    if check is None:
        return
    config = session.config
    failed = (_option(config, "bucket_plan_fail_on_violations") and check.violations) or (
        _option(config, "bucket_plan_fail_on_unemitted") and check.never()
    )
    if failed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The plan's coverage by the tests, and the violations they made."""
    if _plan_check is not None:
        for line in _plan_check.summary():
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the environment back as it was."""
    global _set_here, _plan_check
    if _plan_check is not None:
        _plan_check.uninstall()
        _plan_check = None
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
