#!/usr/bin/env python3
"""Developer entry point: needs only Python 3.10+ and sets itself up.

    python3 dev.py demo     # the library end to end against the local tracking server
    python3 dev.py test     # lint, type-check, the layering contracts and the whole suite
    python3 dev.py bench    # the benchmarks (``bench --smoke`` for a quick run)
    python3 dev.py docs     # build the docs site strictly into site/ (``docs --serve``: serve it)

Each command creates ``.venv/`` beside this file on first use and installs what it
needs into it; later runs reuse it and reinstall only when ``pyproject.toml`` changed.
``demo`` needs only the runtime dependencies (a few seconds); ``test``, ``bench`` and
``docs`` install the package with its development extras (``demo`` then reuses those).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STRUCTURE = ROOT.parent / "shared" / "tools" / "structure.py"

#: The stamp of the demo's install (the runtime dependencies and a path entry to ROOT).
DEMO = "demo"
#: The path entry the demo's install writes into the venv's site-packages.
DEMO_PTH = "bucket_logging_demo.pth"

#: Test workers of ``python3 dev.py test`` (pytest-xdist's ``-n``), chosen by measurement
#: on 2 cores: the tests wait on subprocesses and sockets more than they compute (tests/cli
#: at load 6-11: 149 s on 2 workers, 84-117 s on 4; more workers make the timing tests
#: and the bursts of programs of tests/system compete for the 2 cores). How
#: the tests are shared out among them: file by file, the slowest first, except a few
#: big files split test by test (tests/conftest.py: SLOW_FIRST, SPLIT).
TEST_WORKERS = "4"
TEST_DIST = ["--dist", "loadfile"]


def _run(*args: str | os.PathLike[str]) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def _digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def runtime_requirements() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (read without tomllib: Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r"^\[project\]$.*?^dependencies = \[$(.*?)^\]$", text, re.M | re.S)
    if found is None:
        sys.exit("dev.py: no [project] dependencies in pyproject.toml")
    return re.findall(r'^\s*"([^"]+)",?\s*(?:#.*)?$', found.group(1), re.M)


def _installed(extras: str) -> bool:
    """Whether the venv holds what ``extras`` needs for this pyproject.toml.

    The demo's needs are met by any install (each holds the runtime dependencies);
    an extras install only by its own stamp.
    """
    if not PY.exists():
        return False
    digest = _digest()
    stamps = VENV.glob(".installed-*") if extras == DEMO else [VENV / f".installed-{extras}"]
    return any(stamp.is_file() and stamp.read_text() == digest for stamp in stamps)


def ensure_venv(extras: str = "dev") -> None:
    """Create the virtual environment and install into it what ``extras`` needs.

    ``extras`` is the package's extras to install it with (``"dev"``, ``"dev,bench"``),
    or :data:`DEMO`: only the runtime dependencies, with the package importable from
    this checkout by a path entry (no build backend to fetch, no toolchain).
    """
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may run on any python3
        sys.exit(f"bucket_logging needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    if _installed(extras):
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV.name}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pth = _site_packages() / DEMO_PTH
    if extras == DEMO:
        print("dev.py: installing the runtime dependencies ...", flush=True)
        if _run(*pip, *runtime_requirements()) != 0:
            sys.exit("dev.py: installation failed (see pip's output above)")
        pth.write_text(f"{ROOT}\n", encoding="utf-8")
    else:
        print(f"dev.py: installing bucket_logging[{extras}] ...", flush=True)
        if _run(*pip, "--upgrade", "pip") != 0 or _run(*pip, "-e", f".[{extras}]") != 0:
            sys.exit("dev.py: installation failed (see pip's output above)")
        pth.unlink(missing_ok=True)  # the editable install has its own path entry
    (VENV / f".installed-{extras}").write_text(_digest())


def _site_packages() -> Path:
    out = subprocess.run(
        [str(PY), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def cmd_demo(args: list[str]) -> int:
    ensure_venv(DEMO)
    return _run(PY, "examples/demo.py", *args)


class Step:
    """One check: its command, and once run, its exit status, time and output."""

    def __init__(self, name: str, argv: list[str | os.PathLike[str]]) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.rc: int | None = None
        self.seconds = 0.0
        self.output = ""

    def run(self, *, capture: bool) -> int:
        """Run it (its output kept in :attr:`output` when ``capture``)."""
        start = time.monotonic()
        # The suite starts hundreds of interpreters and each worker imports every test
        # module: without cached bytecode, each one compiles the package again and pytest
        # rewrites every test module in each worker (collecting took 35 s instead of 3 s).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if capture:
            with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
                # niced: the linters only fill the CPU the tests leave idle
                self.rc = subprocess.call(
                    self.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=(lambda: os.nice(10)) if os.name == "posix" else None,
                )  # fmt: skip
                out.seek(0)
                self.output = out.read()
        else:
            self.rc = subprocess.call(self.argv, cwd=ROOT, env=env)
        self.seconds = time.monotonic() - start
        return self.rc


def check_steps(args: list[str]) -> tuple[list[Step], Step]:
    """The checks of ``python3 dev.py test``: the linters (run one after the other) and
    pytest (run at the same time, on :data:`TEST_WORKERS` workers; ``args`` come last,
    so ``-n 0`` runs it serially and a path runs one file)."""
    linters = [
        Step("ruff", [PY, "-m", "ruff", "check", "."]),
        Step("mypy", [PY, "-m", "mypy"]),
        Step("lint-imports", [BIN / "lint-imports", "--no-cache"]),
    ]
    if STRUCTURE.exists():  # the steering repository's measure, where ../shared exists
        linters.append(Step("structure", [PY, STRUCTURE, "bucket_logging"]))
    pytest = Step(
        "pytest",
        [
            PY, "-m", "pytest", "-n", TEST_WORKERS, *TEST_DIST,
            "--cov", "--cov-branch", "--cov-report=term", *args,
        ],
    )  # fmt: skip
    return linters, pytest


def _linters(steps: list[Step]) -> None:
    for step in steps:
        step.run(capture=True)


def cmd_test(args: list[str]) -> int:
    start = time.monotonic()
    ensure_venv()
    setup = time.monotonic() - start
    linters, pytest = check_steps(args)
    print(f"dev.py: {', '.join(s.name for s in linters)}, and at the same time pytest", flush=True)
    thread = threading.Thread(target=_linters, args=(linters,), daemon=True)
    thread.start()
    pytest.run(capture=False)
    thread.join()
    failed = [s for s in [*linters, pytest] if s.rc != 0]
    for step in linters:
        print(f"dev.py: --- {step.name} (exit {step.rc})\n{step.output.rstrip()}")
    phases = [("set-up", setup), *((s.name, s.seconds) for s in [*linters, pytest])]
    print(
        "dev.py: phase times: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases)
        + f"; linters {sum(s.seconds for s in linters):.1f} s beside pytest"
        + f"; test total {time.monotonic() - start:.1f} s",
        flush=True,
    )
    if failed:
        print(f"dev.py: failed: {', '.join(f'{s.name} (exit {s.rc})' for s in failed)}")
        return next(s.rc or 1 for s in failed)
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
