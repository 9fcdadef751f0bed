"""bucket_logging: turn log statements into Bucket tracking calls.

Tag a log record (``log.info("sent", extra={"bucket_event": "Sent message"})``) or a
structlog event with the same keys, and it also becomes a Bucket ``user``,
``company``, ``event`` or ``feedback`` call, shipped in the background through the
bulk endpoint.
"""

from __future__ import annotations

from ._config import REFLAG_BASE_URL, REFLAG_EU_BASE_URL
from ._exceptions import BucketLoggingError, ConfigurationError, DeliveryError, InvalidItemError
from ._format import format_call
from ._handler import BucketHandler
from ._items import Item
from ._loguru import LoguruSink
from ._processor import BucketProcessor
from ._sender import BulkSender, SenderStats, aflush, flush, get_sender
from ._server import TrackingServer
from ._version import __version__ as __version__

__all__ = [
    "REFLAG_BASE_URL",
    "REFLAG_EU_BASE_URL",
    "BucketHandler",
    "BucketLoggingError",
    "BucketProcessor",
    "BulkSender",
    "ConfigurationError",
    "DeliveryError",
    "InvalidItemError",
    "Item",
    "LoguruSink",
    "SenderStats",
    "TrackingServer",
    "aflush",
    "flush",
    "format_call",
    "get_sender",
]
