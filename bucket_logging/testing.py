"""Helpers for testing code that tracks through bucket_logging.

:func:`capture_tracking` collects the tracking calls a block of code would send,
with no network, the way :func:`structlog.testing.capture_logs` collects log
entries::

    import logging

    from bucket_logging.testing import capture_tracking

    def test_sign_in_is_tracked():
        with capture_tracking() as calls:
            sign_in(user_id=42)  # logs with extra={"bucket_event": "Signed in", ...}

        assert {"type": "event", "event": "Signed in", "userId": 42} in [
            {k: v for k, v in call.items() if k != "timestamp"} for call in calls
        ]

The handlers and processors must still be configured as in production (a
``BucketHandler`` on a logger the code logs to, a ``BucketProcessor`` in the
structlog chain); use ``offline=True`` or ``BUCKET_OFFLINE=1`` where no tracking key
is available. A capture that caught nothing while no handler or processor exists in
the process says so on the ``bucket_logging`` logger.

With pytest, the ``bucket_tracking`` fixture (installed with the package, see
:mod:`bucket_logging.pytest_plugin`) does the same for a whole test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._runtime import diagnostics as _diagnostics
from ._tracking import capture as _capture

__all__ = ["capture_tracking"]


@contextmanager
def capture_tracking() -> Iterator[list[dict[str, Any]]]:
    """Capture the tracking calls of every BucketHandler and BucketProcessor in the block.

    Yields a list that receives, in order, each call as the JSON object that would
    be sent: a dict with ``type`` (``"user"``, ``"company"``, ``"event"`` or
    ``"feedback"``), the camelCase fields of the Bucket API and ``timestamp``.
    Only valid calls are captured; invalid ones are reported on the
    ``bucket_logging`` logger as usual. Inside the block nothing reaches any sender
    (so nothing is sent, not even later). The capture is process-wide: calls made
    on other threads during the block are captured too. Blocks may be nested;
    each list receives the calls made while it is active.

    Note that a sender sends identical user and company updates only once within
    its dedupe window; the captured list shows every call, before that step.
    """
    calls: list[dict[str, Any]] = []
    _capture.start(calls)
    try:
        yield calls
    finally:
        _capture.stop(calls)
        _capture.checked(calls)  # the pytest plugin's tracking plan, when there is one
        if not calls and not _capture.trackers_built():
            _diagnostics.report(
                "capture-empty",
                "bucket_logging: capture_tracking() caught nothing, and no BucketHandler or "
                "BucketProcessor exists in this process: configure one as in production "
                "(offline=True or BUCKET_OFFLINE=1 needs no tracking key)",
            )
