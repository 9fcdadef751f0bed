"""Layer 6, the front ends: thin adapters from a log system's records to the tracking path.

Holds :class:`~bucket_logging.BucketHandler` (stdlib ``logging``, :mod:`.handler`),
:class:`~bucket_logging.BucketProcessor` (structlog, :mod:`.processor`),
:class:`~bucket_logging.LoguruSink` (:mod:`.loguru`) and the JSON-line reader shared by
``ship`` and ``relay`` (:mod:`.jsonlines`). Each turns a record into a mapping of fields
and hands it to a :class:`~bucket_logging._tracking.tracker.Tracker`; none has tag logic
of its own.

May import: :mod:`bucket_logging._tracking` and every layer below it; not the server or
the command line.
"""
