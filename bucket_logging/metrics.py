"""The senders' counters as Prometheus or OpenTelemetry metrics, for an application.

For an application that already serves Prometheus metrics (``pip install
'bucket-logging[metrics]'``)::

    import bucket_logging.metrics

    bucket_logging.metrics.use_prometheus()  # on prometheus_client's default REGISTRY

and for one on OpenTelemetry metrics (``pip install 'bucket-logging[otel]'``)::

    from opentelemetry.sdk.metrics import MeterProvider

    bucket_logging.metrics.use_opentelemetry(MeterProvider(metric_readers=[...]))

Every sender of the process then reports: items queued, sent, dropped for good by
reason (``rejected`` for a 400 from the API, ``queue_full``, ``retries_exhausted``,
``shutdown``, ``spool_full``, ``before_send``...), tracking calls refused by reason,
bulk requests, failed and retried attempts, the queue's size and capacity (items and
bytes), the spool's bytes, items and oldest age, how long the API has been failing,
the bulk requests' durations and sizes, and the version (``bucket_logging_build_info``).
The names are listed on the docs page *Operating it* (Prometheus: the prefix
``bucket_logging_``, base units, counters ending in ``_total``).

The log call's cost does not change: it still only counts in the sender's ledger; the
metrics are moved on the sender's own thread (after each batch, and at least once per
``flush_interval``), so a scrape may lag by that much.

Under gunicorn (or any pre-fork server) set ``PROMETHEUS_MULTIPROC_DIR`` as
prometheus_client's multiprocess mode asks (an empty directory, before the workers
start): the metrics are real Counter, Gauge and Histogram objects, so one scrape through
``MultiProcessCollector`` shows the sum over the workers (queue gauges: summed over the
live workers; the spool's: the file's, which the workers share). Call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` from gunicorn's
``child_exit`` hook, as prometheus_client documents.

``import bucket_logging`` imports neither this module nor its libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sender.observe import observers as _observers

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

__all__ = ["use_opentelemetry", "use_prometheus"]


def use_prometheus(registry: CollectorRegistry | None = None) -> None:
    """Report every sender's counters as ``prometheus_client`` metrics.

    Idempotent: the metrics are made once per registry and the process reports to them
    once.

    Args:
        registry: where the metrics are registered (prometheus_client's default
            ``REGISTRY`` when None: the one its multiprocess mode writes from).
    """
    from ._metrics.prometheus import observer_for  # noqa: PLC0415 - the extra, when asked

    observer = observer_for(registry, "bucket_logging")
    if observer not in _observers:
        _observers.append(observer)


def use_opentelemetry(meter_provider: MeterProvider | None = None) -> None:
    """Report every sender's counters as OpenTelemetry metrics of the meter ``bucket_logging``.

    Observable counters and gauges (collected by the provider's readers) and two
    histograms (``bucket_logging.bulk_request.duration``, ``.items``). Idempotent per
    provider.

    Args:
        meter_provider: the provider (the global one, ``get_meter_provider()``, when None).
    """
    from opentelemetry.metrics import get_meter_provider  # noqa: PLC0415 - the extra

    from ._metrics.otel import OtelObserver  # noqa: PLC0415

    provider = get_meter_provider() if meter_provider is None else meter_provider
    for observer in _observers:
        if isinstance(observer, OtelObserver) and observer.provider is provider:
            return
    _observers.append(OtelObserver(provider))
