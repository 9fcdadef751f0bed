"""A griffe extension for the docs site: Sphinx roles and literal blocks as Markdown.

The package's docstrings are Google style with reStructuredText inline markup
(``:class:`~bucket_logging.BulkSender```, ``::`` before a code block), which reads
well in ``help()`` and in an editor. mkdocstrings renders docstrings as Markdown, so
this extension rewrites them as the site loads the package (the sources are not
touched):

- a role whose target is documented on the site (a name in ``bucket_logging.__all__``,
  one of its documented members, or ``bucket_logging.testing``) becomes a Markdown
  cross-reference to the *public* name, whatever private module defines it
  (``[`BulkSender`][bucket_logging.BulkSender]``), so ``mkdocs build --strict`` checks it;
- any other role (a private helper, the standard library) becomes inline code;
- a paragraph ending in ``::`` ends in ``:`` and the indented block after it becomes a
  fenced code block (``python`` when it parses as Python and is no INI section, else
  ``text``).

Loaded by mkdocs.yml (``extensions: [tools/griffe_sphinx_roles.py]``).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import griffe

PACKAGE = "bucket_logging"

#: Public modules documented on their own (besides the package itself).
PUBLIC_MODULES = ("bucket_logging.testing",)

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`([^`]+)`")


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        assert isinstance(member, griffe.Object)
        yield from _walk(member)


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    try:
        final = obj.final_target if isinstance(obj, griffe.Alias) else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return final if isinstance(final, griffe.Object) else None


def _documented(pkg: griffe.Module) -> dict[str, str]:
    """Every path the site renders, canonical or public, mapped to its public path."""
    public: dict[str, str] = {}

    def add(obj: griffe.Object, public_path: str) -> None:
        public[obj.path] = public_path
        public[public_path] = public_path
        if obj.is_class:
            for name, member in obj.all_members.items():
                target = _target(member)
                if name.startswith("_") or target is None or not target.docstring:
                    continue
                public[f"{obj.path}.{name}"] = f"{public_path}.{name}"
                public[f"{public_path}.{name}"] = f"{public_path}.{name}"

    public[PACKAGE] = PACKAGE
    for name in pkg.exports or ():
        target = _target(pkg.members[name]) if isinstance(name, str) else None
        if target is not None:
            add(target, f"{PACKAGE}.{name}")
    for module_path in PUBLIC_MODULES:
        module = pkg[module_path.removeprefix(PACKAGE + ".")]
        public[module_path] = module_path
        for name in module.exports or ():
            target = _target(module.members[name]) if isinstance(name, str) else None
            if target is not None:
                add(target, f"{module_path}.{name}")
    return public


def _resolve(target: str, obj: griffe.Object, public: dict[str, str]) -> str | None:
    """The public path a role's target names, when the site documents it."""
    candidates = [target]
    scope: griffe.Object | None = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    candidates.append(f"{PACKAGE}.{target}")
    # A private module's path that has moved (``bucket_logging._old.BulkSender``): the
    # public name it ends with.
    parts = target.split(".")
    candidates.extend(f"{PACKAGE}.{'.'.join(parts[i:])}" for i in range(1, len(parts)))
    for candidate in candidates:
        if candidate in public:
            return public[candidate]
    return None


def _roles(text: str, obj: griffe.Object, public: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        content = match.group(1).strip()
        titled = re.fullmatch(r"(.*?)\s*<([^>]+)>", content)
        if titled:
            title, target = titled.group(1), titled.group(2)
        else:
            target = content.lstrip("~")
            title = target.rsplit(".", 1)[-1] if content.startswith("~") else target
        target = target.removesuffix("()")
        resolved = _resolve(target, obj, public)
        if resolved is None:
            return f"`{title}`"
        return f"[`{title}`][{resolved}]"

    return ROLE.sub(replace, text)


def _literal_blocks(text: str) -> str:
    """``::`` paragraphs: the colon kept once, the indented block after them fenced."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        head = line.rstrip()[:-2].rstrip()
        if head.strip():
            out.append(head + ":")
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block: list[str] = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
            j -= 1
        code = textwrap.dedent("\n".join(block))
        lang = "python" if _is_python(code) else "text"
        pad = " " * indent
        out.append("")
        out.append(f"{pad}```{lang}")
        out.extend(pad + c if c else c for c in code.split("\n"))
        out.append(f"{pad}```")
        i = j
    return "\n".join(out)


def _is_python(code: str) -> bool:
    """Python that parses, and not an INI section (``[handler_bucket]`` parses too)."""
    if code.lstrip().startswith("["):
        return False
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


class SphinxRoles(griffe.Extension):
    """Rewrites the package's docstrings as Markdown once the package is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self._done = False

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """griffe 2: the package and its submodules are loaded."""
        if pkg.path != PACKAGE or self._done:
            return
        self._done = True
        public = _documented(pkg)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                value = _literal_blocks(obj.docstring.value)
                obj.docstring.value = _roles(value, obj, public)

    #: The same hook under its griffe 1 name.
    on_package_loaded = on_package
