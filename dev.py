#!/usr/bin/env python3
"""Developer entry point: needs only Python 3.10+ and sets itself up.

    python3 dev.py demo     # the library end to end against the local tracking server
    python3 dev.py test     # lint, type-check, the layering contracts and the whole suite
    python3 dev.py bench    # the benchmarks (``bench --smoke`` for a quick run)
    python3 dev.py docs     # build the docs site strictly into site/ (``docs --serve``: serve it)

Each command creates ``.venv/`` beside this file on first use and installs the
package with its development extras into it; later runs reuse it and reinstall
only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STRUCTURE = ROOT.parent / "shared" / "tools" / "structure.py"


def _run(*args: str | os.PathLike[str]) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_venv(extras: str = "dev") -> None:
    """Create the virtual environment and install the package into it if needed."""
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may run on any python3
        sys.exit(f"bucket_logging needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    stamp = VENV / f".installed-{extras}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV.relative_to(ROOT)}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print(f"dev.py: installing bucket_logging[{extras}] ...", flush=True)
    pip = [PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if _run(*pip, "--upgrade", "pip") != 0 or _run(*pip, "-e", f".[{extras}]") != 0:
        sys.exit("dev.py: installation failed (see pip's output above)")
    stamp.write_text(digest)


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    return _run(PY, "examples/demo.py", *args)


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    steps: list[tuple[str, list[str | os.PathLike[str]]]] = [
        ("ruff", [PY, "-m", "ruff", "check", "."]),
        ("mypy", [PY, "-m", "mypy"]),
        ("lint-imports", [BIN / "lint-imports", "--no-cache"]),
        *(
            [("structure", [PY, STRUCTURE, "bucket_logging"])]
            if STRUCTURE.exists()  # the steering repository's measure, where it sits beside
            else []
        ),
        (
            "pytest",
            [PY, "-m", "pytest", "--cov", "--cov-branch", "--cov-report=term", *args],
        ),
    ]
    for name, argv in steps:
        print(f"dev.py: {name}", flush=True)
        rc = _run(*argv)
        if rc != 0:
            print(f"dev.py: {name} failed (exit {rc})", flush=True)
            return rc
    return 0


def docs_command(args: list[str]) -> list[str | os.PathLike[str]]:
    """``mkdocs build --strict`` (or ``mkdocs serve --strict`` with ``--serve``)."""
    serve = "--serve" in args
    rest = [a for a in args if a != "--serve"]
    return [PY, "-m", "mkdocs", "serve" if serve else "build", "--strict", *rest]


def cmd_docs(args: list[str]) -> int:
    ensure_venv()
    # mkdocs-material prints a notice about MkDocs 2 on every run unless told not to.
    os.environ["NO_MKDOCS_2_WARNING"] = "1"
    return _run(*docs_command(args))


def cmd_bench(args: list[str]) -> int:
    ensure_venv("dev,bench")
    return _run(PY, "benchmarks/run.py", *args)


COMMANDS = {"demo": cmd_demo, "test": cmd_test, "bench": cmd_bench, "docs": cmd_docs}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
