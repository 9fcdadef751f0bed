"""A first sender built off the main thread: where the main thread cannot be asked to
install the SIGTERM handler, one warning says so and names the fix (the case where it
can is in ``test_shutdown.py`` and, with a real SIGTERM, ``test_stop_paths.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def run(tmp_path: Path, source: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if k != "BUCKET_HANDLE_SIGTERM"}
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=dict(env, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_without_ctypes_one_warning_names_the_fix(tmp_path: Path) -> None:
    source = """
        import signal, sys, threading
        sys.modules["ctypes"] = None  # a build without ctypes
        from bucket_logging import BulkSender

        for _ in range(2):
            t = threading.Thread(target=BulkSender, kwargs={"offline": True}, name="setup")
            t.start(); t.join()
        for _ in range(100): pass
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """
    proc = run(tmp_path, source)
    out, err = proc.communicate(timeout=20)
    assert out.split() == ["True"], err
    assert err.count("no SIGTERM handler") == 1, err
    assert "thread 'setup'" in err
    assert "bucket_logging.flush()" in err
