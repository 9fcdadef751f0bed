"""The package's version (read by the sender's User-Agent and by ``__init__``)."""

from __future__ import annotations

from typing import Final

__all__ = ["__version__"]

__version__: Final = "0.1.0"
