"""The relay is an optional extra: ``import bucket_logging`` (and its CLI module) never
imports uvicorn, and ``bucket-logging relay`` without the extra says how to install it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_and_its_cli_does_not_import_uvicorn() -> None:
    code = (
        "import sys, bucket_logging, bucket_logging.__main__, bucket_logging._cli.main\n"
        "loaded = [m for m in ('uvicorn', 'bucket_logging._relay.app') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_relay_without_the_extra_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # not installed\n"
        "from bucket_logging._cli.main import main\n"
        "sys.exit(main(['relay', '--port', '0', '--key', 'trSomeKey-12345678']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "pip install 'bucket-logging[relay]'" in done.stderr
    assert "Traceback" not in done.stderr
