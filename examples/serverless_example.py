"""A serverless function (AWS Lambda style) that flushes before returning.

The platform may freeze or discard the process as soon as the handler returns, so
the background sender might never get to send. The handler therefore calls
``bucket_logging.flush(timeout=2)`` before it returns: it waits (at most 2 s)
until what this invocation logged was delivered, and returns ``True`` when it was.
Logging is configured once per process, at import time (the cold start).

Run it: ``python examples/serverless_example.py`` invokes the handler three times
(without ``BUCKET_TRACKING_URL`` it starts a local tracking server and prints the
calls that arrived).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import bucket_logging

log = logging.getLogger("thumbnails")


def configure_logging() -> None:
    """Call at import time in the function's module (here: from ``__main__``).

    The runtime already put a handler on the root logger; add the Bucket one. The
    tracking key comes from the function's ``BUCKET_TRACKING_KEY`` variable.
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(bucket_logging.BucketHandler())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function: make a thumbnail, log it (tracked), flush, return."""
    try:
        size = event.get("size", 128)
        log.info(
            "Thumbnail of %s generated",
            event["image"],
            extra={
                "user_id": event["user_id"],
                "company_id": event.get("company_id"),
                "bucket_event": "Generated thumbnail",
                "bucket_attributes": {"size": size},
            },
        )
        return {"statusCode": 200, "body": f"{event['image']} at {size}px"}
    finally:
        # Before the platform freezes the process.
        delivered = bucket_logging.flush(timeout=2)
        print(f"invocation for {event.get('image')}: delivered={delivered}")


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    # Stands in for the handler the runtime puts on the root logger.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    configure_logging()
    for image, user, company in [
        ("cat.png", 1, "acme"),
        ("dog.png", 2, "acme"),
        ("owl.png", 3, None),
    ]:
        handler({"image": image, "user_id": user, "company_id": company}, None)
    show_delivery(local_server)
