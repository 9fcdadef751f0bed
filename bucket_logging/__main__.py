"""Command line: ``python -m bucket_logging serve`` runs a local tracking server.

    $ python -m bucket_logging serve --port 8787
    Bucket tracking server on http://127.0.0.1:8787 (any tracking key accepted)
      export BUCKET_TRACKING_URL=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev-local-key
    event     user=42 company=acme  "Sent message"  position=popover version=3
    400 BODY_VALIDATION_FAILED items[3]: score must be a number from 1 to 5, got 9

Each accepted call is printed as one line (see :func:`format_call`), or as one JSON
line with ``--json``; rejected requests as one line with their status and errors.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import threading
from typing import Any, TextIO

import orjson

from . import __version__
from ._format import format_call, format_rejection
from ._server import RequestRecord, TrackingServer

__all__ = ["format_call", "format_rejection", "main"]


class _Printer:
    """Writes whole lines from the server's threads without interleaving them."""

    def __init__(self, calls: TextIO, other: TextIO, as_json: bool) -> None:
        self._calls = calls
        self._other = other
        self._json = as_json
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0

    def _write(self, stream: TextIO, line: str) -> None:
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed (e.g. piped into head): keep serving

    def on_call(self, call: dict[str, Any]) -> None:
        """Print one accepted call."""
        self.accepted += 1
        if self._json:
            line = orjson.dumps(call, option=orjson.OPT_NON_STR_KEYS).decode()
        else:
            line = format_call(call)
        self._write(self._calls, line)

    def on_request(self, record: RequestRecord) -> None:
        """Print a request that was not accepted."""
        if not record.accepted:
            self.rejected += 1
            self._write(self._other, format_rejection(record))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bucket-logging",
        description="bucket_logging command line tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run a local Bucket tracking server that prints every call it receives",
        description=(
            "Run a local server speaking the Bucket Tracking API "
            "(POST /{tracking_key}/{user|company|event|feedback|bulk}), validating "
            "every call like Bucket does and printing each accepted call as one line."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)"
    )
    serve.add_argument(
        "--json", action="store_true", help="print each accepted call as a JSON line"
    )
    serve.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="KEY",
        help="accept only this tracking key (repeatable); by default any key is accepted",
    )
    serve.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="N",
        help="answer the first N requests with 500",
    )
    serve.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds before answering each request",
    )
    return parser


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    for stream in (stdout, stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    printer = _Printer(stdout, stderr if args.json else stdout, args.json)
    server = TrackingServer(
        args.host,
        args.port,
        tracking_keys=args.keys,
        on_call=printer.on_call,
        on_request=printer.on_request,
    )
    if args.fail_first:
        server.fail_next(args.fail_first)
    if args.delay:
        server.delay(args.delay)
    banner = stderr if args.json else stdout
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        # Even when started with SIGINT ignored (e.g. in the background of a script).
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def announce(srv: TrackingServer) -> None:
        keys = (
            "any tracking key accepted"
            if args.keys is None
            else f"{len(set(args.keys))} tracking key(s) accepted"
        )
        print(f"Bucket tracking server on {srv.url} ({keys})", file=banner)
        if args.keys is None:
            export = f"  export BUCKET_TRACKING_URL={srv.url} BUCKET_TRACKING_KEY=dev-local-key"
        else:  # (the keys themselves are never printed)
            export = (
                f"  export BUCKET_TRACKING_URL={srv.url}"
                "  (and BUCKET_TRACKING_KEY: one of the --key values)"
            )
        print(export, file=banner)
        print("  Ctrl-C to stop", file=banner, flush=True)

    try:
        # Serve on the main thread, where Ctrl-C (or SIGTERM) interrupts it.
        server.serve_forever(on_ready=announce)
    except OSError as exc:
        print(f"bucket-logging: cannot listen on {args.host}:{args.port}: {exc}", file=stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(
        f"stopped: {printer.accepted} call(s) accepted, {printer.rejected} request(s) refused",
        file=stderr,
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
