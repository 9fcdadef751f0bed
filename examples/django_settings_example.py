"""Django: the ``LOGGING`` setting with a ``BucketHandler`` (Django itself is not needed here).

Copy ``LOGGING`` into ``settings.py``; Django applies it with
``logging.config.dictConfig`` at start-up, as ``main()`` below does. It shows:

* the handler on the app's loggers and on ``django.request``;
* zero-code rules: Django's own "Not Found: %s" warning (logged with
  ``extra={"status_code": 404, "request": ...}``) and an existing app log line
  become events, without touching the code that logs them;
* a tagged record (``extra={"bucket_user": {...}}``).

The ids come from the request: bind them once in a middleware, e.g. in
``myapp/middleware.py`` (listed in ``MIDDLEWARE`` after the authentication one)::

    import structlog

    def bucket_context(get_response):
        def middleware(request):
            structlog.contextvars.clear_contextvars()
            if request.user.is_authenticated:
                structlog.contextvars.bind_contextvars(
                    user_id=request.user.pk, company_id=request.user.company_id
                )
            return get_response(request)
        return middleware

Set ``BUCKET_TRACKING_KEY`` in the environment (or ``"tracking_key":
os.environ["BUCKET_TRACKING_KEY"]`` in the handler entry).

Run it: ``python examples/django_settings_example.py`` (without
``BUCKET_TRACKING_URL`` it starts a local tracking server and prints the calls).
"""

from __future__ import annotations

import logging
import logging.config

import structlog

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "simple": {"format": "{levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "simple",
        },
        "bucket": {
            "class": "bucket_logging.BucketHandler",
            "level": "INFO",
            "rules": [
                {
                    "match": "Not Found: %s",
                    "logger": "django.request",
                    "event": "Hit missing page",
                    "attributes": ["status_code"],
                },
                {
                    "match": "Order %s placed",
                    "logger": "shop.*",
                    "event": "Placed order",
                    "attributes": ["total", "items"],
                },
            ],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django.request": {"handlers": ["bucket"], "level": "WARNING"},
        "shop": {"handlers": ["console", "bucket"], "level": "INFO", "propagate": False},
    },
}


def main() -> None:
    logging.config.dictConfig(LOGGING)  # what Django does with settings.LOGGING

    # One request of a signed-in user; the middleware bound the ids.
    structlog.contextvars.bind_contextvars(user_id=42, company_id="acme")
    try:
        logging.getLogger("shop.orders").info(
            "Order %s placed", "A-1001", extra={"total": 99.5, "items": 3}
        )
        logging.getLogger("shop.accounts").info(
            "Profile updated", extra={"bucket_user": {"name": "Ada", "locale": "en"}}
        )
        # What django.utils.log.log_response logs for a 404:
        logging.getLogger("django.request").warning(
            "Not Found: %s", "/old-pricing/", extra={"status_code": 404, "request": object()}
        )
    finally:
        structlog.contextvars.clear_contextvars()


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
