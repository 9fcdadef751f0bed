"""The package's public names: ``bucket_logging.__all__`` pinned, each with a docstring."""

from __future__ import annotations

import inspect

import bucket_logging

PUBLIC = [
    "REFLAG_BASE_URL",
    "REFLAG_EU_BASE_URL",
    "BucketASGIMiddleware",  # issue 21
    "BucketDjangoMiddleware",  # issue 21
    "BucketHandler",
    "BucketLoggingError",
    "BucketProcessor",
    "BulkSender",
    "ConfigurationError",
    "DeliveryError",
    "InvalidItemError",
    "Item",
    "LoguruSink",
    "RefusedCallError",
    "SenderStats",
    "TrackingServer",
    "aflush",
    "flush",
    "format_call",
    "get_sender",
    "track",  # issue 21
]


def test_all_is_pinned() -> None:
    assert sorted(bucket_logging.__all__) == sorted(PUBLIC)


def test_every_public_callable_has_a_docstring() -> None:
    for name in bucket_logging.__all__:
        value = getattr(bucket_logging, name)
        if callable(value):
            assert inspect.getdoc(value), name


def test_importing_the_package_loads_no_server_command_line_or_integration() -> None:
    import subprocess
    import sys

    program = (
        "import sys, bucket_logging\n"
        "banned = ('http.server', 'bucket_logging._cli', 'bucket_logging._relay', "
        "'bucket_logging._server.http', "
        "'bucket_logging._server.page', 'uvicorn', 'opentelemetry', 'google.protobuf', "
        "'loguru', 'django', 'starlette', 'selenium')\n"
        "print(sorted(m for m in sys.modules if m.startswith(banned)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
