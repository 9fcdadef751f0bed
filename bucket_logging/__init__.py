"""bucket_logging: turn log statements into Bucket tracking calls."""

from __future__ import annotations

from ._exceptions import BucketLoggingError, ConfigurationError, InvalidItemError
from ._items import Item

__all__ = [
    "BucketLoggingError",
    "ConfigurationError",
    "InvalidItemError",
    "Item",
]

__version__ = "0.1.0"
