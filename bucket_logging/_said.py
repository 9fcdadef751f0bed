"""How the library's own lines read: its name in front only where no handler shows it.

The one place that knows it (:func:`prefixed`): the diagnostics of
:mod:`bucket_logging._runtime.diagnostics` and the option bounds of
:mod:`bucket_logging._bounds` (below the runtime layer) both say their lines through it.

Imports nothing of this package.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["LOGGER_NAME", "PREFIX", "logger", "prefixed"]

LOGGER_NAME: Final = "bucket_logging"
#: The library's own logger: every line it says goes here.
logger: Final = logging.getLogger(LOGGER_NAME)
PREFIX: Final = LOGGER_NAME + ": "


def prefixed(text: str) -> str:
    """``text`` said once as the library's: the logger's name is its prefix.

    A configured handler's format usually shows the logger name already
    (``%(name)s: %(message)s``), so the text goes without it; with no handler at all,
    logging's last resort prints the bare message, so the prefix is added.
    """
    if text.startswith(PREFIX):
        text = text[len(PREFIX) :]
    return text if logger.hasHandlers() else PREFIX + text
