"""Every example (and the demo) runs, as a user would run it, and its calls arrive.

Each script runs in a subprocess with ``sys.executable``. All of them are started at
once (module fixture), each against its own :class:`TrackingServer` through
``BUCKET_TRACKING_URL`` and a test key, except one run of the demo with no
``BUCKET_*`` variables at all, which must start its own server. The tests then check
the exit status, the calls that arrived (exact counts where it matters) and that the
tracking key appears nowhere in the output.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bucket_logging import TrackingServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: A distinctive key: it must never show up in any output.
KEY = "trEXAMPLESkey-9d2f61c04b7e3a58"

#: Seconds all the scripts, run at once, may take (each takes about a second).
TIMEOUT = 30

HAS_FORK = hasattr(os, "fork")


@dataclass
class Run:
    """One script run: its process, its server (None: it started its own) and output."""

    script: str
    server: TrackingServer | None
    proc: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""

    @property
    def srv(self) -> TrackingServer:
        assert self.server is not None
        return self.server

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.srv.calls

    def describe(self) -> str:
        return (
            f"{self.script}: exit {self.proc.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


#: run name -> (script, with a test server)
RUNS: dict[str, tuple[str, bool]] = {
    "demo": ("demo.py", True),
    "demo_self_started": ("demo.py", False),
    "dictconfig": ("dictconfig_example.py", True),
    "fileconfig": ("fileconfig_example.py", True),
    "structlog": ("structlog_example.py", True),
    "structlog_bridged": ("structlog_bridged_example.py", True),
    "loguru": ("loguru_example.py", True),
    "django_settings": ("django_settings_example.py", True),
    "starlette_middleware": ("starlette_middleware_example.py", True),
    "gunicorn_conf": ("gunicorn_conf_example.py", True),
    "gunicorn_conf_self_started": ("gunicorn_conf_example.py", False),
    "serverless": ("serverless_example.py", True),
    "uvicorn_workers": ("uvicorn_workers_example.py", True),
}


def _env(server: TrackingServer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    if server is not None:
        env["BUCKET_TRACKING_URL"] = server.url
        env["BUCKET_TRACKING_KEY"] = KEY
    return env


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    """Start every script at once; wait for all of them (TIMEOUT in all)."""
    started: dict[str, Run] = {}
    try:
        for name, (script, with_server) in RUNS.items():
            server = TrackingServer().start() if with_server else None
            proc = subprocess.Popen(
                # faulthandler: a hung script shows where it hangs (see _stop).
                [sys.executable, "-X", "faulthandler", str(EXAMPLES / script)],
                cwd=ROOT,
                env=_env(server),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            started[name] = Run(script, server, proc)
        deadline = time.monotonic() + TIMEOUT
        for run in started.values():
            try:
                run.stdout, run.stderr = run.proc.communicate(
                    timeout=max(0.1, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                run.stdout, run.stderr = _stop(run.proc)
                run.stderr = f"(timed out after {TIMEOUT} s)\n{run.stderr}"
        yield started
    finally:
        for run in started.values():
            if run.proc.poll() is None:
                _stop(run.proc)
            if run.server is not None:
                run.server.stop()


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop a hung script; with SIGABRT where there is one, so faulthandler dumps its stacks."""
    abort = getattr(signal, "SIGABRT", None)
    if abort is not None and os.name != "nt":
        proc.send_signal(abort)
        try:
            return proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    return proc.communicate()


def _finished(runs: dict[str, Run], name: str) -> Run:
    """The run, checked for what every run must satisfy."""
    run = runs[name]
    assert run.proc.returncode == 0, run.describe()
    assert run.stderr == "", run.describe()
    assert KEY not in run.stdout + run.stderr
    return run


def _kinds(calls: list[dict[str, Any]]) -> Counter[tuple[str, str | None]]:
    """The calls as a multiset of (type, event name)."""
    return Counter((c["type"], c.get("event")) for c in calls)


def _event(calls: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [call] = [c for c in calls if c["type"] == "event" and c["event"] == name]
    return call


def test_every_example_is_run() -> None:
    scripts = {script for script, _ in RUNS.values()}
    assert scripts == {p.name for p in EXAMPLES.glob("*.py")}
    assert (EXAMPLES / "logging.ini").exists()


# --------------------------------------------------------------------------- the demo


DEMO_CALLS = Counter(
    {
        ("user", None): 1,
        ("company", None): 1,
        ("feedback", None): 1,
        ("event", "Signed in"): 1,
        ("event", "Sent message"): 1,
        ("event", "Paid invoice"): 1,
        ("event", "Exported data"): 1,
        ("event", "Rated export"): 1,
    }
)


def test_demo_against_a_configured_endpoint(runs: dict[str, Run]) -> None:
    run = _finished(runs, "demo")
    calls = run.calls
    assert _kinds(calls) == DEMO_CALLS
    # One record: user, company (associated with the user) and event.
    assert {"type": "user", "userId": "u-ada"}.items() <= calls[0].items()
    assert {"type": "company", "companyId": "acme", "userId": "u-ada"}.items() <= calls[1].items()
    # Ids bound with bind_contextvars, for structlog and stdlib records alike.
    for name in ("Sent message", "Paid invoice", "Exported data", "Rated export"):
        assert _event(calls, name)["userId"] == "u-ada"
        assert _event(calls, name)["companyId"] == "acme"
    # The zero-code rule, with the named record fields as attributes.
    assert _event(calls, "Exported data")["attributes"] == {"rows": 1200, "format": "csv"}
    [feedback] = [c for c in calls if c["type"] == "feedback"]
    assert feedback["featureId"] == "export"
    assert feedback["score"] == 5
    # The invalid tag is explained on the bucket_logging logger; it was not sent.
    assert "WARNING bucket_logging" in run.stdout
    assert "score must be a number from 1 to 5, got 9" in run.stdout
    assert f"8 tracking calls were delivered to {run.srv.url}" in run.stdout
    assert "dropped=none" in run.stdout


def test_demo_without_any_configuration_starts_its_own_server(runs: dict[str, Run]) -> None:
    run = _finished(runs, "demo_self_started")
    out = run.stdout
    assert "a local tracking server in this process, http://127.0.0.1:" in out
    assert "The tracking calls that arrived at the server (8):" in out
    assert "8 calls arrived in" in out
    # Reflag's Runtime API first (feedback at /feedback, the rest in /bulk), then Bucket's
    reflag = out.index("through Reflag's Runtime API")
    bucket = out.index("through Bucket's tracking API")
    assert reflag < out.index("8 calls arrived in 2 request(s): POST /bulk, POST /feedback.")
    assert bucket < out.index("8 calls arrived in 1 request(s): POST /<key>/bulk.")
    assert reflag < bucket
    assert "sec_demo-reflag-key" not in out + run.stderr
    assert "demo-tracking-key" not in out + run.stderr
    call_lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    for expected in (
        'event     user=u-ada company=acme  "Signed in"',
        'event     user=u-ada company=acme  "Exported data"  rows=1200 format=csv',
        'feedback  user=u-ada company=acme feature=export score=5 "Love the CSV export"',
    ):
        assert expected in call_lines, out
    assert "score must be a number from 1 to 5, got 9" in out


# --------------------------------------------------------------------------- the examples


def test_dictconfig_example(runs: dict[str, Run]) -> None:
    run = _finished(runs, "dictconfig")
    calls = run.calls
    assert _kinds(calls) == {
        ("user", None): 1,
        ("company", None): 1,
        ("event", "Signed up"): 1,
        ("event", "Viewed report"): 1,
    }
    assert _event(calls, "Signed up")["companyId"] == "acme"
    assert _event(calls, "Viewed report")["attributes"] == {"report": "weekly", "rows": 17}
    assert "4 tracking call(s) delivered" in run.stdout


def test_fileconfig_example(runs: dict[str, Run]) -> None:
    run = _finished(runs, "fileconfig")
    calls = run.calls
    assert _kinds(calls) == {
        ("company", None): 1,
        ("event", "Upgraded plan"): 1,
        ("event", "Exported data"): 1,
    }
    assert _event(calls, "Exported data")["attributes"] == {"format": "csv"}
    assert "INFO app.export: Exported 1200 rows" in run.stdout


def test_structlog_example(runs: dict[str, Run]) -> None:
    run = _finished(runs, "structlog")
    calls = run.calls
    assert _kinds(calls) == {
        ("user", None): 1,
        ("company", None): 1,
        ("event", "Signed in"): 1,
        ("event", "Exported report"): 1,
        ("feedback", None): 1,
    }
    assert all(c["userId"] == 42 for c in calls)
    assert _event(calls, "Exported report")["attributes"] == {"format": "pdf"}
    # The renderer after the processor still rendered every event, untracked ones too.
    assert run.stdout.count('"event": ') == 4


def test_loguru_example(runs: dict[str, Run]) -> None:
    run = _finished(runs, "loguru")
    calls = run.calls
    assert _kinds(calls) == {
        ("user", None): 1,
        ("company", None): 1,
        ("event", "Signed in"): 1,
        ("event", "Exported report"): 1,
        ("feedback", None): 1,
    }
    assert all(c["userId"] == 42 for c in calls)
    assert _event(calls, "Exported report") == {
        "type": "event",
        "event": "Exported report",
        "userId": 42,
        "companyId": "acme",
        "attributes": {"format": "pdf"},
        "timestamp": _event(calls, "Exported report")["timestamp"],
    }
    assert run.stdout.count(" INFO ") == 5  # loguru's own sink printed every record


def test_structlog_bridged_example_tracks_each_event_exactly_once(runs: dict[str, Run]) -> None:
    run = _finished(runs, "structlog_bridged")
    calls = run.calls
    assert _kinds(calls) == {
        ("event", "Sent message"): 3,
        ("event", "Viewed dashboard"): 1,
        ("event", "Exported invoice"): 1,
    }
    assert len(run.srv.requests) >= 1
    assert "5 tagged events logged, 5 tracked: each exactly once" in run.stdout
    assert run.stdout.count("message sent") == 3  # still rendered through logging


def test_django_settings_example(runs: dict[str, Run]) -> None:
    run = _finished(runs, "django_settings")
    calls = run.calls
    assert _kinds(calls) == {
        ("event", "Placed order"): 1,
        ("user", None): 1,
        ("event", "Hit missing page"): 1,
    }
    assert _event(calls, "Placed order")["attributes"] == {"total": 99.5, "items": 3}
    assert _event(calls, "Hit missing page")["attributes"] == {"status_code": 404}
    assert all(c["userId"] == 42 for c in calls)


def test_starlette_middleware_example_binds_ids_per_request(runs: dict[str, Run]) -> None:
    run = _finished(runs, "starlette_middleware")
    calls = run.calls
    assert Counter((c["event"], c["userId"], c["companyId"]) for c in calls) == {
        ("Sent message", "ada", "acme"): 1,
        ("Sent message", "bob", "globex"): 1,
        ("Viewed report", "ada", "acme"): 1,
    }
    assert "GET /reports/weekly -> 200" in run.stdout


@pytest.mark.skipif(not HAS_FORK, reason="os.fork() is not available")
def test_gunicorn_conf_example_delivers_master_and_worker_events_once(
    runs: dict[str, Run],
) -> None:
    run = _finished(runs, "gunicorn_conf")
    assert _kinds(run.calls) == {("event", "Deployed"): 1, ("event", "Worker booted"): 1}
    assert "worker exited with status 0" in run.stdout
    assert run.stdout.count("Release v42 started") == 1


def test_gunicorn_conf_example_on_its_own_counts_what_arrived_from_both_processes(
    runs: dict[str, Run],
) -> None:
    run = _finished(runs, "gunicorn_conf_self_started")
    listed = [line for line in run.stdout.splitlines() if line.startswith("  event")]
    assert len(listed) == 2  # the master's event and the worker's
    assert "2 tracking call(s) delivered" in run.stdout


def test_gunicorn_conf_example_imports_without_side_effects() -> None:
    """gunicorn imports the module for its settings: nothing may start then."""
    settings = runpy.run_path(str(EXAMPLES / "gunicorn_conf_example.py"), run_name="conf")
    bucket = settings["logconfig_dict"]["handlers"]["bucket"]
    assert bucket["class"] == "bucket_logging.BucketHandler"
    assert callable(settings["post_fork"])
    assert callable(settings["worker_exit"])
    assert settings["workers"] >= 1


def test_serverless_example_delivers_before_each_return(runs: dict[str, Run]) -> None:
    run = _finished(runs, "serverless")
    calls = run.calls
    assert [(c["event"], c["userId"]) for c in calls] == [
        ("Generated thumbnail", 1),
        ("Generated thumbnail", 2),
        ("Generated thumbnail", 3),
    ]
    assert "companyId" not in calls[2]
    # Each invocation's flush sent its call before the handler returned.
    assert run.stdout.count("delivered=True") == 3
    assert len(run.srv.requests) == 3


def test_uvicorn_workers_example_delivers_in_the_lifespan_shutdown(runs: dict[str, Run]) -> None:
    run = _finished(runs, "uvicorn_workers")
    assert _kinds(run.calls) == {("event", "Viewed report"): 2}
    # The lifespan line delivered both before the worker would have ended.
    assert "lifespan shutdown: delivered=True" in run.stdout
    assert len(run.srv.requests) >= 1
