"""The metrics adapters: a sender's counts as Prometheus or OpenTelemetry metrics.

Each adapter is an :class:`~bucket_logging._sender.observe.Observer`: the senders of the
process report to it on their own threads (never a log call's), and it moves real
instruments: :mod:`.prometheus` (``prometheus_client``'s Counter, Gauge and Histogram,
right in its multiprocess mode too) and :mod:`.otel` (observable instruments on an
OpenTelemetry ``MeterProvider``). The public entry points are in
:mod:`bucket_logging.metrics`; the relay builds its own Prometheus adapter here.

Imports: the sender's observer interface, the process layer; ``prometheus_client`` and
``opentelemetry`` lazily, in the adapter that needs them. Nothing below imports this.
"""
