"""The uvicorn stop paths with the oldest uvicorn that re-raises SIGTERM (0.29).

``test_stop_paths.py`` runs the installed (newest) uvicorn; this file runs the paths
where the library hooks the server's shutdown (``--workers``, ``--reload``, gunicorn
``--preload`` with ``UvicornWorker``), and one process, with uvicorn 0.29: installed
once with ``pip install --target .venv-uvicorn029`` (git ignores it) and put first on
the programs' ``PYTHONPATH``. Without the network the tests skip locally; under ``CI``
they fail instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import test_stop_paths as stop
from support import free_port
from test_stop_paths import run, server

from bucket_logging import TrackingServer

__all__ = ["run", "server"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")

VERSION = "0.29.0"
TARGET = Path(__file__).resolve().parents[2] / ".venv-uvicorn029"


def _installed_version() -> str:
    probe = subprocess.run(
        [sys.executable, "-c", "import uvicorn; print(uvicorn.__version__)"],
        env=dict(os.environ, PYTHONPATH=str(TARGET)),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return probe.stdout.strip()


@pytest.fixture(scope="module")
def uvicorn029() -> str:
    """The folder that holds uvicorn 0.29 (installed on first use)."""
    if not (TARGET / "uvicorn").is_dir() or _installed_version() != VERSION:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--upgrade", "--target", str(TARGET), f"uvicorn=={VERSION}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        if pip.returncode != 0:
            message = f"cannot install uvicorn {VERSION}: {pip.stderr.strip()[-500:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    assert _installed_version() == VERSION
    return str(TARGET)


#: (the server's arguments for a port, extra environment of the app)
SERVERS = [
    pytest.param(stop.uvicorn(), {}, id="uvicorn"),
    pytest.param(stop.uvicorn("--workers", "2"), {}, id="uvicorn --workers 2"),
    pytest.param(stop.uvicorn("--workers", "2"), stop.LIFESPAN_FLUSH,
                 id="uvicorn --workers 2+lifespan-aflush"),
    pytest.param(stop.uvicorn("--reload"), {}, id="uvicorn --reload"),
    pytest.param(stop.gunicorn("uvicorn.workers.UvicornWorker", "-w", "1", "--preload"), {},
                 id="gunicorn --preload UvicornWorker"),
]  # fmt: skip


@pytest.mark.parametrize(("server_argv", "app_env"), SERVERS)
def test_uvicorn_029_stopped_by_sigterm_delivers_every_request_event(
    run: stop.Run,
    server: TrackingServer,
    uvicorn029: str,
    server_argv: Callable[[int], list[str]],
    app_env: dict[str, str],
) -> None:
    port = free_port()
    path = os.pathsep.join([uvicorn029, str(stop.APPS)])
    child = run(server_argv(port), PYTHONPATH=path, **app_env)
    stop.serve_then_stop(child, port, server, signal.SIGTERM)
    assert "Traceback" not in child.stderr
