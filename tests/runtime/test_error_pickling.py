"""The library's errors survive a pickle round trip (Celery, multiprocessing)."""

from __future__ import annotations

import pickle

import pytest

from bucket_logging import DeliveryError, InvalidItemError, Item


def test_delivery_error_survives_pickling() -> None:
    error = DeliveryError("rejected", 3, 400, "items[0]: bad")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is DeliveryError
    assert (copy.reason, copy.count, copy.status, copy.detail) == (
        "rejected",
        3,
        400,
        "items[0]: bad",
    )
    assert str(copy) == str(error)


def test_invalid_item_error_survives_pickling() -> None:
    with pytest.raises(InvalidItemError) as raised:
        Item.feedback(user_id=1, feature_id="f", score=9)
    error = raised.value
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InvalidItemError
    assert copy.errors == error.errors
    assert copy.kind == error.kind == "feedback"
    assert str(copy) == str(error)
