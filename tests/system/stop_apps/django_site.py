"""A one-file Django project (settings and URLs) for ``manage.py runserver``.

    python -m django runserver localhost:PORT --settings django_site

``GET /hit/N`` logs the tagged event "Hit" number N; ``GET /`` is the readiness probe.
Tracking is configured in ``LOGGING``, as Django projects do.
"""

from __future__ import annotations

import logging
import os

from _tracking import track
from django.http import HttpRequest, HttpResponse
from django.urls import path

DEBUG = False
SECRET_KEY = "stop-paths-test-only"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "django_site"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "bucket": {
            "class": "bucket_logging.BucketHandler",
            "flush_interval": float(os.environ.get("STOP_APP_FLUSH_INTERVAL", "30")),
        },
    },
    "loggers": {"stop_apps.django": {"level": "INFO", "handlers": ["bucket"]}},
}


def hit(request: HttpRequest, n: int) -> HttpResponse:
    track(logging.getLogger("stop_apps.django"), "Hit", n)
    return HttpResponse("ok")


def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("hit/<int:n>", hit), path("", ready)]
