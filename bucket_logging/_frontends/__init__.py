"""Layer 6, the front ends: thin adapters from a log system's records to the tracking path.

Holds :class:`~bucket_logging.BucketHandler` (stdlib ``logging``, :mod:`.handler`),
:class:`~bucket_logging.BucketProcessor` (structlog, :mod:`.processor`),
:class:`~bucket_logging.LoguruSink` (:mod:`.loguru`), the JSON-line reader shared by
``ship`` and ``relay`` (:mod:`.jsonlines`), OpenTelemetry log records read as JSON lines
(:mod:`.otlp`, :mod:`.otlp_decode`; the processor is the public
:mod:`bucket_logging.otel`), :func:`~bucket_logging.track` for code paths without a log
statement (:mod:`.track`) and the ASGI and Django middlewares that bind a request's ids
(:mod:`.middleware`). Each turns a record into a mapping of fields and hands it to a
:class:`~bucket_logging._tracking.tracker.Tracker`; none has tag logic of its own.

May import: :mod:`bucket_logging._tracking` and every layer below it; not the server or
the command line.
"""
