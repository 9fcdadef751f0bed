"""``bucket-logging relay``: its options, turned into a call of :mod:`bucket_logging._relay.serve`.

Only argument handling lives here; the service (its limits, app, server and
``--workers``) is the relay layer, :mod:`bucket_logging._relay`, imported when the
command runs (it needs the ``relay`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .._frontends.jsonlines import JsonLines
from .._relay.limits import Limits

__all__ = ["limits_of", "run"]

#: Builds the relay's front end from the options: ``(args, command, wrap)``.
FrontEndFactory = Callable[[argparse.Namespace, str, bool], "JsonLines | None"]


def limits_of(args: argparse.Namespace) -> Limits:
    """The relay's bounds the options give."""
    return Limits(
        max_body=args.max_body,
        max_decoded=args.max_decoded,
        max_concurrent=args.max_concurrent,
        max_connections=args.max_connections,
        max_pending=args.max_pending,
        max_objects=args.max_objects,
        request_timeout=args.request_timeout,
        dedupe_window=max(0.0, float(getattr(args, "dedupe_window", 600.0))),
        fsync=bool(getattr(args, "fsync", False)),
    )


def run(args: argparse.Namespace, front_end: FrontEndFactory) -> int:
    """Run the relay the options describe; the exit status."""
    try:
        from .._relay import serve  # noqa: PLC0415 - the relay extra (uvicorn)
    except ImportError as exc:
        print(
            f"bucket-logging relay needs the relay extra ({exc.name} is missing): "
            "pip install 'bucket-logging[relay]'",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "fsync", False) and not (args.spool_dir or os.environ.get("BUCKET_SPOOL_DIR")):
        print("bucket-logging relay: --fsync needs --spool-dir (nothing to fsync)", file=sys.stderr)
        return 2
    return serve.run(
        lambda: front_end(args, "relay", True),
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("BUCKET_RELAY_TOKEN") or None,
        limits=limits_of(args),
        workers=int(getattr(args, "workers", 1) or 1),
    )
