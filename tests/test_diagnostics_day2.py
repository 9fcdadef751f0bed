"""Issue 12 (day two): the library tells its users what is going on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bucket_logging import BulkSender, Item, TrackingServer, _diagnostics

from _helpers import FAST, KEY, _fresh_rate_limits  # noqa: F401


class Lines(logging.Handler):
    """Every line the ``bucket_logging`` logger emits, formatted ``name: message``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[list[str]]:
    handler = Lines()
    _diagnostics.logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        _diagnostics.logger.removeHandler(handler)


def _event(name: str = "Signed in", user: str = "u1") -> Item:
    return Item.event(name, user_id=user)


# -- item 5: small things ---------------------------------------------------------------


def test_a_delivery_message_names_the_library_once(lines: list[str]) -> None:
    with TrackingServer() as srv:
        srv.reject_items(lambda call: True)
        sender = BulkSender(KEY, base_url=srv.url, **FAST)
        try:
            sender.enqueue(_event())
            assert sender.flush(5)
        finally:
            sender.close(2)
    rejected = [line for line in lines if "rejected" in line]
    assert rejected, lines
    for line in lines:
        assert "bucket_logging: bucket_logging:" not in line
    assert rejected[0].count("rejected by the server") == 1, rejected[0]


def test_without_any_handler_the_last_resort_line_says_whose_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(_diagnostics.logger, "handlers", [])
    _diagnostics.report("t", "bucket_logging: something %s", "odd")
    assert capsys.readouterr().err == "bucket_logging: something odd\n"
