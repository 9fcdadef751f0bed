"""``python -m bucket_logging``: the command line (see :mod:`bucket_logging._cli`)."""

from __future__ import annotations

import sys

from ._cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
