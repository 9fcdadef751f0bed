"""Every Python example of the docs site (docs/*.md) and of README.md runs.

Each ```python block is written to a file of its own and run as a user would paste it:
in a subprocess with ``sys.executable``, all at once (module fixture), each against its
own :class:`TrackingServer` through ``BUCKET_TRACKING_URL`` and a test key (a block that
names a key of its own still posts to that server: the URL variable wins). A block that
defines ``test_*`` functions is a test file of the user's and runs under pytest, with
the package's pytest plugin as installed. Each must exit 0, print no traceback, make
the ``bucket_logging`` logger report nothing at WARNING or above (a wrong tag in an
example would be such a report: a ``sitecustomize`` module in the block's folder puts a
handler on that logger before the block runs, writing to a file), and never print the
key.

Other blocks are fenced with the language they are in (``sh``, ``text``, ``ini``,
``toml``, ``yaml``, ``ruby``): a fence without a language, or with a Python one other
than ``python`` (``py``, ``pycon``), fails. A Python block that cannot run here is
marked by a visible line right before it, ``*Not run by the tests: <reason>.*``, and
skipped with that reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bucket_logging import TrackingServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

#: A distinctive key: it must never show up in any output.
KEY = "trDOCSEXAMPLESkey-5e0c2b7a91d3"

#: Seconds all the blocks, run at once, may take.
TIMEOUT = 60

FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)")
SKIP = re.compile(r"^\*Not run by the tests: (?P<reason>.+)\.\*\s*$")
#: Imported at start-up by every block's interpreter (its folder is on PYTHONPATH).
SITECUSTOMIZE = """\
import logging
import os


class _Reports(logging.Handler):
    def emit(self, record):
        with open(os.environ["DOCS_EXAMPLE_REPORTS"], "a", encoding="utf-8") as f:
            f.write(f"{record.levelname} {record.name}: {record.getMessage()}\\n")


logging.getLogger("bucket_logging").addHandler(_Reports(logging.WARNING))
"""

NOT_PYTHON = {"sh", "bash", "text", "ini", "toml", "yaml", "json", "ruby", "console", "js"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks = m.group("indent"), m.group("ticks")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(ticks):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        before = [line for line in lines[max(0, i - 2) : i] if line.strip()]
        skip = SKIP.match(before[-1]) if before else None
        found.append(
            Block(
                page,
                i + 1,
                m.group("lang"),
                "\n".join(body) + "\n",
                skip.group("reason") if skip else None,
            )
        )
        i = j + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]


@dataclass
class Run:
    """One block run: its process, its server and its output."""

    block: Block
    server: TrackingServer
    proc: subprocess.Popen[str]
    reports: Path
    stdout: str = ""
    stderr: str = ""

    def describe(self) -> str:
        reports = self.reports.read_text(encoding="utf-8") if self.reports.exists() else ""
        return (
            f"{self.block.name}: exit {self.proc.returncode}\n--- code\n{self.block.code}"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
            f"--- reports of the bucket_logging logger\n{reports}"
        )


def _command(block: Block, path: Path) -> list[str]:
    if re.search(r"^def test_", block.code, re.MULTILINE):
        # The user's own test file, under pytest with the plugins installed (the
        # package's bucket_tracking fixture among them) and no configuration of ours;
        # the slowest plugins of the dev extra, which no example uses, stay out.
        quiet = ["no:cacheprovider", "no:celery", "no:hypothesispytest", "no:pytest_cov"]
        return [sys.executable, "-m", "pytest", "-q", *(f"-p{p}" for p in quiet), path.name]
    return [sys.executable, path.name]


def start(block: Block, folder: Path) -> Run:
    """Run a block in its own folder against its own server (the process is not awaited)."""
    path = folder / "test_block.py"
    path.write_text(block.code, encoding="utf-8")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    reports = folder / "reports.txt"
    server = TrackingServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    env.update(
        BUCKET_TRACKING_URL=server.url,
        BUCKET_TRACKING_KEY=KEY,
        DOCS_EXAMPLE_REPORTS=str(reports),
        PYTHONPATH=str(folder),
    )
    try:
        proc = subprocess.Popen(
            _command(block, path),
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except BaseException:
        server.stop()
        raise
    return Run(block, server, proc, reports)


def finish(run: Run, timeout: float) -> None:
    """Wait for a run's process (killed after ``timeout``) and stop its server."""
    try:
        run.stdout, run.stderr = run.proc.communicate(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.stdout, run.stderr = run.proc.communicate()
        run.stderr = f"(timed out after {TIMEOUT} s)\n{run.stderr}"
    finally:
        run.server.stop()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Start every runnable block at once; wait for all of them (TIMEOUT in all)."""
    started: dict[str, Run] = {}
    try:
        for n, block in enumerate(b for b in PYTHON if b.skip is None):
            started[block.name] = start(block, tmp_path_factory.mktemp(f"block{n}"))
        deadline = time.monotonic() + TIMEOUT
        for run in started.values():
            finish(run, deadline - time.monotonic())
        yield started
    finally:
        for run in started.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.communicate()
            run.server.stop()


def test_every_page_is_read_and_has_examples() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "index.md", "getting-started.md", "testing.md"} <= names
    assert len(PYTHON) >= 10
    assert {b.page.name for b in PYTHON} >= {"README.md", "getting-started.md", "testing.md"}


@pytest.mark.parametrize("block", ALL, ids=lambda b: b.name)
def test_every_block_says_its_language(block: Block) -> None:
    assert block.lang == "python" or block.lang in NOT_PYTHON, (
        f"{block.name}: fence it as python (run by the tests) or as one of "
        f"{sorted(NOT_PYTHON)}, not {block.lang!r}"
    )


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_python_block_runs(block: Block, runs: dict[str, Run]) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.name}: {block.skip}")
    run = runs[block.name]
    assert run.proc.returncode == 0, run.describe()
    output = run.stdout + run.stderr
    assert "Traceback" not in output, run.describe()
    if "pytest" in _command(block, Path("x")):
        assert re.search(r"^\d+ passed", run.stdout, re.M), run.describe()
    # A report of the library's own logger (a wrong tag, a dropped item) is a broken example.
    assert not run.reports.exists(), run.describe()
    assert KEY not in output


def test_the_runner_fails_a_broken_block(tmp_path: Path) -> None:
    """The collector finds a block, and a failing one is a failure (not a pass)."""
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nraise SystemExit(3)\n```\n\n*Not run by the tests: needs X.*\n"
        "\n```python\nimport nothing\n```\n",
        encoding="utf-8",
    )
    first, second = blocks(page)
    assert (first.line, first.code, first.skip) == (3, "raise SystemExit(3)\n", None)
    assert second.skip == "needs X"
    run = start(first, tmp_path)
    finish(run, TIMEOUT)
    assert run.proc.returncode == 3


def test_the_runner_sees_a_report_of_the_library(tmp_path: Path) -> None:
    """An example with a wrong tag runs to its end, but its report is caught."""
    code = (
        "import logging\n"
        "from bucket_logging import BucketHandler\n"
        "logging.getLogger('app').addHandler(BucketHandler())\n"
        "logging.getLogger('app').warning('rated', extra={\n"
        "    'user_id': 1, 'bucket_feedback': {'feature_id': 'f', 'score': 9}})\n"
    )
    run = start(Block(tmp_path / "page.md", 1, "python", code, None), tmp_path)
    finish(run, TIMEOUT)
    assert run.proc.returncode == 0, run.describe()
    assert "score must be a number from 1 to 5" in run.reports.read_text(encoding="utf-8")
