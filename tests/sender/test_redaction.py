"""A server's answers are text from outside: redacted, then cut, then escaped.

They are redacted before they are cut (a cut first left part of the key behind), and
their control characters are escaped (a newline forged a second log line).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable

import httpx
import pytest
from support import KEY, Endpoint

from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._runtime import diagnostics as _diagnostics
from bucket_logging._runtime.state import state

MakeSender = Callable[..., BulkSender]


def fragments(secret: str, size: int = 8) -> list[str]:
    """Every run of ``size`` characters of ``secret``: none may show anywhere."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def deliver_one(
    make_sender: MakeSender, answer: httpx.Response, **options: object
) -> list[DeliveryError]:
    errors: list[DeliveryError] = []
    endpoint = Endpoint(lambda request, n: answer)
    sender = make_sender(transport=endpoint.transport(), on_error=errors.append, **options)
    sender.enqueue(Item.event("e", 1))
    assert sender.flush(5)
    return errors


def test_a_long_error_page_echoing_the_key_is_redacted_before_it_is_cut(
    make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    # The key sits across the old 300-character cut: 280 characters, then the path.
    page = "N" * 280 + f"<p>/{KEY}/bulk was not found</p>"
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        errors = deliver_one(make_sender, httpx.Response(404, text=page))
    assert [e.reason for e in errors] == ["client_error"]
    shown = errors[0].detail + caplog.text
    for piece in fragments(KEY):
        assert piece not in shown


def test_a_percent_encoded_key_is_redacted_too(
    make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    key = "trKey/with+odd=chars-0042"
    upper = urllib.parse.quote(key, safe="")  # trKey%2Fwith%2Bodd%3Dchars-0042
    lower = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), upper)
    for form in (upper, lower, urllib.parse.quote_plus(key)):
        page = f"no route for /{form}/bulk"
        with caplog.at_level(logging.WARNING, logger="bucket_logging"):
            errors = deliver_one(make_sender, httpx.Response(404, text=page), tracking_key=key)
        assert "<tracking-key>" in errors[0].detail
        assert form not in errors[0].detail
        assert form not in caplog.text
        state.reset()


def test_control_characters_from_the_server_are_escaped(
    make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "bad item\nCRITICAL root: forged line\x1b[2J\u202eevil"
    body = {"success": False, "error": {"code": "BODY_VALIDATION_FAILED", "message": forged}}
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        errors = deliver_one(make_sender, httpx.Response(400, json=body))
    assert [e.reason for e in errors] == ["rejected"]
    for text in (errors[0].detail, *(r.getMessage() for r in caplog.records)):
        assert "\n" not in text
        assert "\x1b" not in text
        assert "\u202e" not in text
    assert "forged line\\x1b[2J\\u202eevil" in errors[0].detail
    assert "bad item\\nCRITICAL" in caplog.text


def test_escape_controls_leaves_ordinary_text_alone() -> None:
    text = "Ünïcode, emoji 🎉, quotes \"'\\ and spaces"
    assert _diagnostics.escape_controls(text) == text
    assert _diagnostics.escape_controls("a\tb\r\n\x00\x7f\x85") == "a\\tb\\r\\n\\x00\\x7f\\x85"


def test_outside_text_is_cut_after_redaction() -> None:
    _diagnostics.register_secret(KEY)
    text = "x" * 290 + KEY
    out = _diagnostics.outside_text(text, 300)
    assert len(out) == 300
    assert out.endswith("...")
    for piece in fragments(KEY):
        assert piece not in out
