"""The pytest plugin checks the calls the tests capture against the tracking plan: the
report at the end of the session (which planned events the tests emitted, which never,
the violations and the first test that made each), and the options that fail the session
for violations and for planned events never emitted (ini and command line)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

# loaded here, before pytester's in-process runs: they drop the modules they import, and
# PyYAML's C loader, which cannot be imported twice, would then see another yaml module
import yaml  # noqa: F401

pytest_plugins = ["pytester"]

PLAN = """\
events:
  Signed in:
    attributes:
      method: {type: string, enum: [password, sso]}
    required: [method]
  Signed out: {}
  Exported data:
    attributes:
      format: {type: string}
user:
  attributes:
    name: {type: string}
"""

APP = """\
import logging
from bucket_logging import BucketHandler

log = logging.getLogger("plan_example_app")
log.setLevel(logging.INFO)
if not log.handlers:  # (pytester's in-process runs import the app again)
    log.addHandler(BucketHandler())

def sign_in(user, method):
    log.info("%s signed in", user, extra={
        "bucket_event": "Signed in", "user_id": user, "bucket_attributes": {"method": method}})

def sign_out(user):
    log.info("%s signed out", user, extra={"bucket_event": "Signed out", "user_id": user})
"""

TESTS = """\
from bucket_logging.testing import capture_tracking
import app

def test_sign_in(bucket_tracking):
    app.sign_in("ada", "password")
    assert [c["event"] for c in bucket_tracking] == ["Signed in"]

def test_sign_in_badly(bucket_tracking):
    app.sign_in("bob", "magic")

def test_sign_out():
    with capture_tracking() as calls:
        app.sign_out("ada")
    assert len(calls) == 1
"""


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.Pytester]:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    monkeypatch.delenv("BUCKET_OFFLINE", raising=False)
    monkeypatch.delenv("BUCKET_TRACKING_PLAN", raising=False)
    (pytester.path / "plans").mkdir()
    (pytester.path / "plans" / "tracking.yaml").write_text(PLAN)
    pytester.makepyfile(app=APP, test_app=TESTS)
    yield pytester
    # the in-process runs' handler stays on the logger (logging is the process's)
    logging.getLogger("plan_example_app").handlers.clear()


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:bucket_logging", "-p", "bucket_logging.pytest_plugin",
        *args,
    )  # fmt: skip


def test_the_session_ends_with_the_plan_coverage_and_the_violations(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\nbucket_tracking_plan = plans/tracking.yaml\n")
    result = _run(project)
    result.assert_outcomes(passed=3)
    assert result.ret == 0  # reported, not failed, by default
    result.stdout.fnmatch_lines(
        [
            "tracking plan: 2 of 3 events emitted by the tests; never: Exported data",
            "tracking plan: 1 violation(s) of 1 kind(s) (*tracking.yaml):",
            "  invalid_value: 'Signed in', attribute 'method': * x1 "
            "(first in test_app.py::test_sign_in_badly)",
        ]
    )


def test_no_plan_no_report(project: pytest.Pytester) -> None:
    result = _run(project)
    result.assert_outcomes(passed=3)
    assert "tracking plan" not in result.stdout.str()


def test_the_plan_from_the_environment_and_the_failing_options_of_the_command_line(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_TRACKING_PLAN", str(project.path / "plans" / "tracking.yaml"))
    result = _run(project, "--bucket-plan-fail-on-violations")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result = _run(project, "--bucket-plan-fail-on-unemitted", "-k", "not badly")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["tracking plan: 2 of 3 events emitted by the tests; never: *"])


def test_the_failing_options_of_the_ini_file(project: pytest.Pytester) -> None:
    project.makeini(
        "[pytest]\nbucket_tracking_plan = plans/tracking.yaml\n"
        "bucket_plan_fail_on_unemitted = true\n"
    )
    assert _run(project).ret == pytest.ExitCode.TESTS_FAILED
    # every planned event emitted, no violation: the strict session passes
    project.makepyfile(
        test_export="""
        import logging
        def test_export(bucket_tracking):
            logging.getLogger("plan_example_app").info("x", extra={
                "bucket_event": "Exported data", "user_id": 1,
                "bucket_attributes": {"format": "csv"}})
        """
    )
    project.makeini(
        "[pytest]\nbucket_tracking_plan = plans/tracking.yaml\n"
        "bucket_plan_fail_on_unemitted = true\nbucket_plan_fail_on_violations = true\n"
    )
    result = _run(project, "-k", "not badly")
    result.stdout.fnmatch_lines(["tracking plan: 3 of 3 events emitted by the tests"])
    assert result.ret == 0


def test_a_plan_that_does_not_load_stops_the_session_with_its_line(
    project: pytest.Pytester,
) -> None:
    (project.path / "plans" / "tracking.yaml").write_text("events:\n  A:\n    action: shout\n")
    project.makeini("[pytest]\nbucket_tracking_plan = plans/tracking.yaml\n")
    result = _run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tracking.yaml, line 2: event 'A': action must be one of*"])
