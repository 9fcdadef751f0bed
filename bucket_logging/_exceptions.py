"""The one error hierarchy of bucket_logging.

Every exception the library raises on purpose derives from :class:`BucketLoggingError`,
so ``except bucket_logging.BucketLoggingError`` catches them all. Log calls never raise:
these are raised only by explicit API calls (constructing a sender, building an item).

    BucketLoggingError
    ├── ConfigurationError   (also a ValueError)  bad or missing settings
    ├── InvalidItemError     (also a ValueError)  a tracking item the API would reject
    └── DeliveryError        items that could not be delivered (given to on_error)
        └── RefusedCallError a record's call not sent: its tags were wrong (on_error)
"""

from __future__ import annotations

__all__ = [
    "BucketLoggingError",
    "ConfigurationError",
    "DeliveryError",
    "InvalidItemError",
    "RefusedCallError",
]


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

    def __reduce__(self) -> tuple[type[InvalidItemError], tuple[list[str], str | None]]:
        # (pickled as built, not from the message: errors cross processes in Celery)
        return type(self), (self.errors, self.kind)


class DeliveryError(BucketLoggingError):
    """Items that could not be delivered, as passed to a sender's ``on_error`` callback.

    Never raised by a log call: a sender hands it to ``on_error`` and reports it on the
    ``bucket_logging`` logger.

    Attributes:
        reason: why, one of ``"rejected"`` (the server answered 400 for these items),
            ``"client_error"`` (another 4xx, e.g. a wrong tracking key or URL),
            ``"retries_exhausted"``, ``"queue_full"``, ``"shutdown"`` (the exit deadline passed),
            ``"closed"`` (also when the sender thread could not start), ``"internal_error"``
            (an unexpected error while delivering); with a spool also ``"spool_full"``,
            ``"spool_expired"`` and ``"spool_error"``.
        count: how many items.
        status: the HTTP status of the last answer, if there was one.
        detail: the server's message or the network error, without the tracking key.
    """

    def __init__(
        self, reason: str, count: int, status: int | None = None, detail: str = ""
    ) -> None:
        self.reason = reason
        self.count = count
        self.status = status
        self.detail = detail
        text = f"{count} item(s) not delivered: {reason}"
        if status is not None:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        super().__init__(text)

    def __reduce__(self) -> tuple[type[DeliveryError], tuple[str, int, int | None, str]]:
        return type(self), (self.reason, self.count, self.status, self.detail)


class RefusedCallError(DeliveryError):
    """A log record's tracking call that was never queued: its tags or values were wrong.

    Passed to ``on_error`` like the other :class:`DeliveryError` (so a callback that
    handles those sees these too) and counted in ``stats.refused``.

    Attributes:
        reason: one of ``"orphan_tags"``, ``"missing_id"``, ``"invalid_tag"``,
            ``"invalid_item"``, ``"unknown_tag"``, ``"plan_violation"`` (see
            ``_ledger.REFUSAL_REASONS``).
        kind: the call: ``"event"``, ``"user"``, ``"company"``, ``"feedback"`` or
            ``"tags"``.
        detail: what was wrong, as reported.
    """

    def __init__(self, reason: str, kind: str, detail: str = "") -> None:
        self.kind = kind
        super().__init__(reason, 1, None, detail)

    def __reduce__(self) -> tuple[type[DeliveryError], tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.reason, self.kind, self.detail)
