"""The command line: ``bucket-logging serve|check|ship|relay|plan``.

``python -m bucket_logging serve`` (or ``bucket-logging serve``) runs a local tracking server.

    $ python -m bucket_logging serve --port 8787
    Bucket tracking server on http://127.0.0.1:8787 (any tracking key accepted)
      export BUCKET_TRACKING_URL=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev-local-key
      ...
      Watch the calls live at http://127.0.0.1:8787/ ; Ctrl-C to stop
    event     user=42 company=acme  "Sent message"  position=popover version=3
    400 BODY_VALIDATION_FAILED items[3]: score must be a number from 1 to 5, got 9

Each accepted call is printed as one line (see :func:`format_call`), or as one JSON
line with ``--json``; rejected requests as one line with their status and errors. The
server's page, ``http://127.0.0.1:8787/`` in a browser, shows them live (see
:mod:`bucket_logging._server.page`).

``bucket-logging check`` asks the API whether it accepts the key, creating no data
(see :mod:`bucket_logging._cli.check`). ``bucket-logging ship [FILE ...]`` sends the
tagged lines of JSON-lines logs (see :mod:`bucket_logging._cli.ship`);
``bucket-logging relay`` is an HTTP intake for log pipelines (see
:mod:`bucket_logging._relay`). Both read JSON objects with
:class:`~bucket_logging._frontends.jsonlines.JsonLines`.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
from typing import Any, TextIO

import orjson

from .._exceptions import ConfigurationError
from .._frontends.jsonlines import JsonLines
from .._relay.sender import RelaySender
from .._runtime.diagnostics import escape_controls
from .._server.format import format_call, format_rejection
from .._server.server import MAX_CALLS, RequestRecord, TrackingServer
from .._tracking.plan_session import PlanSession
from .._tracking.senders import resolve_sender
from .._version import __version__
from . import relay as _relay_command
from .check import check
from .logfiles import StateFile
from .plan import add_parser as add_plan_parser
from .plan import run as run_plan
from .ship import Shipper

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
            line = escape_controls(line, json=True)  # stays JSON, never drives a terminal
        else:
            line = format_call(call)
        self._write(self._calls, line)

    def note(self, line: str) -> None:
        """Print a line about the call printed last (its plan violations)."""
        self._write(self._other, line)

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
            "(POST /{tracking_key}/{user|company|event|feedback|bulk}) and Reflag's "
            "Runtime API (POST /{user|company|event|feedback|bulk} with Authorization: "
            "Bearer sec_...), validating every call like Bucket does and printing each "
            "accepted call as one line. Its page (GET / in a browser) shows the calls "
            "live, with the refused requests and their reasons."
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
        help=(
            "accept only this key (repeatable): a tracking key in the path, or a Reflag "
            "key (sec_/pub_) as a Bearer header; by default any key is accepted"
        ),
    )
    serve.add_argument(
        "--max-calls",
        type=_at_least_one,
        default=MAX_CALLS,
        metavar="N",
        help=(
            f"keep at most N calls and N requests' records (default {MAX_CALLS:,}); "
            "beyond, the oldest are dropped, counted and shown on the page"
        ),
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
    checker = sub.add_parser(
        "check",
        help="check the key and URL against the API, creating no data",
        description=(
            "Post an empty bulk body ([]) with the key and URL a handler would use "
            "(--key/--url, else env BUCKET_TRACKING_KEY/BUCKET_TRACKING_URL, else "
            "REFLAG_SECRET_KEY/REFLAG_API_BASE_URL) and print one line saying what is "
            "right or wrong. Exit status 0 when the API accepts the key, 1 when not "
            "(wrong key, unreachable host, unexpected answer), 2 when there is no key."
        ),
    )
    checker.add_argument("--key", help="a Bucket tracking key or a Reflag key (sec_/pub_)")
    checker.add_argument("--url", help="the API's base URL")
    checker.add_argument(
        "--api", choices=("tracking", "runtime"), help="the API (default: by the key's prefix)"
    )
    checker.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds (default 10)"
    )
    ship = sub.add_parser(
        "ship",
        help="send the tagged lines of JSON-lines log files (or stdin) to tracking",
        description=(
            "Read JSON lines from FILEs (stdin when none is given) and send the tagged "
            "ones (bucket_event, bucket_user, ... at the top level, as in a structlog "
            "event dict) with the line's own timestamp. Ends with a one-line summary; "
            "exit status 1 when items were lost."
        ),
    )
    ship.add_argument("files", nargs="*", metavar="FILE", help="JSON-lines files")
    ship.add_argument(
        "--follow", action="store_true", help="keep reading as files grow (through rotation)"
    )
    ship.add_argument(
        "--state",
        metavar="FILE",
        help="record how far each file was delivered here, and resume from it",
    )
    _add_tracking_options(ship)
    relay = sub.add_parser(
        "relay",
        help="an HTTP intake for log pipelines (Vector, Fluent Bit, Logstash)",
        description=(
            "Accept POSTed batches of JSON log events (a JSON array, newline-delimited "
            "JSON or one object, optionally gzip) and send the tagged ones. Answers 200 "
            "once the sender accepted the batch, 503 with Retry-After when its queue is "
            "full. POST /v1/logs takes OTLP/HTTP logs (protobuf or JSON). Needs the "
            "relay extra (uvicorn). The token defaults to env BUCKET_RELAY_TOKEN. "
            "What a 200 survives: without --spool-dir, nothing beyond the process (a "
            "kill loses what it holds); with --spool-dir, the relay's SIGKILL or crash "
            "(every item is in the spool's journal before the 200); with --spool-dir "
            "and --fsync, also a power loss (the journal is fsynced before the 200). "
            "An identical body posted again within --dedupe-window seconds is answered "
            "200 and not tracked twice (with a spool, across restarts too)."
        ),
    )
    _relay_command.add_arguments(relay)
    _add_tracking_options(relay)
    serve.add_argument("--plan", metavar="FILE", help="check each call against a tracking plan")
    add_plan_parser(sub)
    return parser


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """Where items go and how lines are read: the same for ship and relay."""
    parser.add_argument(
        "--key",
        help="a Bucket tracking key or a Reflag key (env BUCKET_TRACKING_KEY, REFLAG_SECRET_KEY)",
    )
    parser.add_argument(
        "--url", help="the API's base URL (env BUCKET_TRACKING_URL, REFLAG_API_BASE_URL)"
    )
    parser.add_argument("--rules", metavar="FILE", help="zero-code rules: a JSON list of rules")
    parser.add_argument(
        "--plan",
        metavar="FILE",
        help="a tracking plan to check every call against (env BUCKET_TRACKING_PLAN)",
    )
    parser.add_argument(
        "--spool-dir", metavar="DIR", help="an on-disk spool (default: env BUCKET_SPOOL_DIR)"
    )
    parser.add_argument("--user-id-field", default="user_id", metavar="NAME")
    parser.add_argument("--company-id-field", default="company_id", metavar="NAME")
    parser.add_argument(
        "--track-marked",
        action="store_true",
        help='also track lines marked "bucket_tracked": true (the application\'s '
        "BucketProcessor tracked them already: skipped by default)",
    )


def _front_end(args: argparse.Namespace, command: str, wrap: bool = False) -> JsonLines | None:
    """The JSON-lines front end the options describe, or None (the reason printed)."""
    rules = None
    if args.rules:
        try:
            with open(args.rules, "rb") as fh:
                rules = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"bucket-logging {command}: cannot read {args.rules}: {exc}", file=sys.stderr)
            return None
        if isinstance(rules, dict) and "rules" in rules:
            rules = rules["rules"]
    options: dict[str, Any] = {"require_key": True}  # (a shipper without a key: an error)
    if args.spool_dir:
        options["spool_dir"] = args.spool_dir
    try:
        if wrap:  # the relay learns which items the sender refused
            sender = RelaySender(resolve_sender(None, args.key, args.url, options))
            front = JsonLines(
                rules=rules,
                user_id_field=args.user_id_field,
                company_id_field=args.company_id_field,
                sender=sender,
                tracking_plan=args.plan,
            )
        else:
            front = JsonLines(
                args.key,
                base_url=args.url,
                rules=rules,
                user_id_field=args.user_id_field,
                company_id_field=args.company_id_field,
                tracking_plan=args.plan,
                **options,
            )
        front.track_marked = bool(getattr(args, "track_marked", False))
        return front
    except ConfigurationError as exc:
        print(f"bucket-logging {command}: {exc}", file=sys.stderr)
        return None


def _ship(args: argparse.Namespace) -> int:
    front = _front_end(args, "ship")
    if front is None:
        return 2
    if args.follow and not args.files:
        print("bucket-logging ship: --follow needs files", file=sys.stderr)
        return 2
    if args.state and not args.files:
        print("bucket-logging ship: --state applies to files; ignored for stdin", file=sys.stderr)
    state = StateFile(args.state) if args.state and args.files else None
    progress = sys.stderr if sys.stderr.isatty() else None
    shipper = Shipper(front, state=state, progress=progress)

    def stop(signum: int, frame: Any) -> None:
        shipper.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    if args.files:
        shipper.ship_files([os.path.abspath(p) for p in args.files], follow=args.follow)
    else:
        shipper.ship_stream(sys.stdin.buffer)
    return shipper.finish()


def _relay(args: argparse.Namespace) -> int:
    return _relay_command.run(args, _front_end)


def _at_least_one(text: str) -> int:
    """An argument that is a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r:.40}")
    return value


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    for stream in (stdout, stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    printer = _Printer(stdout, stderr if args.json else stdout, args.json)
    on_call = printer.on_call
    session = None
    if args.plan:  # each call checked: its violations printed and shown on the page
        try:
            session = PlanSession(args.plan)
        except ConfigurationError as exc:
            print(f"bucket-logging serve: {exc}", file=stderr)
            return 2

        def on_call(call: dict[str, Any]) -> None:
            found = session.check(call) if session is not None else []
            printer.on_call(call)
            for violation in found:
                printer.note(f"  ! tracking plan: {violation.kind}: {violation.problem}")

    server = TrackingServer(
        args.host,
        args.port,
        tracking_keys=args.keys,
        on_call=on_call,
        on_request=printer.on_request,
        max_calls=args.max_calls,
    )
    server.plan_view = session
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
            exports = [
                f"  export BUCKET_TRACKING_URL={srv.url} BUCKET_TRACKING_KEY=dev-local-key",
                f"  or: export REFLAG_API_BASE_URL={srv.url} REFLAG_SECRET_KEY=sec_dev_local"
                "  (Reflag's Runtime API)",
            ]
        else:  # (the keys themselves are never printed)
            exports = [
                f"  export BUCKET_TRACKING_URL={srv.url}"
                "  (and BUCKET_TRACKING_KEY: one of the --key values)",
                f"  or: export REFLAG_API_BASE_URL={srv.url}"
                "  (and REFLAG_SECRET_KEY: one of the --key values)",
            ]
        for line in exports:
            print(line, file=banner)
        print(f"  Watch the calls live at {srv.url}/ ; Ctrl-C to stop", file=banner, flush=True)

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
    if args.command == "check":
        result = check(args.key, args.url, api=args.api, timeout=args.timeout)
        print(f"bucket-logging check: {result.line}", file=sys.stdout if result.ok else sys.stderr)
        return result.status
    if args.command == "ship":
        return _ship(args)
    if args.command == "relay":
        return _relay(args)
    if args.command == "plan":
        return run_plan(args)
    parser.print_help(sys.stderr)
    return 2
