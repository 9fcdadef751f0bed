"""What the examples share to run on their own: a local tracking server, and a report.

Not part of any example's lesson: each example's ``main()`` is what to read.
"""

from __future__ import annotations

import os

import bucket_logging
from bucket_logging import format_call


def start_local_server_unless_configured() -> bucket_logging.TrackingServer | None:
    """Without BUCKET_TRACKING_URL, start a local tracking server and point the library at it."""
    if os.environ.get("BUCKET_TRACKING_URL"):
        return None
    server = bucket_logging.TrackingServer().start()
    os.environ["BUCKET_TRACKING_URL"] = server.url
    os.environ.setdefault("BUCKET_TRACKING_KEY", "local-example-key")
    return server


def show_delivery(server: bucket_logging.TrackingServer | None) -> None:
    """Deliver what is queued, then say what arrived.

    With the local server, what it received from every process (a forked worker's
    calls too); otherwise what this process's sender delivered.
    """
    bucket_logging.flush(timeout=5)
    if server is None:
        print(f"{bucket_logging.get_sender().stats.sent} tracking call(s) delivered")
        return
    calls = server.calls
    print(f"{len(calls)} tracking call(s) delivered")
    for call in calls:
        print("  " + format_call(call))
    server.stop()
