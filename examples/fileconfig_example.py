"""The standard library's logging, configured from an INI file with ``fileConfig``.

Shows ``examples/logging.ini``: a ``[handler_bucket]`` section with
``class=bucket_logging.BucketHandler``, ``args=()`` and the handler's options in
``kwargs={...}`` (here a zero-code rule), and two records:

* a tagged one: a company update and an event;
* an untagged one the rule turns into an "Exported data" event.

Run it: ``python examples/fileconfig_example.py`` (without ``BUCKET_TRACKING_URL`` it
starts a local tracking server and prints the calls that arrived).
"""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

INI = Path(__file__).with_name("logging.ini")


def main() -> None:
    logging.config.fileConfig(INI, disable_existing_loggers=False)
    log = logging.getLogger("app.billing")

    log.info(
        "Plan of %s upgraded to %s",
        "acme",
        "pro",
        extra={
            "user_id": 7,
            "company_id": "acme",
            "bucket_company": {"plan": "pro"},
            "bucket_event": "Upgraded plan",
        },
    )
    # Untagged; the rule in logging.ini makes it an event with attribute format=csv.
    logging.getLogger("app.export").info(
        "Exported %d rows", 1200, extra={"user_id": 7, "company_id": "acme", "format": "csv"}
    )


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
