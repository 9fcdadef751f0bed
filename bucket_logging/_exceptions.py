"""The one error hierarchy of bucket_logging.

Every exception the library raises on purpose derives from :class:`BucketLoggingError`,
so ``except bucket_logging.BucketLoggingError`` catches them all. Log calls never raise:
these are raised only by explicit API calls (constructing a sender, building an item).

    BucketLoggingError
    ├── ConfigurationError   (also a ValueError)  bad or missing settings
    └── InvalidItemError     (also a ValueError)  a tracking item the API would reject
"""

from __future__ import annotations

__all__ = ["BucketLoggingError", "ConfigurationError", "InvalidItemError"]


class BucketLoggingError(Exception):
    """Base class of every error raised by bucket_logging."""


class ConfigurationError(BucketLoggingError, ValueError):
    """A setting is missing or invalid, e.g. no tracking key was given."""


class InvalidItemError(BucketLoggingError, ValueError):
    """A tracking item that the Bucket API would reject.

    ``errors`` lists every problem found, each as a readable sentence; the
    exception's message joins them.
    """

    def __init__(self, errors: list[str], kind: str | None = None) -> None:
        self.errors = list(errors)
        self.kind = kind
        prefix = f"invalid {kind} item: " if kind else "invalid item: "
        super().__init__(prefix + "; ".join(self.errors))
