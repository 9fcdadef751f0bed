"""structlog with a ``BucketProcessor`` in its processor chain.

Shows:

* the chain: ``merge_contextvars`` first (so ids bound per request reach the
  processor), then ``BucketProcessor``, then any renderer (the event is passed on
  unchanged, so every line is still rendered);
* ids bound once with ``structlog.contextvars.bind_contextvars(user_id=..., company_id=...)``;
* tags as keywords: a user, a company (``True``: just associate it), an event, a feedback;
* a zero-code rule given to the processor: an untagged event becomes a Bucket event.

Run it: ``python examples/structlog_example.py`` (without ``BUCKET_TRACKING_URL`` it
starts a local tracking server and prints the calls that arrived).
"""

from __future__ import annotations

import logging
import sys

import structlog

import bucket_logging


def configure() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            bucket_logging.BucketProcessor(
                # tracking_key defaults to $BUCKET_TRACKING_KEY
                rules=[
                    {
                        "match": "report exported",
                        "event": "Exported report",
                        "attributes": ["format"],
                    }
                ],
            ),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def main() -> None:
    configure()
    log = structlog.get_logger()

    structlog.contextvars.bind_contextvars(user_id=42, company_id="acme")
    try:
        log.info(
            "signed in",
            bucket_user={"name": "Ada", "role": "admin"},
            bucket_company=True,
            bucket_event="Signed in",
        )
        log.info("report exported", format="pdf", pages=12)  # untagged: the rule tracks it
        log.info(
            "feedback given",
            bucket_feedback={"feature_id": "reports", "score": 4, "comment": "Fast!"},
        )
        log.info("cache warmed")  # untagged, no rule: only rendered
    finally:
        structlog.contextvars.clear_contextvars()


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
