"""structlog bridged into the standard library, with both front ends: tracked exactly once.

A common set-up renders structlog events through ``logging`` (structlog's last
processor is ``ProcessorFormatter.wrap_for_formatter``, the formatting happens in a
``ProcessorFormatter`` on the stdlib handlers), so that structlog events and plain
stdlib records share handlers. Here both front ends are installed:

* a ``BucketProcessor`` in structlog's chain (before ``wrap_for_formatter``), and
* a ``BucketHandler`` on the root logger, for the plain stdlib records.

Every structlog event reaches the root logger as a record too, yet each tagged
event is tracked exactly once: the processor tracks it and the handler recognises
the record built from it and skips it. Plain stdlib records are tracked by the
handler. (The same holds with ``structlog.stdlib.render_to_log_kwargs`` as the last
processor.) Keep the processor in structlog's chain, not in ``ProcessorFormatter``'s
own ``processors``, which run once per formatting handler.

Run it: ``python examples/structlog_bridged_example.py`` (without
``BUCKET_TRACKING_URL`` it starts a local tracking server and prints the calls).
"""

from __future__ import annotations

import logging
import logging.config

import structlog

import bucket_logging


def configure() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            bucket_logging.BucketProcessor(),  # key from $BUCKET_TRACKING_KEY
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "console": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.dev.ConsoleRenderer(colors=False),
                    ],
                    # for plain stdlib records
                    "foreign_pre_chain": [
                        structlog.stdlib.add_log_level,
                        structlog.stdlib.add_logger_name,
                    ],
                },
            },
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "console",
                },
                "bucket": {"class": "bucket_logging.BucketHandler"},
            },
            "root": {"level": "INFO", "handlers": ["console", "bucket"]},
        }
    )


def main() -> None:
    configure()
    log = structlog.get_logger("app.chat")

    structlog.contextvars.bind_contextvars(user_id=42, company_id="acme")
    try:
        for channel in ("general", "random", "support"):
            log.info("message sent", channel=channel, bucket_event="Sent message")
        log.info("dashboard opened", bucket_event="Viewed dashboard")
        log.info("typing")  # untagged: rendered, not tracked
        # A plain stdlib record beside it is tracked by the BucketHandler.
        logging.getLogger("app.legacy").info(
            "Invoice %s exported", "INV-7", extra={"bucket_event": "Exported invoice"}
        )
    finally:
        structlog.contextvars.clear_contextvars()
    tagged = 5  # 4 structlog events + 1 stdlib record
    bucket_logging.flush(timeout=5)
    sent = bucket_logging.get_sender().stats.sent
    print(
        f"{tagged} tagged events logged, {sent} tracked: each exactly once"
        if sent == tagged
        else f"{tagged} tagged events logged, but {sent} tracked!"
    )


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
