"""The front ends under test, found wherever they are exported from.

``BucketHandler`` and ``BucketProcessor`` are re-exported by ``bucket_logging`` once
they are done; until then they live in ``bucket_logging._frontends.handler`` and
``bucket_logging._frontends.processor``. Either may be None when it does not exist yet: the
benchmark then reports its rows as unavailable instead of failing.
"""

from __future__ import annotations

from typing import Any

from bucket_logging import BulkSender, get_sender


def _find(public: str, module: str) -> Any:
    import importlib

    import bucket_logging

    found = getattr(bucket_logging, public, None)
    if found is not None:
        return found
    try:
        return getattr(importlib.import_module(module), public)
    except (ImportError, AttributeError):
        return None


BucketHandler: Any = _find("BucketHandler", "bucket_logging._frontends.handler")
BucketProcessor: Any = _find("BucketProcessor", "bucket_logging._frontends.processor")


def sender_of(frontend: Any, tracking_key: str, base_url: str) -> BulkSender:
    """The sender a handler or processor ships through."""
    for name in ("sender", "_sender"):
        sender = getattr(frontend, name, None)
        if isinstance(sender, BulkSender):
            return sender
    return get_sender(tracking_key, base_url=base_url)
