"""loguru with a ``LoguruSink``.

Shows:

* ``logger.add(LoguruSink(...))`` beside loguru's usual sinks (here stdout), with
  ``enqueue=True`` (records are handed to the sink on loguru's worker thread);
* tags and ids where loguru keeps structured data, the record's ``extra``: keyword
  arguments of a log call, ``logger.bind(...)`` and ``logger.contextualize(...)``;
* a zero-code rule: an untagged message becomes a Bucket event;
* ``logger.complete()`` then ``sink.flush()`` before a short script ends (at exit
  it happens on its own).

Run it: ``python examples/loguru_example.py`` (without ``BUCKET_TRACKING_URL`` it
starts a local tracking server and prints the calls that arrived).
"""

from __future__ import annotations

import sys

from loguru import logger

import bucket_logging


def main() -> None:
    logger.remove()
    logger.add(sys.stdout, level="INFO", format="{time:HH:mm:ss} {level} {message} {extra}")
    sink = bucket_logging.LoguruSink(
        # tracking_key defaults to $BUCKET_TRACKING_KEY
        rules=[{"match": "report exported", "event": "Exported report", "attributes": ["format"]}],
    )
    logger.add(sink, level="INFO", enqueue=True)

    log = logger.bind(user_id=42)  # every call of `log` carries the user id
    log.info("signed in", bucket_user={"name": "Ada", "role": "admin"}, bucket_event="Signed in")
    with logger.contextualize(user_id=42, company_id="acme"):  # ids for a block
        logger.info("joined", bucket_company={"name": "Acme"})
        logger.info("report exported", format="pdf", pages=12)  # untagged: the rule tracks it
    log.info(
        "feedback given",
        bucket_feedback={"feature_id": "reports", "score": 4, "comment": "Fast!"},
    )
    log.info("cache warmed")  # untagged, no rule: only printed

    logger.complete()  # the records queued by enqueue=True reach the sink
    sink.flush(timeout=5)


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
