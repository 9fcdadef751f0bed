"""The package builds as an sdist and a wheel that ``twine check`` accepts.

``python -m build`` builds the sdist, then the wheel from the sdist (so a file the sdist
forgets fails here). The wheel must hold the typing marker and the entry points, and
the metadata the project URLs and classifiers.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        # --no-isolation: the build backend (hatchling) is in the dev extra, so the build
        # needs no network and takes seconds.
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _one(dist: Path, pattern: str) -> Path:
    [path] = dist.glob(pattern)
    return path


def test_twine_check_passes(dist: Path) -> None:
    files = [str(p) for p in sorted(dist.iterdir())]
    assert len(files) == 2, files
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_the_wheel_holds_the_package_its_marker_and_entry_points(dist: Path) -> None:
    wheel = _one(dist, "bucket_logging-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        meta = zf.read(metadata).decode()
        entries = zf.read(entry_points).decode()
    assert "bucket_logging/py.typed" in names
    assert "bucket_logging/__init__.py" in names
    assert "bucket_logging/pytest_plugin.py" in names
    # Every file of the package is in the wheel (package data included), and no tests.
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "bucket_logging").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert package <= names, sorted(package - names)
    assert not any(n.startswith("tests/") for n in names)
    assert "[pytest11]\nbucket_logging = bucket_logging.pytest_plugin" in entries
    assert "bucket-logging = bucket_logging.__main__:main" in entries
    assert "Project-URL: Repository, " in meta
    assert "Project-URL: Documentation, " in meta
    assert "Classifier: Typing :: Typed" in meta
    assert "Provides-Extra: loguru" in meta
    assert "Description-Content-Type: text/markdown" in meta


def test_the_sdist_holds_what_the_wheel_and_the_readme_need(dist: Path) -> None:
    sdist = _one(dist, "bucket_logging-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in (
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "bucket_logging/py.typed",
    ):
        assert name in names, name


def test_the_license_the_metadata_announces_is_shipped_in_both(dist: Path) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License"), text[:40]
    with zipfile.ZipFile(_one(dist, "bucket_logging-*.whl")) as zf:
        [license_] = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(license_).decode() == text
        [metadata] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        assert "License: MIT" in zf.read(metadata).decode()
