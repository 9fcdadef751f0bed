"""The relay's sender wrapper: which items of a request the sender refused.

Imported by the command line without the ``relay`` extra (it builds the front end the
relay tracks through), so it imports nothing of uvicorn or the relay's app.

May import: nothing of the package.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["RelaySender"]


class RelaySender:
    """The relay's sender: a BulkSender whose refusals are counted per request thread.

    The Tracker hands it each item (``enqueue``); the request that tracked the item
    learns whether the sender accepted all of them.
    """

    def __init__(self, sender: Any) -> None:
        self._sender = sender
        self.real = sender
        self._local = threading.local()
        self.shutdown_timeout = getattr(sender, "shutdown_timeout", 5.0)

    def enqueue(self, item: Any) -> bool:
        """Queue ``item`` on the real sender; a refusal is noted for this thread."""
        ok = bool(self._sender.enqueue(item))
        if not ok:
            self._local.refused = getattr(self._local, "refused", 0) + 1
        return ok

    def flush(self, timeout: float | None = None) -> bool:
        """The real sender's flush."""
        return bool(self._sender.flush(timeout))

    def take_refused(self) -> int:
        """How many items this thread had refused since the last call."""
        refused = getattr(self._local, "refused", 0)
        self._local.refused = 0
        return refused

    def pending(self) -> int:
        """Items the real sender holds, not yet delivered or dropped."""
        pending = getattr(self._sender, "pending", 0)  # a property of BulkSender
        return int(pending() if callable(pending) else pending)
