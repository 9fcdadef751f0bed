"""One loopback check decides both the relay's token rule and the insecure-URL warning."""

from __future__ import annotations

import logging

import pytest

from bucket_logging._runtime import diagnostics
from bucket_logging._runtime.diagnostics import is_loopback, warn_if_insecure
from bucket_logging._runtime.state import state

HOSTS = [
    ("127.0.0.1", True),
    ("127.0.0.2", True),
    ("localhost", True),
    ("LOCALHOST", True),
    ("localhost.localdomain", True),
    ("ip6-localhost", True),
    ("::1", True),
    ("[::1]", True),
    ("0.0.0.0", False),
    ("::", False),
    ("10.0.0.1", False),
    ("app.localhost", True),
    ("localhost.", True),
    ("localhost.example.com", False),
    ("notlocalhost", False),
    ("example.com", False),
    ("", False),
]


def test_the_relay_uses_the_one_loopback_check() -> None:
    pytest.importorskip("uvicorn")
    from bucket_logging._relay import serve

    assert serve.is_loopback is is_loopback


@pytest.mark.parametrize(("host", "loopback"), HOSTS)
def test_a_host_is_loopback_only_when_it_names_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("host", "loopback"), HOSTS)
def test_plain_http_is_warned_about_exactly_when_the_host_is_not_loopback(
    host: str, loopback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    if not host or ":" in host.strip("[]"):
        host = f"[{host.strip('[]')}]" if host else host
    state.reset()
    with caplog.at_level(logging.WARNING, logger=diagnostics.LOGGER_NAME):
        warn_if_insecure(f"http://{host}:8787", True)
    warned = "plain http" in caplog.text
    assert warned is (not loopback)
