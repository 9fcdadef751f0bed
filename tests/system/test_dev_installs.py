"""``python3 dev.py``'s set-up: the demo installs only what it needs, the tests everything.

``dev.py`` is loaded afresh for each test, with its virtual environment in the test's
directory and pip replaced by a recorder (the real installs take a minute; the cold
demo's time is measured in CONTRIBUTING.md's way, by hand). What is checked is which
installs run, in which order of commands a user types.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What the development extra brings and the demo must not wait for.
TOOLCHAIN = ("mypy", "mkdocs", "celery", "ruff", "pytest", ".[dev]")


class Dev:
    """``dev.py`` loaded as a module of its own, its venv under ``tmp_path``, pip recorded."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        spec = importlib.util.spec_from_file_location(f"dev_{id(self)}", ROOT / "dev.py")
        assert spec is not None and spec.loader is not None
        module: Any = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.module: ModuleType = module
        self.venv = tmp_path / ".venv"
        self.site = tmp_path / "site-packages"
        self.commands: list[list[str]] = []
        self.created = 0
        monkeypatch.setattr(module, "VENV", self.venv)
        monkeypatch.setattr(module, "BIN", self.venv / "bin")
        monkeypatch.setattr(module, "PY", self.venv / "bin" / "python")
        monkeypatch.setattr(module, "_run", self._pip)
        monkeypatch.setattr(module, "_site_packages", lambda: self.site)
        monkeypatch.setattr(module.venv, "EnvBuilder", self._builder)

    def _builder(self, **options: Any) -> Any:
        dev = self

        class Builder:
            def create(self, path: Path) -> None:
                dev.created += 1
                (path / "bin").mkdir(parents=True)
                (path / "bin" / "python").write_text("")
                dev.site.mkdir(exist_ok=True)

        return Builder()

    def _pip(self, *args: Any) -> int:
        self.commands.append([str(a) for a in args])
        return 0

    def installs(self) -> list[str]:
        """What each pip command installed, one string per command."""
        out = [" ".join(c[c.index("install") + 1 :]) for c in self.commands]
        self.commands.clear()
        return [" ".join(a for a in line.split() if not a.startswith("--")) for line in out]


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dev:
    return Dev(tmp_path, monkeypatch)


def test_the_demo_installs_only_the_runtime_dependencies(dev: Dev) -> None:
    dev.module.ensure_venv(dev.module.DEMO)
    (installed,) = dev.installs()
    assert dev.created == 1
    assert installed.split() == dev.module.runtime_requirements()
    assert not [tool for tool in TOOLCHAIN if tool in installed]
    # the package itself: importable from the checkout, as an editable install makes it
    assert (dev.site / dev.module.DEMO_PTH).read_text().strip() == str(ROOT)


def test_the_demo_installs_once(dev: Dev) -> None:
    dev.module.ensure_venv(dev.module.DEMO)
    dev.installs()
    dev.module.ensure_venv(dev.module.DEMO)
    assert dev.installs() == []


def test_the_tests_after_the_demo_install_everything_in_the_same_venv(dev: Dev) -> None:
    dev.module.ensure_venv(dev.module.DEMO)
    dev.installs()
    dev.module.ensure_venv()
    assert dev.installs() == ["pip", "-e .[dev]"]
    assert dev.created == 1
    assert not (dev.site / dev.module.DEMO_PTH).exists()  # the editable install's instead
    dev.module.ensure_venv(dev.module.DEMO)  # and the demo reuses it
    dev.module.ensure_venv()
    assert dev.installs() == []


def test_the_demo_after_the_tests_installs_nothing(dev: Dev) -> None:
    dev.module.ensure_venv()
    assert dev.installs() == ["pip", "-e .[dev]"]
    dev.module.ensure_venv(dev.module.DEMO)
    assert dev.installs() == []


def test_a_changed_pyproject_reinstalls_what_is_asked(
    dev: Dev, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev.module.ensure_venv()
    dev.installs()
    monkeypatch.setattr(dev.module, "_digest", lambda: "another pyproject.toml")
    dev.module.ensure_venv(dev.module.DEMO)
    assert dev.installs() == [" ".join(dev.module.runtime_requirements())]
    dev.module.ensure_venv()
    assert dev.installs() == ["pip", "-e .[dev]"]


def test_the_runtime_requirements_are_pyprojects_dependencies() -> None:
    spec = importlib.util.spec_from_file_location("dev_requirements", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert module.runtime_requirements() == project["dependencies"]
    assert module.runtime_requirements()  # (an empty list would install nothing)


def test_the_suite_runs_on_parallel_workers_and_lets_arguments_override(dev: Dev) -> None:
    linters, pytest_step = dev.module.check_steps(["-n", "0", "tests/items"])
    assert [s.name for s in linters][:3] == ["ruff", "mypy", "lint-imports"]
    argv = pytest_step.argv
    assert argv[argv.index("-n") + 1] == dev.module.TEST_WORKERS
    assert "--cov" in argv
    assert argv[-3:] == ["-n", "0", "tests/items"]  # last: pytest takes the last -n
    assert argv[0] == str(dev.venv / "bin" / "python")
