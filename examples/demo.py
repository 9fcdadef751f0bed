"""The bucket_logging demo: an app's log statements become Bucket tracking calls.

Run it with ``python3 dev.py demo`` (or ``python examples/demo.py`` in the venv);
``--keep`` keeps the local tracking server up afterwards (until Ctrl-C), to look at
its page in a browser.

Without ``BUCKET_TRACKING_KEY`` or ``REFLAG_SECRET_KEY`` in the environment, the
demo starts a local tracking server inside this process (nothing to sign up for),
runs the app twice, first with a Reflag secret key (``sec_...``: Reflag's Runtime
API, the key in a Bearer header), then with a Bucket tracking key (the key in the
path), prints every tracking call that arrived there and says where the server's page
shows them. With a key set, the calls
go to Reflag or Bucket, or to ``BUCKET_TRACKING_URL`` / ``REFLAG_API_BASE_URL`` when
that is set too (e.g. ``python -m bucket_logging serve``).

The app logs through both front ends, configured the way an application would:

* the standard library's ``logging``, set up with ``logging.config.dictConfig`` and a
  ``bucket_logging.BucketHandler`` that also has one zero-code rule;
* ``structlog``, with a ``bucket_logging.BucketProcessor`` in its processor chain.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
import threading
from typing import Any

import structlog

import bucket_logging
from bucket_logging import format_call

HEADER = """\
bucket_logging demo
===================
A tiny shop app logs what it does, through the standard library's logging
(configured with dictConfig) and through structlog. Some log statements carry
Bucket tags (extra={{"bucket_event": ...}} or structlog keywords), one plain
statement matches a zero-code rule, and one has an invalid tag. bucket_logging
turns them into Bucket tracking calls and ships them in the background.

Tracking calls go to: {where}
"""


def configure(tracking_key: str | None, base_url: str | None) -> None:
    """Set up logging (dictConfig + BucketHandler) and structlog (BucketProcessor)."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "app": {"format": "  logging   | %(levelname)-7s %(name)s: %(message)s"},
            },
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "app",
                },
                "bucket": {
                    "class": "bucket_logging.BucketHandler",
                    "tracking_key": tracking_key,  # None: $BUCKET_TRACKING_KEY
                    "base_url": base_url,  # None: $BUCKET_TRACKING_URL, else Bucket
                    # A zero-code rule: this existing, untagged log statement becomes
                    # an "Exported data" event with two of the record's fields.
                    "rules": [
                        {
                            "match": "Exported %d rows as %s",
                            "logger": "shop.*",
                            "event": "Exported data",
                            "attributes": ["rows", "format"],
                        }
                    ],
                },
            },
            "loggers": {
                # The library's own diagnostics (invalid tags, delivery problems).
                "bucket_logging": {
                    "handlers": ["console"],
                    "level": "WARNING",
                    "propagate": False,
                },
            },
            "root": {"level": "INFO", "handlers": ["console", "bucket"]},
        }
    )

    def prefix(logger: Any, method_name: str, line: str) -> str:
        return "  structlog | " + line

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,  # ids bound per request
            structlog.processors.add_log_level,
            bucket_logging.BucketProcessor(tracking_key, base_url=base_url),
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=20),
            prefix,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )


def act_out_the_app() -> None:
    """What the app logs; each statement is a plain log call."""
    auth = logging.getLogger("shop.auth")
    billing = logging.getLogger("shop.billing")
    export = logging.getLogger("shop.export")
    log = structlog.get_logger().bind(logger="shop.messages")

    # 1. A user signs in: one record gives a user, a company and an event call.
    auth.info(
        "User %s signed in",
        "ada",
        extra={
            "user_id": "u-ada",
            "company_id": "acme",
            "bucket_user": {"name": "Ada Lovelace", "email": "ada@acme.example"},
            "bucket_company": {"name": "Acme Inc", "plan": "pro"},
            "bucket_event": "Signed in",
        },
    )

    # 2. A web middleware binds the ids once per request; every record in the
    #    request (stdlib and structlog alike) carries them.
    structlog.contextvars.bind_contextvars(user_id="u-ada", company_id="acme")
    try:
        log.info(
            "message sent",
            bucket_event="Sent message",
            bucket_attributes={"channel": "email", "recipients": 3},
        )
        billing.info(
            "Invoice %s paid",
            "INV-7",
            extra={"bucket_event": "Paid invoice", "bucket_attributes": {"amount": 49}},
        )
        # 3. Feedback on a feature.
        log.info(
            "feedback received",
            bucket_feedback={"feature_id": "export", "score": 5, "comment": "Love the CSV export"},
        )
        # 4. An untagged record: the zero-code rule above turns it into an event.
        export.info("Exported %d rows as %s", 1200, "csv", extra={"rows": 1200, "format": "csv"})
        # 5. An invalid tag (a score of 9): that feedback is not sent and the problem
        #    is reported on the "bucket_logging" logger; the record's event still is.
        log.info(
            "export rated",
            bucket_event="Rated export",
            bucket_feedback={"feature_id": "export", "score": 9},
        )
    finally:
        structlog.contextvars.clear_contextvars()


#: The keys of the self-started demo: Reflag's (what new apps get) first, then Bucket's.
DEMO_KEYS = (
    ("sec_demo-reflag-key", "Reflag's Runtime API (a sec_... key, sent as a Bearer header)"),
    ("demo-tracking-key", "Bucket's tracking API (a tracking key, sent in the path)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The bucket_logging demo.")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the local tracking server (and its page) up until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if os.environ.get("BUCKET_TRACKING_KEY") or os.environ.get("REFLAG_SECRET_KEY"):
        return run(None, None, None, "", True)  # the key and URL from the environment
    server = bucket_logging.TrackingServer("127.0.0.1", 0).start()
    try:
        status = 0
        for i, (key, api) in enumerate(DEMO_KEYS):
            status = run(key, server.url, server, api, i == 0) or status
        print(f"\nThe tracking server's page shows every call of both runs: {server.url}/")
        if args.keep:
            print("Keeping the server up for a look (Ctrl-C stops it).", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                print()
        else:
            print("(python3 dev.py demo --keep keeps it up for a look)")
        return status
    finally:
        server.stop()


def run(
    tracking_key: str | None,
    base_url: str | None,
    server: bucket_logging.TrackingServer | None,
    api: str,
    first: bool,
) -> int:
    """Configure logging for one key, act the app out, and show what arrived."""
    configure(tracking_key, base_url)
    sender = bucket_logging.get_sender(tracking_key, base_url=base_url)
    # where this run's records begin (the server keeps those of the runs before it)
    first_call, first_request = (server.call_count, len(server.requests)) if server else (0, 0)
    where = (
        f"a local tracking server in this process, {sender.base_url}\n"
        f"  through {api}\n"
        "  (set REFLAG_SECRET_KEY or BUCKET_TRACKING_KEY to send them for real)"
        if server is not None
        else f"{sender.base_url} ({sender.api} API)"
    )
    if first:
        print(HEADER.format(where=where))
    else:
        print(f"\nThe same app again. Tracking calls go to: {where}\n")
    print("1. What the app logs:\n", flush=True)
    act_out_the_app()
    delivered = bucket_logging.flush(timeout=10)
    stats = sender.stats
    print()
    if server is not None:
        calls = server.calls[first_call:]
        requests = server.requests[first_request:]
        print(f"2. The tracking calls that arrived at the server ({len(calls)}):\n")
        for call in calls:
            print("  " + format_call(call))
        paths = ", ".join(sorted({f"POST {r.path}" for r in requests}))
        print(f"\n{len(calls)} calls arrived in {len(requests)} request(s): {paths}.")
    else:
        print(f"2. {stats.sent} tracking calls were delivered to {sender.base_url}.")
        print(f"   (when that is a `bucket-logging serve`, its page is {sender.base_url}/)")
    dropped = ", ".join(f"{k}={v}" for k, v in stats.dropped.items()) or "none"
    print(
        f"Sender: queued={stats.queued} sent={stats.sent} requests={stats.requests} "
        f"retried={stats.retried} rejected={stats.rejected} dropped={dropped}"
        + ("" if delivered else " (flush timed out)")
    )
    print(
        "The feedback with score 9 never left the app: it was reported on the\n"
        "'bucket_logging' logger (the WARNING line above) and everything else was sent."
        if first
        else "The feedback with score 9 was not sent either (its WARNING is not repeated:\n"
        "the library reports problems of one kind at most once in a while)."
    )
    return 0 if delivered and not stats.dropped_total else 1


if __name__ == "__main__":
    sys.exit(main())
