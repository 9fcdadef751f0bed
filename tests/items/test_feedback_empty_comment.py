"""An empty feedback comment is no comment: left out beside a score, refused alone (the
spec asks for a score or a comment); a strict server (the local one) refuses ``""``."""

from __future__ import annotations

import httpx
import pytest
from support import FakeSender

from bucket_logging import InvalidItemError, Item, TrackingServer
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging._items.validation import validate_wire


def test_a_score_with_an_empty_comment_sends_no_comment() -> None:
    call = Item.feedback(1, feature_id="f", score=4, comment="").to_dict()
    assert call["score"] == 4
    assert "comment" not in call


def test_an_empty_comment_alone_is_refused() -> None:
    with pytest.raises(InvalidItemError) as info:
        Item.feedback(1, feature_id="f", comment="")
    assert "a score (1-5), a non-empty comment, or both" in str(info.value)


def test_a_tagged_feedback_with_an_empty_comment() -> None:
    sender = FakeSender()
    lines = JsonLines(sender=sender)
    assert lines.track(
        {"user_id": 1, "bucket_feedback": {"feature_id": "f", "score": 5, "comment": ""}}
    )
    [item] = sender.items
    call = item.to_dict()
    assert call["score"] == 5 and "comment" not in call


def test_a_tagged_feedback_with_only_an_empty_comment_is_refused() -> None:
    sender = FakeSender()
    lines = JsonLines(sender=sender)
    lines.track({"user_id": 1, "bucket_feedback": {"feature_id": "f", "comment": ""}})
    assert sender.items == []


def test_the_shared_validation_refuses_an_empty_comment_on_the_wire() -> None:
    wire = {"type": "feedback", "featureId": "f", "userId": 1, "score": 4, "comment": ""}
    assert validate_wire(wire)
    assert not validate_wire({**wire, "comment": "ok"})


def test_the_local_server_refuses_it_as_a_strict_server_does() -> None:
    body = [{"type": "feedback", "featureId": "f", "userId": 1, "score": 4, "comment": ""}]
    with TrackingServer(tracking_keys={"trStrictKey-123456789"}) as srv:
        url = f"http://127.0.0.1:{srv.port}/trStrictKey-123456789/bulk"
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400
        assert "comment" in answer.text
