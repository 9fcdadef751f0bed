"""``bucket-logging plan status|infer|check``: the tracking plan's commands.

Argument handling and printing only: the plan is
:mod:`bucket_logging._tracking.plan`, the code scan
:mod:`bucket_logging._tracking.plan_scan`, the draft
:mod:`bucket_logging._tracking.plan_infer`, a log's calls
:mod:`bucket_logging._frontends.plan_log`. The plan is ``--plan FILE``, else
``BUCKET_TRACKING_PLAN``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from .._exceptions import ConfigurationError
from .._frontends.plan_log import logged_calls
from .._tracking.plan import Plan
from .._tracking.plan_infer import Drafter
from .._tracking.plan_load import plan_of
from .._tracking.plan_scan import scan
from .._tracking.plan_session import PlanSession

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """The ``plan`` command and its sub-commands."""
    plan = sub.add_parser(
        "plan",
        help="the tracking plan: where the code emits each event, a draft from a log, a check",
        description="The tracking plan's commands (docs: tracking-plan.md).",
    )
    commands = plan.add_subparsers(dest="plan_command", metavar="COMMAND")
    status = commands.add_parser(
        "status",
        help="for each planned event, the places in the code that emit it",
        description=(
            "Read the Python files (their AST), INI files and JSON rules files under PATHS "
            "(default: .) and list, for each planned event, the places that emit it; then "
            "the events emitted but not planned, the planned events emitted nowhere, and "
            "what could not be seen. Exit status 1 when an event is unplanned or a planned "
            "one is emitted nowhere."
        ),
    )
    status.add_argument("paths", nargs="*", metavar="PATH", default=["."])
    infer = commands.add_parser(
        "infer",
        help="draft a plan from a JSON-lines log or the local tracking server's records",
        description=(
            "Read SOURCE (a JSON-lines log read as ship reads it, the JSON lines of "
            "'serve --json', or the URL of a running 'bucket-logging serve') and draft a "
            "plan with the types and values seen (YAML; JSON when -o names a .json file)."
        ),
    )
    infer.add_argument("source", metavar="SOURCE", help="a file, - for stdin, or a serve URL")
    infer.add_argument("-o", "--output", metavar="FILE", help="write the draft here")
    check = commands.add_parser(
        "check",
        help="check the calls of a JSON-lines log against the plan, offline",
        description=(
            "Read FILEs (JSON lines, as ship reads them) and check every call they ask for "
            "against the plan; exit status 1 on a violation (and with --fail-on-unemitted "
            "when a planned event never occurs)."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--fail-on-unemitted", action="store_true")
    for parser in (status, check, infer):
        if parser is not infer:
            parser.add_argument("--plan", metavar="FILE", help="default: BUCKET_TRACKING_PLAN")
        parser.add_argument("--rules", metavar="FILE", help="zero-code rules (JSON), as ship")


def _plan(args: argparse.Namespace) -> Plan:
    plan = plan_of(args.plan)
    if plan is None:
        raise ConfigurationError("no tracking plan: pass --plan FILE or set BUCKET_TRACKING_PLAN")
    return plan


def _rules(args: argparse.Namespace) -> Any:
    if not args.rules:
        return None
    try:
        with open(args.rules, encoding="utf-8") as file:
            rules = json.load(file)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {args.rules}: {exc}") from None
    return rules["rules"] if isinstance(rules, dict) and "rules" in rules else rules


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as file:
        yield from file


def _sources(paths: Iterable[str]) -> Iterator[tuple[str, Iterable[bytes]]]:
    for path in paths:
        yield path, _lines(path)


def _served(url: str) -> list[dict[str, Any]]:
    import httpx  # noqa: PLC0415 - (a runtime dependency; only for a URL)

    answer = httpx.get(url.rstrip("/") + "/_calls", timeout=10.0)
    answer.raise_for_status()
    calls = answer.json()
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _status(args: argparse.Namespace, out: TextIO) -> int:
    plan = _plan(args)
    found = scan(args.paths)
    print(f"tracking plan {plan.source}: {len(plan.events)} events; "
          f"{found.files} file(s) read under {', '.join(args.paths)}", file=out)  # fmt: skip
    print("planned events and the places that emit them:", file=out)
    for name in plan.events:
        places = found.events.get(name)
        print(f"  {name}: {', '.join(places) if places else 'nowhere'}", file=out)
    unplanned = {n: p for n, p in found.events.items() if n not in plan.events}
    nowhere = [n for n in plan.events if n not in found.events]
    if unplanned:
        print("emitted in the code, not planned:", file=out)
        for name, places in unplanned.items():
            hint = plan.likely(name)
            typo = f" (a likely typo of {hint!r})" if hint else ""
            print(f"  {name}{typo}: {', '.join(places)}", file=out)
    if nowhere:
        print(f"planned, emitted nowhere: {', '.join(nowhere)}", file=out)
    if found.unseen:
        print("not seen (names built at run time, rules loaded from elsewhere):", file=out)
        for line in found.unseen:
            print(f"  {line}", file=out)
    return 1 if unplanned or nowhere else 0


def _infer(args: argparse.Namespace, out: TextIO) -> int:
    drafter = Drafter()
    if args.source.startswith(("http://", "https://")):
        for call in _served(args.source):
            drafter.add(call)
    else:
        for call, _ in logged_calls(_sources([args.source]), _rules(args)):
            drafter.add(call)
    document = drafter.document()
    output = args.output or ""
    if output.endswith(".json"):
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
        except ImportError:  # pragma: no cover - the plan extra
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    if output:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"bucket-logging plan infer: {len(drafter.events)} event(s) from "
              f"{drafter.calls} call(s) written to {output}", file=sys.stderr)  # fmt: skip
    else:
        out.write(text)
    return 0


def _check(args: argparse.Namespace, out: TextIO) -> int:
    session = PlanSession(_plan(args))
    for call, place in logged_calls(_sources(args.files), _rules(args)):
        session.check(call, place)
    for line in session.summary(who="the log"):
        print(line, file=out)
    failed = bool(session.violations) or (args.fail_on_unemitted and bool(session.never()))
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """Run ``bucket-logging plan ...``; the exit status."""
    command = {"status": _status, "infer": _infer, "check": _check}.get(args.plan_command)
    if command is None:
        print("bucket-logging plan: status, infer or check (see --help)", file=sys.stderr)
        return 2
    try:
        return command(args, sys.stdout)
    except ConfigurationError as exc:
        print(f"bucket-logging plan {args.plan_command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bucket-logging plan {args.plan_command}: {exc}", file=sys.stderr)
        return 2
