"""bucket_logging: turn log statements into Bucket tracking calls.

Tag a log record (``log.info("sent", extra={"bucket_event": "Sent message"})``) or a
structlog event with the same keys, and it also becomes a Bucket ``user``,
``company``, ``event`` or ``feedback`` call, shipped in the background through the
bulk endpoint.
"""

from __future__ import annotations

from ._exceptions import (
    BucketLoggingError,
    ConfigurationError,
    DeliveryError,
    InvalidItemError,
    RefusedCallError,
)
from ._frontends.handler import BucketHandler
from ._frontends.loguru import LoguruSink
from ._frontends.processor import BucketProcessor
from ._items.item import Item
from ._sender.config import REFLAG_BASE_URL, REFLAG_EU_BASE_URL
from ._sender.sender import BulkSender, SenderStats
from ._sender.shared import aflush, flush, get_sender
from ._server.format import format_call
from ._server.server import TrackingServer
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
    "RefusedCallError",
    "SenderStats",
    "TrackingServer",
    "aflush",
    "flush",
    "format_call",
    "get_sender",
]
