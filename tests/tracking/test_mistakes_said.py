"""Common mistakes are said: a misspelled tag names the closest one, a processor after the
renderer says so once.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from support import KEY

from bucket_logging import BulkSender


@pytest.mark.parametrize(
    ("extra", "typo", "meant"),
    [
        ({"bucket_events": "Signed in", "user_id": "u1"}, "bucket_events", "bucket_event"),
        (
            {"bucket_event": "Signed in", "bucket_attribute": {"a": 1}, "user_id": "u1"},
            "bucket_attribute",
            "bucket_attributes",
        ),
        (
            {"bucket_user": True, "bucket_companys": True, "user_id": "u1"},
            "bucket_companys",
            "bucket_company",
        ),
    ],
)
def test_a_misspelled_tag_names_the_closest_one(
    lines: list[str], extra: dict[str, Any], typo: str, meant: str
) -> None:
    from bucket_logging import BucketHandler

    sender = BulkSender(KEY, offline=True)
    handler = BucketHandler(sender=sender)
    log = logging.getLogger("app.day2.typo")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info(f"typo {typo}", extra=extra)
    finally:
        log.removeHandler(handler)
        sender.close(1)
    said = [line for line in lines if "is not a tag" in line]
    assert len(said) == 1, lines
    assert repr(typo) in said[0]
    assert f"did you mean {meant!r}?" in said[0]
    assert sender.stats.refused == {"unknown_tag": 1}


def test_a_structlog_typo_is_said_too(lines: list[str]) -> None:
    import structlog

    from bucket_logging import BucketProcessor

    processor = BucketProcessor(KEY, offline=True)
    processor(structlog.get_logger("x"), "info", {"event": "e", "bucket_events": "Signed in"})
    assert any("did you mean 'bucket_event'?" in line for line in lines), lines


def test_a_processor_after_the_renderer_says_so_once(
    lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import structlog

    from bucket_logging import BucketProcessor
    from bucket_logging._runtime.state import state

    state.reset()  # the warning is said once per process
    processor = BucketProcessor(KEY, offline=True)
    logger = structlog.get_logger("x")
    rendered = '{"event": "e", "bucket_event": "Signed in", "user_id": "u1"}'
    assert processor(logger, "info", rendered) is rendered  # type: ignore[arg-type]
    assert processor(logger, "info", rendered) is rendered  # type: ignore[arg-type]
    said = [line for line in lines if "already-rendered" in line]
    assert len(said) == 1, lines
    assert "place it before the renderer" in said[0]
