"""The relay's bounds: one immutable-by-convention record of every limit it enforces.

May import: nothing of the package.
"""

from __future__ import annotations

__all__ = ["Limits"]


class Limits:
    """The relay's bounds (see the module documentation)."""

    def __init__(
        self,
        *,
        max_body: int = 10 * 1024 * 1024,
        max_decoded: int = 32 * 1024 * 1024,
        max_concurrent: int = 8,
        max_connections: int = 64,
        max_pending: int = 100_000,
        max_objects: int = 2_000_000,
        request_timeout: float = 30.0,
        retry_after: int = 5,
        head_timeout: float = 5.0,
        dedupe_window: float = 600.0,
        fsync: bool = False,
    ) -> None:
        self.max_body = max_body
        self.max_decoded = max_decoded
        self.max_concurrent = max_concurrent
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.max_objects = max_objects
        self.request_timeout = request_timeout
        self.retry_after = retry_after
        #: seconds a request head may take (of the connection, or of its first byte)
        self.head_timeout = head_timeout
        #: seconds a tracked body is remembered: an identical one is not tracked again
        self.dedupe_window = dedupe_window
        #: answer 200 only once the spool's journal is fsynced (group commit)
        self.fsync = fsync
