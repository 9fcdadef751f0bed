"""The pytest plugin of bucket_logging: the ``bucket_tracking`` fixture.

Installed with the package (an entry point in the ``pytest11`` group), so a test
suite needs no set-up::

    def test_sign_in_is_tracked(client, bucket_tracking):
        client.post("/login", data={"user": "ada"})
        assert [c["event"] for c in bucket_tracking if c["type"] == "event"] == ["Signed in"]

The fixture captures the tracking calls made during the test, as
:func:`bucket_logging.testing.capture_tracking` does: nothing reaches a sender, so no
network is used. It also sets ``BUCKET_OFFLINE=1`` for the test, so that a
``BucketHandler`` or ``BucketProcessor`` built during the test needs no tracking key
(set it in the test environment too for those built at import time).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["bucket_tracking"]


@pytest.fixture
def bucket_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The tracking calls made during the test (dicts as they would be sent); none is sent."""
    from .testing import capture_tracking  # noqa: PLC0415 - not imported when pytest starts

    monkeypatch.setenv("BUCKET_OFFLINE", "1")
    with capture_tracking() as calls:
        yield calls
