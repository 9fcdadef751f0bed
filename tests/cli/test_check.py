"""``bucket-logging check``: the key and URL against the local server, both APIs."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from bucket_logging import TrackingServer
from bucket_logging._cli.check import check
from bucket_logging._cli.main import main

TKEY = "trCheckSecretKey-5e6f7a8b"
RKEY = "sec_CheckSecretKey-1c2d3e4f"

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def url(host: str) -> Iterator[str]:
    """The server's URL by each host name in turn (conftest's ``host``)."""
    with TrackingServer(tracking_keys={TKEY, RKEY}) as srv:
        yield f"http://{host}:{srv.port}"
        # nothing was created: an empty bulk body holds no item
        assert srv.calls == []


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["check", *args])
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    assert len(lines) == 1, lines
    assert TKEY not in lines[0] and RKEY not in lines[0]
    return status, lines[0]


@pytest.mark.parametrize(("key", "api"), [(TKEY, "tracking"), (RKEY, "Runtime")])
def test_a_good_key(capsys: pytest.CaptureFixture[str], url: str, key: str, api: str) -> None:
    status, line = run(capsys, "--key", key, "--url", url)
    assert status == 0
    assert line.startswith("bucket-logging check: OK: ") and api in line


@pytest.mark.parametrize("key", ["trWrongKey-000000000", "sec_WrongKey-00000000"])
def test_a_wrong_key(capsys: pytest.CaptureFixture[str], url: str, key: str) -> None:
    status, line = run(capsys, "--key", key, "--url", url)
    assert status == 1
    assert "refuses the key" in line
    assert key not in line


@pytest.mark.parametrize("key", [TKEY, RKEY])
def test_a_closed_port(capsys: pytest.CaptureFixture[str], key: str, refused_url: str) -> None:
    status, line = run(capsys, "--key", key, "--url", refused_url, "--timeout", "5")
    assert status == 1
    assert "cannot reach" in line and "ConnectError" in line


def test_the_environment_is_read(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLAG_SECRET_KEY", RKEY)
    monkeypatch.setenv("REFLAG_API_BASE_URL", url)
    result = check()
    assert result.ok and "Reflag's Runtime API" in result.line
    monkeypatch.setenv("BUCKET_TRACKING_KEY", TKEY)
    monkeypatch.setenv("BUCKET_TRACKING_URL", url)
    result = check()
    assert result.ok and "Bucket's tracking API" in result.line


def test_unexpected_answers_and_no_key(url: str) -> None:
    result = check(RKEY, url + "/a/b")  # /a/b/bulk: no API path
    assert (result.ok, result.status) == (False, 2)
    assert "the URL has a path (/a/b)" in result.line
    not_there = httpx.MockTransport(lambda request: httpx.Response(404))
    result = check(RKEY, url, transport=not_there)
    assert (result.ok, result.status) == (False, 1)
    assert "unexpected answer" in result.line and "404" in result.line
    assert check().status == 2
    assert check(TKEY, "ftp://x").status == 2


def test_the_installed_command() -> None:
    with TrackingServer(tracking_keys={RKEY}) as srv:
        done = subprocess.run(
            [sys.executable, "-m", "bucket_logging", "check", "--url", srv.url],
            check=False,
            env={"REFLAG_SECRET_KEY": RKEY, "PATH": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bucket-logging check: OK")
    assert RKEY not in done.stdout + done.stderr


def test_the_key_is_logged_nowhere(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert check(TKEY, url).ok
        assert not check("trWrongKey-000000000", url).ok
    assert not [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    assert TKEY not in caplog.text and "trWrongKey-000000000" not in caplog.text


@pytest.mark.parametrize("keys", [None, {TKEY, RKEY}])
@pytest.mark.parametrize("key", [TKEY, RKEY])
def test_a_url_with_a_path_is_said_to_have_one(
    capsys: pytest.CaptureFixture[str], host: str, keys: set[str] | None, key: str
) -> None:
    with TrackingServer(tracking_keys=keys) as srv:
        status, line = run(capsys, "--key", key, "--url", f"http://{host}:{srv.port}/v1")
        assert srv.calls == []
    assert status == 2, line
    assert "the URL has a path (/v1)" in line
    assert f"(here http://{host}:{srv.port})" in line
    assert "refuses the key" not in line and "OK" not in line


def test_without_a_key_check_says_the_library_stays_off(capsys: pytest.CaptureFixture[str]) -> None:
    status, line = run(capsys)
    assert status == 2
    assert "no key" in line and "the library stays off" in line
