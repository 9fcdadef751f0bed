"""A Django project whose ``LOGGING`` holds a ``BucketHandler`` runs its management
commands without a key (``manage.py check``, ``migrate``, ``collectstatic`` in a Docker
build): tracking stays off and one warning says so; ``BUCKET_REQUIRE_KEY=1`` keeps the
error. With a key, the start-up line reaches the console handler ``LOGGING`` sets up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "django-without-a-key-test-only"
INSTALLED_APPS = []
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "bucket": {"class": "bucket_logging.BucketHandler"},
    },
    "root": {"level": "INFO", "handlers": ["console", "bucket"]},
}
"""


def _django_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "keyless_site.py").write_text(SETTINGS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    clean["PYTHONPATH"] = os.pathsep.join([str(tmp_path), clean.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings", "keyless_site"],
        env=clean | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manage_py_check_without_a_key_exits_0_with_one_warning(tmp_path: Path) -> None:
    pytest.importorskip("django")
    done = _django_check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(said) == 1, done.stderr
    assert said[0].startswith("no key (REFLAG_SECRET_KEY or BUCKET_TRACKING_KEY"), said
    assert "tracking is off" in said[0]


def test_require_key_makes_manage_py_check_fail_as_before(tmp_path: Path) -> None:
    pytest.importorskip("django")
    done = _django_check(tmp_path, BUCKET_REQUIRE_KEY="1")
    assert done.returncode == 1
    assert "ConfigurationError: no Bucket tracking key or Reflag key" in done.stderr


def test_with_a_key_django_says_where_tracking_goes(tmp_path: Path) -> None:
    # (the handler is built inside dictConfig: the start-up line waits for it to finish)
    pytest.importorskip("django")
    done = _django_check(
        tmp_path, REFLAG_SECRET_KEY="sec_django_check", REFLAG_API_BASE_URL="http://127.0.0.1:9"
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert said == [
        "tracking to Reflag's Runtime API at http://127.0.0.1:9; no spool; "
        "a SIGTERM handler delivers the queue before the process ends"
    ], done.stderr
    assert "sec_django_check" not in done.stdout + done.stderr
