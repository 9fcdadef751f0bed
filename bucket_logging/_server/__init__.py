"""Layer 6, the local tracking server: the API on 127.0.0.1 for tests, demos and development.

Holds :class:`~bucket_logging.TrackingServer` (:mod:`.server`), its records, outcomes and
fault switches (:mod:`.records`), its HTTP layer (:mod:`.http`, imported only when
serving), its live page (:mod:`.page` and ``static/``) and the one-line format of a call
(:mod:`.format`). It validates with the client's own rules
(:mod:`bucket_logging._items.validation`).

May import: :mod:`bucket_logging._items`, :mod:`bucket_logging._runtime`,
:mod:`bucket_logging._exceptions`; independent of the front ends.
"""
