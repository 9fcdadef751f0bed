"""Where the code emits each event (``bucket-logging plan status``), read from the AST.

:func:`scan` walks Python files, INI files and JSON rules files and finds the places
that emit an event:

* ``bucket_event="..."`` in a dict display (``extra={...}``, a dict built before the
  call) or as a keyword argument (structlog's ``log.info(..., bucket_event=...)``,
  loguru's ``logger.bind(bucket_event=...)`` and its log calls' keywords);
* ``track("...")`` and ``track(event="...")`` (``bucket_logging.track``);
* zero-code rules: a dict display with ``"match"`` and ``"event"`` (a ``dictConfig``
  dict, a handler's ``rules=``), a handler's ``kwargs`` in an INI file read by
  ``fileConfig``, a JSON rules file (a list of rules, or ``{"rules": [...]}``);
* calls of a *wrapper*: a function whose parameter reaches ``bucket_event`` or
  ``track()``'s event (``def emit(name, **kw): log.info(name, extra={"bucket_event":
  name})``), followed through wrappers of wrappers, where the call passes a literal.

What it cannot see is said, with its place (:attr:`Scan.unseen`): an event name that is
not a literal and not a wrapper's parameter, a wrapper called with a non-literal, a
file that does not parse. Names built at run time, rules loaded from elsewhere and
events of other languages are beyond it.

Imports: the standard library only.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .tags import EVENT

__all__ = ["Scan", "scan"]

TAG: Final = EVENT  # the tag table's event tag
_SKIP_DIRS: Final = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", "build"}
)


@dataclass
class Scan:
    """What :func:`scan` found."""

    #: event name -> the places that emit it (``path:line``)
    events: dict[str, list[str]] = field(default_factory=dict)
    #: what it could not see, each with its place
    unseen: list[str] = field(default_factory=list)
    files: int = 0

    def add(self, event: str, place: str) -> None:
        self.events.setdefault(event, []).append(place)


_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class _Wrapper:
    index: int | None  # the event's positional index (None: keyword only)
    name: str


class _File(ast.NodeVisitor):
    """One module: its direct emits, its wrappers, its calls (for the wrappers)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.emits: list[tuple[str, int]] = []
        self.unseen: list[str] = []
        self.wrappers: dict[str, _Wrapper] = {}
        #: every call, with the function it is in (for the wrappers' calls)
        self.calls: list[tuple[ast.Call, _Function | None]] = []
        self._function: list[_Function] = []

    def _place(self, node: ast.AST) -> str:
        return f"{self.path}:{getattr(node, 'lineno', 0)}"

    def value(self, node: ast.AST, what: str, function: _Function | None = None) -> None:
        """An event name's expression: a literal, a wrapper's parameter, or unseen."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.emits.append((node.value, getattr(node, "lineno", 0)))
            return
        if function is None and self._function:
            function = self._function[-1]
        if isinstance(node, ast.Name) and function is not None:
            arguments = function.args
            positional = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
            names = positional + [a.arg for a in arguments.kwonlyargs]
            if node.id in names:
                index = positional.index(node.id) if node.id in positional else None
                if positional and positional[0] in ("self", "cls") and index is not None:
                    index -= 1
                self.wrappers[function.name] = _Wrapper(index, node.id)
                return
        self.unseen.append(f"{self._place(node)}: {what} is not a literal ({ast.unparse(node)})")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function.append(node)
        self.generic_visit(node)
        self._function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Dict(self, node: ast.Dict) -> None:
        keys = {
            k.value: v
            for k, v in zip(node.keys, node.values, strict=False)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        }
        if TAG in keys:
            self.value(keys[TAG], TAG)
        elif "match" in keys and "event" in keys:  # a zero-code rule
            self.value(keys["event"], "a rule's event")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg == TAG:
                self.value(keyword.value, "bucket_event")
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "track":
            event = node.args[0] if node.args else None
            for keyword in node.keywords:
                if keyword.arg == "event":
                    event = keyword.value
            if event is not None and not (isinstance(event, ast.Constant) and event.value is None):
                self.value(event, "track()'s event")
        self.calls.append((node, self._function[-1] if self._function else None))
        self.generic_visit(node)


def _called(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _argument(call: ast.Call, wrapper: _Wrapper) -> ast.AST | None:
    for keyword in call.keywords:
        if keyword.arg == wrapper.name:
            return keyword.value
    if wrapper.index is not None and 0 <= wrapper.index < len(call.args):
        argument = call.args[wrapper.index]
        return None if isinstance(argument, ast.Starred) else argument
    return None


def _python(path: str, result: Scan, modules: list[_File]) -> None:
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as exc:
        result.unseen.append(f"{path}: not read ({type(exc).__name__}: {exc})")
        return
    module = _File(path)
    module.visit(tree)
    modules.append(module)


def _rules(rules: object, place: str, result: Scan) -> None:
    if isinstance(rules, dict) and isinstance(rules.get("rules"), list):
        rules = rules["rules"]
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and isinstance(rule.get("event"), str) and "match" in rule:
                result.add(rule["event"], place)


def _ini(path: str, result: Scan) -> None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        result.unseen.append(f"{path}: not read ({type(exc).__name__})")
        return
    for section in parser.sections():
        for key in ("kwargs", "args"):
            text = parser.get(section, key, fallback=None)
            if not text or "event" not in text:
                continue
            try:
                value = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError):
                result.unseen.append(f"{path} [{section}] {key}: not a literal")
                continue
            place = f"{path} [{section}]"
            if isinstance(value, dict):
                _rules(value.get("rules"), place, result)
            elif isinstance(value, tuple):
                for item in value:
                    _rules(item, place, result)


def _json(path: str, result: Scan) -> None:
    try:
        with open(path, "rb") as file:
            document: Any = json.loads(file.read())
    except (OSError, ValueError):
        return  # (not every JSON file is a rules file)
    _rules(document, path, result)


def _files(paths: Iterable[str]) -> Iterable[str]:
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
                for name in sorted(names):
                    yield os.path.join(root, name)
        else:
            yield path


def scan(paths: Iterable[str]) -> Scan:
    """Where the files under ``paths`` emit events (see the module's docstring)."""
    result = Scan()
    modules: list[_File] = []
    for path in _files(paths):
        if path.endswith(".py"):
            _python(path, result, modules)
        elif path.endswith((".ini", ".cfg", ".conf")):
            _ini(path, result)
        elif path.endswith(".json"):
            _json(path, result)
        else:
            continue
        result.files += 1
    wrappers: dict[str, _Wrapper] = {}
    for module in modules:
        wrappers.update(module.wrappers)
        for event, line in module.emits:
            result.add(event, f"{module.path}:{line}")
    # calls of the wrappers, and wrappers of wrappers (a parameter passed on)
    found = dict(wrappers)
    while found:
        new: dict[str, _Wrapper] = {}
        for module in modules:
            for call, function in module.calls:
                name = _called(call) or ""
                wrapper = found.get(name)
                argument = None if wrapper is None else _argument(call, wrapper)
                if argument is None:
                    continue
                start = len(module.emits)
                module.value(argument, f"the event of {name}()", function)
                for event, line in module.emits[start:]:
                    result.add(event, f"{module.path}:{line}")
                for other, found_wrapper in module.wrappers.items():
                    if other not in wrappers:
                        wrappers[other] = new[other] = found_wrapper
        found = new
    reached = {_called(call) for module in modules for call, _ in module.calls}
    for name in sorted(set(wrappers) - reached):
        result.unseen.append(
            f"{name}() passes its parameter {wrappers[name].name!r} as the event, and no "
            "call of it was found"
        )
    for module in modules:
        result.unseen.extend(module.unseen)
    return result
