"""Keys a header or a URL cannot carry: ``check`` refuses every key a sender refuses, with
the same message, and neither ever shows the key (no traceback, no ``UnicodeEncodeError``)."""

from __future__ import annotations

import subprocess
import sys
import traceback

import pytest

from bucket_logging import BulkSender, ConfigurationError, TrackingServer
from bucket_logging._cli.check import check
from bucket_logging._cli.main import main

pytestmark = pytest.mark.usefixtures("clean_env")

BAD_KEYS = [
    pytest.param("sec_clé-SecretPart-1a2b3c", id="runtime-non-ascii"),
    pytest.param("trÉkey-SecretPart-1a2b3c", id="tracking-non-ascii"),
    pytest.param("sec_SecretPart-1a2b3c4d\n", id="trailing-newline"),
    pytest.param("sec_SecretPart 1a2b3c4d", id="inner-space"),
    pytest.param("trSecretPart-1a2b3c4d\t", id="trailing-tab"),
    pytest.param("sec_SecretPart\u200b1a2b3c4d", id="zero-width-space"),
    pytest.param("sec_SecretPart-1a2b3c4d\r\n", id="crlf"),
]

#: A part of every bad key above that must never be shown.
SECRET = "SecretPart"


def sender_refusal(key: str, **kwargs: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        BulkSender(key, base_url="http://127.0.0.1:9", handle_sigterm=False, **kwargs)  # type: ignore[arg-type]
    shown = "".join(traceback.format_exception(info.value))
    assert SECRET not in shown
    return str(info.value)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_sender_refuses_the_key_without_showing_it(key: str) -> None:
    message = sender_refusal(key)
    assert "tracking key" in message


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_refuses_it_with_the_same_message(key: str) -> None:
    message = sender_refusal(key)
    with TrackingServer() as srv:
        result = check(key, f"http://127.0.0.1:{srv.port}")
        assert srv.requests == [] if hasattr(srv, "requests") else True
    assert result.status == 2
    assert not result.ok
    assert result.line == message
    assert SECRET not in result.line


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_from_the_environment(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLAG_SECRET_KEY", key)
    result = check(None, "http://127.0.0.1:9")
    assert result.status == 2 and SECRET not in result.line
    assert "REFLAG_SECRET_KEY" in result.line


@pytest.mark.parametrize("key", BAD_KEYS)
def test_the_check_command_prints_no_key(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "--key", key, "--url", "http://127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert status == 2
    assert SECRET not in out + err
    assert "Traceback" not in out + err


def test_the_installed_command_with_a_pasted_newline() -> None:
    env = {"REFLAG_SECRET_KEY": "sec_SecretPart-1a2b3c4d\n", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "check", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert SECRET not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "newline" in proc.stdout + proc.stderr


def test_an_offline_sender_takes_any_key() -> None:
    sender = BulkSender("sec_clé-SecretPart-1a2b3c", offline=True, handle_sigterm=False)
    sender.close(0)


def test_good_keys_pass() -> None:
    for key in ("sec_abcDEF123-_", "trCqx4DGo1lk3Lcct5NHLjWy", "pub_x.y~z+/=12345"):
        BulkSender(key, base_url="http://127.0.0.1:9", handle_sigterm=False).close(0)


def test_a_refused_key_is_redacted_in_every_form_an_error_shows_it() -> None:
    from bucket_logging._runtime import diagnostics as _diagnostics

    key = "sec_SecretPart-9z8y7x6w\n"
    _diagnostics.register_secret(key)
    shown = f"LocalProtocolError: Illegal header value {('Bearer ' + key).encode()!r}; {key!r}"
    assert SECRET not in _diagnostics.redact(shown)
