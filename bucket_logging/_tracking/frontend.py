"""What both front ends share: their :class:`~bucket_logging._tracking.tracker.Tracker` and its
bound steps (:class:`FrontEnd`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .rules import Rule
from .senders import Sender, resolve_sender
from .tracker import Tracker

__all__ = ["FrontEnd"]


class FrontEnd:
    """What both front ends share: their :class:`Tracker` and its bound steps.

    :class:`~bucket_logging.BucketHandler` and :class:`~bucket_logging.BucketProcessor`
    call :meth:`_set_up` from their constructors; everything the hot path needs is
    looked up once there. ``tracking_plan=`` among the keyword options of every front
    end is the tracking path's (the plan every call is checked against), not the sender's.
    """

    __slots__ = ("_rule_cache", "_track", "_track_event", "_tracker", "_wants")

    _tracker: Tracker
    _rule_cache: dict[str, tuple[Rule, ...]] | None
    _wants: Any
    _track: Any
    _track_event: Any

    def _set_up(
        self,
        sender: Any,
        tracking_key: str | None,
        base_url: str | None,
        sender_options: Mapping[str, Any],
        *,
        rules: object,
        user_id_field: str,
        company_id_field: str,
    ) -> None:
        options = dict(sender_options)
        plan = options.pop("tracking_plan", None)  # the tracking path's, not the sender's
        tracker = Tracker(
            resolve_sender(sender, tracking_key, base_url, options),
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
            tracking_plan=plan,
        )
        self._tracker = tracker
        compiled = tracker.rules
        self._rule_cache = None if compiled is None else compiled.template_cache
        self._wants = tracker.wants
        self._track = tracker.track
        self._track_event = tracker.track_event

    @property
    def tracker(self) -> Tracker:
        """The tracker shared by this front end's calls."""
        return self._tracker

    @property
    def sender(self) -> Sender:
        """The sender this front end queues on."""
        return self._tracker.sender

    def _rule_count(self) -> int:
        rules = self._tracker.rules
        return len(rules) if rules is not None else 0
