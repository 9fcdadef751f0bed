"""The logging set-up every stop app shares: one tagged logger with a BucketHandler."""

from __future__ import annotations

import logging
import os

from bucket_logging import BucketHandler


def tracked_logger(name: str, **options: object) -> logging.Logger:
    """``name`` at INFO with a BucketHandler (key and URL from the environment).

    ``STOP_APP_FLUSH_INTERVAL`` (default 30 s) keeps events queued until the stop.
    """
    options.setdefault("flush_interval", float(os.environ.get("STOP_APP_FLUSH_INTERVAL", "30")))
    log = logging.getLogger(name)
    log.setLevel(logging.INFO)
    log.addHandler(BucketHandler(**options))  # type: ignore[arg-type]
    return log


def track(log: logging.Logger, event: str, n: int) -> None:
    """Log one tagged event, numbered ``n``, from this process."""
    log.info(
        "%s %d",
        event,
        n,
        extra={
            "user_id": "u1",
            "bucket_event": event,
            "bucket_attributes": {"n": n, "pid": os.getpid()},
        },
    )
