"""bucket_logging: turn log statements into Bucket tracking calls.

Tag a log record (``log.info("sent", extra={"bucket_event": "Sent message"})``) or a
structlog event with the same keys, and it also becomes a Bucket ``user``,
``company``, ``event`` or ``feedback`` call, shipped in the background through the
bulk endpoint.
"""

from __future__ import annotations

from ._config import REFLAG_BASE_URL, REFLAG_EU_BASE_URL
from ._exceptions import (
    BucketLoggingError,
    ConfigurationError,
    DeliveryError,
    InvalidItemError,
    RefusedCallError,
)
from ._format import format_call
from ._handler import BucketHandler
from ._items import Item
from ._loguru import LoguruSink
from ._middleware import BucketASGIMiddleware, BucketDjangoMiddleware
from ._processor import BucketProcessor
from ._sender import BulkSender, SenderStats
from ._server import TrackingServer
from ._shared import aflush, flush, get_sender
from ._track import track
from ._version import __version__ as __version__

__all__ = [
    "REFLAG_BASE_URL",
    "REFLAG_EU_BASE_URL",
    "BucketASGIMiddleware",
    "BucketDjangoMiddleware",
    "BucketHandler",
    "BucketLoggingError",
    "BucketProcessor",
    "BulkSender",
    "ConfigurationError",
    "DeliveryError",
    "InvalidItemError",
    "Item",
    "LoguruSink",
    "RefusedCallError",
    "SenderStats",
    "TrackingServer",
    "aflush",
    "flush",
    "format_call",
    "get_sender",
    "track",
]
