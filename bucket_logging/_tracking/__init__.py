"""Layer 5, the one tracking path: a log call's fields to tracking items.

Holds the tag vocabulary (:mod:`.tags`), zero-code rules (:mod:`.rules`), the wire dicts
built from tags (:mod:`.wire`), the claim that keeps an event from being tracked twice
(:mod:`.claims`), structlog's context variables read cheaply (:mod:`.context`), the
capture lists of :mod:`bucket_logging.testing` (:mod:`.capture`), the
:class:`~bucket_logging._tracking.tracker.Tracker` every front end hands its fields to
(:mod:`.tracker`), and what front ends share (:mod:`.frontend`, :mod:`.senders`,
:mod:`.configured`).

May import: :mod:`bucket_logging._sender` (through its small public interface),
:mod:`bucket_logging._items`, :mod:`bucket_logging._runtime`,
:mod:`bucket_logging._exceptions`.
"""
