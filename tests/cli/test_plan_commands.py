"""``bucket-logging plan status|infer|check`` and ``--plan`` for ``ship`` and ``relay``:
the places that emit each planned event in an example application (wrappers, a
dictConfig, an INI file, a JSON rules file), what the scan cannot see, a plan drafted from
a log then checked against it, exit statuses for CI; ``ship`` and ``relay`` check every
line's calls against the plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from support import KEY

from bucket_logging import TrackingServer
from bucket_logging._cli.main import main

PLAN = """\
events:
  Signed in:
    attributes:
      method: {type: string, enum: [password, sso]}
    required: [method]
  Signed out: {}
  Report viewed: {}
  Exported data:
    action: drop
    attributes:
      format: {type: string}
  Project created: {}
  Team joined: {}
  Comment added: {}
  Upgraded: {}
  File uploaded: {}
  Deleted account: {}
"""

EVENTS_PY = '''\
import logging
import logging.config

import structlog
from loguru import logger

from bucket_logging import track

log = logging.getLogger("app")
slog = structlog.get_logger()


def emit(name, user_id, **attributes):
    """A wrapper: its parameter is the event."""
    extra = {"bucket_event": name, "user_id": user_id, "bucket_attributes": attributes}
    log.info(name, extra=extra)


def emit_for_team(event_name, user):
    emit(event_name, user)  # a wrapper of the wrapper


class Analytics:
    def event(self, name, user):
        track(name, user_id=user)


def handlers(user, kind):
    log.info("signed in", extra={"bucket_event": "Signed in", "user_id": user})
    slog.info("report", bucket_event="Report viewed", user_id=user)
    logger.bind(bucket_event="Exported data").info("exported")
    track("Invoice paid", user_id=user)
    emit("Project created", user)
    emit_for_team("Team joined", user)
    Analytics().event("Comment added", user)
    log.info("dynamic", extra={"bucket_event": f"Opened {kind}", "user_id": user})


logging.config.dictConfig({
    "version": 1,
    "handlers": {"bucket": {
        "class": "bucket_logging.BucketHandler",
        "rules": [{"match": "User %s signed out", "event": "Signed out"}],
    }},
})


def on_anything(kind, user):  # a wrapper nobody calls with a literal
    log.info("dynamic", extra={"bucket_event": kind, "user_id": user})
'''

INI = """\
[handler_bucket]
class = bucket_logging.BucketHandler
args = ()
kwargs = {"offline": True, "rules": [{"match": "Upgraded to %s", "event": "Upgraded"}]}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("BUCKET_TRACKING_PLAN", raising=False)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "events.py").write_text(EVENTS_PY)
    (tmp_path / "logging.ini").write_text(INI)
    (tmp_path / "rules.json").write_text('[{"match": "File * uploaded", "event": "File uploaded"}]')
    (tmp_path / "plan.yaml").write_text(PLAN)
    return tmp_path


def test_plan_status_lists_each_planned_events_places_and_what_it_cannot_see(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    status = main(["plan", "status", "--plan", "plan.yaml"])
    out = capsys.readouterr().out
    assert status == 1  # an unplanned event, a planned one emitted nowhere
    places = dict(
        line.strip().split(": ", 1) for line in out.splitlines() if line.startswith("  ")
        and ": " in line and not line.strip().startswith(("./", "handlers"))
    )  # fmt: skip
    events_py = os.path.join(".", "app", "events.py")
    assert places["Signed in"] == f"{events_py}:29"
    assert places["Report viewed"] == f"{events_py}:30"  # structlog's keyword
    assert places["Exported data"] == f"{events_py}:31"  # loguru's bind
    assert places["Project created"] == f"{events_py}:33"  # through a wrapper
    assert places["Team joined"] == f"{events_py}:34"  # through a wrapper's wrapper
    assert places["Comment added"] == f"{events_py}:35"  # a method wrapping track()
    assert places["Signed out"] == f"{events_py}:43"  # a rule in a dictConfig
    assert places["Upgraded"] == f"{os.path.join('.', 'logging.ini')} [handler_bucket]"
    assert places["File uploaded"] == os.path.join(".", "rules.json")
    assert places["Deleted account"] == "nowhere"
    assert f"emitted in the code, not planned:\n  Invoice paid: {events_py}:32\n" in out
    assert "planned, emitted nowhere: Deleted account\n" in out
    assert f"{events_py}:36: bucket_event is not a literal (f'Opened {{kind}}')" in out
    assert "on_anything() passes its parameter 'kind' as the event" in out


def test_plan_status_passes_when_the_code_and_the_plan_agree(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "plan.yaml").write_text(
        PLAN.replace("  Deleted account: {}\n", "  Invoice paid: {}\n")
    )
    monkeypatch.setenv("BUCKET_TRACKING_PLAN", str(project / "plan.yaml"))
    assert main(["plan", "status", str(project)]) == 0
    assert "not planned" not in capsys.readouterr().out


def test_plan_commands_without_a_plan_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "status", str(project)]) == 2
    assert "no tracking plan: pass --plan FILE" in capsys.readouterr().err


def _log(path: Path, n: int, **extra: object) -> Path:
    lines = []
    for i in range(n):
        attributes = {"method": ["password", "sso"][i % 2], "seats": i}
        lines.append(
            {
                "timestamp": f"2026-01-02T03:04:{i % 60:02d}Z",
                "event": "signed in",
                "bucket_event": "Signed in",
                "user_id": i,
                "bucket_attributes": attributes,
            }
        )
        lines.append({"event": "profile", "bucket_user": {"name": f"u{i}"}, "user_id": i})
    lines.append({"event": "untagged", "user_id": 1})
    lines.append(
        {"type": "event", "event": "Exported data", "userId": 1, "attributes": {"format": "csv"}}
    )
    path.write_text("\n".join(json.dumps({**line, **extra}) for line in lines) + "\nnot json\n")
    return path


def test_infer_then_check_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path / "app.log", 12)
    plan = tmp_path / "drafted.yaml"
    assert main(["plan", "infer", str(log), "-o", str(plan)]) == 0
    drafted = yaml.safe_load(plan.read_text())
    assert drafted["events"]["Signed in"]["attributes"] == {
        "method": {"type": "string", "enum": ["password", "sso"]},
        "seats": {"type": "integer", "minimum": 0, "maximum": 11},
    }
    assert drafted["events"]["Signed in"]["required"] == ["method", "seats"]
    assert drafted["events"]["Exported data"]["attributes"] == {"format": {"type": "string"}}
    assert drafted["user"]["attributes"] == {"name": {"type": "string"}}
    capsys.readouterr()
    assert main(["plan", "check", str(log), "--plan", str(plan)]) == 0
    assert "tracking plan: 2 of 2 events emitted by the log" in capsys.readouterr().out
    # a later log that breaks the drafted plan: exit status 1, each violation with its line
    bad = tmp_path / "bad.log"
    bad.write_text(
        json.dumps({"bucket_event": "Signed in", "user_id": 1,
                    "bucket_attributes": {"method": "magic", "seats": 3}}) + "\n"
        + json.dumps({"bucket_event": "Signed In", "user_id": 1}) + "\n"
    )  # fmt: skip
    assert main(["plan", "check", str(bad), "--plan", str(plan)]) == 1
    out = capsys.readouterr().out
    assert "invalid_value: 'Signed in', attribute 'method'" in out and f"{bad}:1" in out
    assert "unplanned_event: 'Signed In': event 'Signed In' is not planned" in out
    assert f"{bad}:2" in out
    assert "never: Exported data" in out


def test_infer_reads_the_local_servers_records_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TrackingServer() as server:
        calls = [{"type": "event", "event": "Sent message", "userId": i,
                  "attributes": {"channel": "slack"}} for i in range(3)]  # fmt: skip
        assert httpx.post(f"{server.url}/{KEY}/bulk", json=calls, timeout=10).status_code == 200
        assert main(["plan", "infer", server.url, "-o", str(tmp_path / "p.json")]) == 0
    drafted = json.loads((tmp_path / "p.json").read_text())
    assert drafted["events"]["Sent message"]["attributes"] == {
        "channel": {"type": "string", "enum": ["slack"]}
    }


def _env(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    return {**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": url, **extra}


def test_ship_checks_every_line_against_the_plan(project: Path) -> None:
    log = project / "app.log"
    log.write_text(
        json.dumps({"bucket_event": "Signed in", "user_id": 1,
                    "bucket_attributes": {"method": "magic"}}) + "\n"
        + json.dumps({"bucket_event": "Exported data", "user_id": 2,
                      "bucket_attributes": {"format": "csv", "colour": "red"}}) + "\n"
        + json.dumps({"bucket_event": "Signed out", "user_id": 3}) + "\n"
    )  # fmt: skip
    with TrackingServer() as server:
        done = subprocess.run(
            [sys.executable, "-m", "bucket_logging", "ship", str(log),
             "--plan", str(project / "plan.yaml")],
            env=_env(server.url), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert server.wait_for(2, 10)
        events = [c["event"] for c in server.calls]
    assert events == ["Signed in", "Signed out"]  # Exported data's action: drop
    assert "event 'Signed in', attribute 'method'" in done.stderr
    assert "event 'Exported data', attribute 'colour'" in done.stderr
    assert "not sent" in done.stderr


def test_relay_checks_every_line_against_the_plan_from_the_environment(project: Path) -> None:
    with TrackingServer(tracking_keys=[KEY]) as server:
        env = _env(server.url, BUCKET_TRACKING_PLAN=str(project / "plan.yaml"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "bucket_logging", "relay", "--port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            banner = ""
            assert proc.stderr is not None
            while "relay on http://" not in banner:
                line = proc.stderr.readline()
                assert line, banner
                banner += line
            url = banner.split("relay on ", 1)[1].split()[0] + "/"
            body = "\n".join(
                json.dumps(obj) for obj in (
                    {"bucket_event": "Signed In", "user_id": 1},
                    {"bucket_event": "Exported data", "user_id": 2,
                     "bucket_attributes": {"format": 3}},
                )
            )  # fmt: skip
            answer = httpx.post(url, content=body, timeout=30,
                                headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
            assert answer.status_code == 200
            assert server.wait_for(1, 10)
            assert [c["event"] for c in server.calls] == ["Signed In"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert "event 'Signed In' is not planned (a likely typo of 'Signed in'?)" in err
    assert "event 'Exported data', attribute 'format'" in err
