"""Layer 2, tracking items: the API's rules, the JSON encoding, and :class:`~bucket_logging.Item`.

Holds validation (:mod:`.validation`, shared with the local tracking server), encoding
(:mod:`.encoding`: any logged value to JSON bytes, never raising) and the items built from
both (:mod:`.item`: validated and encoded once).

May import: :mod:`bucket_logging._runtime`, :mod:`bucket_logging._exceptions`.
"""
