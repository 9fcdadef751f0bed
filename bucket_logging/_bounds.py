"""The range of a numeric option, and what each side does with a value beyond it.

:class:`Bounds` is what an entry of :data:`bucket_logging._options.OPTIONS` says of its
number: beyond ``low`` or ``high`` a value is clamped (:data:`CLAMP`: the nearest bound,
and a warning on the ``bucket_logging`` logger naming the keyword or variable) or refused
(:data:`REFUSE`: a :class:`~bucket_logging.ConfigurationError` naming it).

May import: the exceptions only (it sits under the options table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._exceptions import ConfigurationError
from ._said import logger, prefixed

__all__ = ["CLAMP", "REFUSE", "Bounds"]

#: Out of range: the nearest bound is used and a warning names the source.
CLAMP: Final = "clamp"
#: Out of range: a ConfigurationError names the source.
REFUSE: Final = "refuse"


@dataclass(frozen=True)
class Bounds:
    """The range of a numeric option, and what each side does with a value beyond it.

    Attributes:
        low: the smallest value used.
        high: the largest value used.
        below: :data:`CLAMP` or :data:`REFUSE` for a value under ``low``.
        above: the same for a value over ``high`` (``inf`` included).
        unit: shown in the settings table and the messages (``"s"`` or ``""``).
    """

    low: float
    high: float
    below: str = CLAMP
    above: str = CLAMP
    unit: str = "s"

    def apply(self, value: float, source: str) -> float:
        """``value`` within the bounds (clamped with a warning, or refused)."""
        for beyond, bound, side, word in (
            (value < self.low, self.low, self.below, "under its minimum"),
            (value > self.high, self.high, self.above, "over its maximum"),
        ):
            if not beyond:
                continue
            if side == REFUSE:
                raise ConfigurationError(
                    f"{source} must be between {self.shown(self.low)} and "
                    f"{self.shown(self.high)}, got {value!r:.60}"
                )
            shown = self.shown(bound)
            said = f"{source}={value!r} is {word} {shown}: {shown} is used"
            logger.warning("%s", prefixed(said))
            return type(value)(bound)
        return value

    def shown(self, number: float) -> str:
        """A bound as the messages and the settings table show it."""
        text = f"{int(number):,}" if float(number).is_integer() else f"{number:g}"
        return f"{text} {self.unit}".strip()

    def table_text(self) -> str:
        """The settings table's column: the range, and what each side does."""
        if self.below == self.above:
            how = "clamped" if self.below == CLAMP else "refused"
            return f"{self.shown(self.low)} to {self.shown(self.high)}, beyond: {how}"
        low = "clamped" if self.below == CLAMP else "refused"
        high = "clamped" if self.above == CLAMP else "refused"
        return f"{self.shown(self.low)} to {self.shown(self.high)}, under: {low}, over: {high}"
