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
from .._relay.origin import BrowserRules

__all__ = ["add_arguments", "limits_of", "run"]

#: Builds the relay's front end from the options: ``(args, command, wrap)``.
FrontEndFactory = Callable[[argparse.Namespace, str, bool], "JsonLines | None"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The relay's own options (where items go and how lines are read are the shared
    tracking options of :mod:`.main`)."""
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8788, help="port (default 8788; 0: any)")
    parser.add_argument(
        "--token", help="require Authorization: Bearer TOKEN (env BUCKET_RELAY_TOKEN)"
    )
    limits = Limits()
    for name, default, what in (
        ("max-body", limits.max_body, "bytes of a body as sent"),
        ("max-decoded", limits.max_decoded, "bytes of a body once decompressed"),
        ("max-concurrent", limits.max_concurrent, "requests served at once"),
        ("max-connections", limits.max_connections, "open connections"),
        ("max-pending", limits.max_pending, "items the sender may hold before 503"),
        ("max-objects", limits.max_objects, "JSON values the requests in progress may hold"),
        ("workers", 1, "processes serving the port, each with its own sender"),
    ):
        parser.add_argument(f"--{name}", type=int, default=default, metavar="N", help=what)
    parser.add_argument(
        "--dedupe-window",
        type=float,
        default=limits.dedupe_window,
        metavar="S",
        help="seconds an identical body (a pipeline's retry) is not tracked again "
        "(default 600; 0: off)",
    )
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="with --spool-dir: answer 200 only once the journal is fsynced (survives a "
        "power loss; one fsync shared by concurrent requests)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help=(
            "take requests from web pages of this origin (repeatable); by default a "
            "request with an Origin or Sec-Fetch-Site header is refused"
        ),
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help=(
            "on loopback, take this Host name besides addresses and localhost "
            "(repeatable; a reverse proxy that passes its own name on)"
        ),
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=limits.head_timeout,
        metavar="S",
        help=(
            "seconds a request head may take (from the connection, or from its first "
            "byte on a kept-alive one); slow and half-open clients are closed"
        ),
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=limits.request_timeout,
        metavar="S",
        help="seconds a connection has for each request (headers and body)",
    )
    parser.add_argument(
        "--unready-after",
        type=float,
        default=60.0,
        metavar="S",
        help="GET /readyz answers 503 once the API has failed this long with nowhere to "
        "keep items (no spool, or a full one); default 60",
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="after SIGTERM, answer 503 to /readyz and posts for S seconds while still "
        "serving (load balancers stop sending), then drain; default 0",
    )
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="count nothing for GET /metrics (it answers 404); the probes still work",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="the relay's own log lines: text, or one JSON object a line",
    )


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
        head_timeout=getattr(args, "head_timeout", None) or Limits().head_timeout,
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
    spooled = bool(args.spool_dir or os.environ.get("BUCKET_SPOOL_DIR"))
    if getattr(args, "fsync", False) and not spooled:
        print("bucket-logging relay: --fsync needs --spool-dir (nothing to fsync)", file=sys.stderr)
        return 2
    workers = int(getattr(args, "workers", 1) or 1)
    warnings = []
    if workers > 1 and not spooled and limits_of(args).dedupe_window > 0:
        warnings.append(
            f"WARNING: bucket-logging relay: with --workers {workers} and no --spool-dir, each "
            "worker remembers only the bodies it took: a retried body that reaches another worker "
            "is tracked again. Give --spool-dir to share the window of retried bodies."
        )
    return serve.run(
        lambda: front_end(args, "relay", True),
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("BUCKET_RELAY_TOKEN") or None,
        limits=limits_of(args),
        workers=workers,
        warnings=tuple(warnings),
        unready_after=float(getattr(args, "unready_after", 60.0)),
        log_format=str(getattr(args, "log_format", "text")),
        drain_delay=float(getattr(args, "drain_delay", 0.0)),
        metrics=not getattr(args, "no_metrics", False),
        browser=BrowserRules(
            allow_origins=getattr(args, "allow_origin", None) or (),
            allow_hosts=getattr(args, "allow_host", None) or (),
        ),
    )
