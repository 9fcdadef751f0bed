"""The standard library's logging, configured with ``logging.config.dictConfig``.

Shows:

* a ``bucket_logging.BucketHandler`` entry in a dictConfig dict: every option is a
  plain key; the tracking key comes from ``BUCKET_TRACKING_KEY`` (and the endpoint
  from ``BUCKET_TRACKING_URL``, else Bucket's);
* tags in ``extra=``: one record gives a user, a company and an event call;
* a zero-code rule turning an existing, untagged log statement into an event, with
  all the record's structured fields as attributes (``"attributes": "*"``);
* untagged records that match no rule are just logged.

Run it: ``python examples/dictconfig_example.py`` (without ``BUCKET_TRACKING_URL`` it
starts a local tracking server and prints the calls that arrived).
"""

from __future__ import annotations

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
        "bucket": {
            "class": "bucket_logging.BucketHandler",
            "level": "INFO",
            # "tracking_key": "...",  # default: $BUCKET_TRACKING_KEY
            "rules": [
                {"match": "Report %s viewed", "event": "Viewed report", "attributes": "*"},
            ],
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "bucket"]},
}


def main() -> None:
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("app.accounts")

    # One record, three tracking calls: user, company (with the user) and event.
    log.info(
        "User %s signed up",
        "ada@acme.example",
        extra={
            "user_id": 42,
            "company_id": "acme",
            "bucket_user": {"email": "ada@acme.example", "name": "Ada"},
            "bucket_company": {"name": "Acme Inc"},
            "bucket_event": "Signed up",
        },
    )
    # Untagged, but the rule matches its template: event "Viewed report" with the
    # attributes report="weekly" and rows=17 (the ids are not attributes).
    logging.getLogger("app.reports").info(
        "Report %s viewed", "weekly", extra={"user_id": 42, "report": "weekly", "rows": 17}
    )
    # Untagged and no rule matches: only logged.
    log.info("Cache warmed in %.1f ms", 3.2)


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
