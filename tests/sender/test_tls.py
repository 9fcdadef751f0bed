"""TLS settings: an SSL context is used as given; a plain-http URL or ``verify=False``
is said once (not offline, not with a transport).
"""

from __future__ import annotations

import logging
import ssl

import httpx
import pytest
from support import KEY

from bucket_logging import BulkSender
from bucket_logging._sender.http_stack import tls_verify


def test_an_ssl_context_is_used_as_given() -> None:
    context = ssl.create_default_context()
    assert tls_verify(context, None) is context
    assert tls_verify(False, None) is False
    made = tls_verify(True, None)
    assert isinstance(made, ssl.SSLContext) and made is not context


@pytest.mark.parametrize(
    ("url", "verify", "expected"),
    [
        ("http://tracking.example.com", True, ["plain http"]),
        ("https://tracking.example.com", False, ["verify=False"]),
        ("http://tracking.example.com", False, ["plain http", "verify=False"]),
        ("https://tracking.example.com", True, []),
        ("http://localhost:8787", True, []),
        ("http://127.0.0.1:8787", False, []),
        ("http://[::1]:8787", True, []),
        ("http://api.localhost:8787", True, []),
    ],
)
def test_insecure_settings_are_said_once(
    caplog: pytest.LogCaptureFixture, url: str, verify: bool, expected: list[str]
) -> None:
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        for _ in range(2):  # a second sender says nothing more
            BulkSender(KEY, base_url=url, verify=verify, handle_sigterm=False).close(0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(expected), messages
    for message, words in zip(messages, expected, strict=True):
        assert words in message
        assert KEY not in message


def test_insecure_settings_are_not_said_offline_or_with_a_transport(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        BulkSender(base_url="http://tracking.example.com", offline=True).close(0)
        BulkSender(
            KEY, base_url="http://tracking.example.com", transport=mock, handle_sigterm=False
        ).close(0)
    assert caplog.records == []
