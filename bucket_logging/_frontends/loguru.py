"""``LoguruSink``: the loguru front end.

Add the sink to loguru's logger and tag log calls the way loguru carries
structured data, in the record's ``extra`` dict::

    from loguru import logger
    from bucket_logging import LoguruSink

    logger.add(LoguruSink("trCqx4DGo1lk3Lcct5NHLjWy"), level="INFO")

    logger.info("Message sent", bucket_event="Sent message", user_id=42)
    logger.bind(user_id=42).info("Signed in", bucket_user={"name": "Ada"})
    with logger.contextualize(user_id=42, company_id="acme"):
        logger.info("Report viewed", bucket_event="Viewed report")

``logger.bind(...)``, ``logger.contextualize(...)`` and the keyword arguments of a
log call all land in ``record["extra"]``: the sink reads the ``bucket_*`` tags and
the ids there, and ids bound with ``structlog.contextvars.bind_contextvars`` as
the other front ends do. The item's timestamp is the record's ``time``; a rule's
``logger`` pattern is matched against the record's ``name`` (the module's
``__name__``).

Rules and the message template: loguru formats ``message.format(*args,
**kwargs)`` before any sink sees the record and keeps no copy of the template, so
rules match the message as logged. For a call without format arguments (the
usual style with loguru, where data goes to keyword arguments) that *is* the
template; for ``logger.info("User {} signed in", 42)`` use a glob
(``"User * signed in"``).

``enqueue=True`` works: the sink then runs on loguru's worker thread, so ids bound
with structlog's contextvars on the logging thread are not visible there (put them
in ``extra`` instead). ``logger.complete()`` hands every queued record to the
sink; :meth:`LoguruSink.flush` then waits for delivery. At exit the records still
in loguru's queues are handed over before the sender's exit hook delivers what is
queued, as for the stdlib handler. The sink never raises into loguru.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from typing import Any

from .._runtime import state as _process
from .._runtime.diagnostics import is_internal
from .._tracking.configured import KeywordFrontEnd

__all__ = ["LoguruSink"]


def _complete_loguru() -> None:
    """At exit: hand the records in loguru's ``enqueue=True`` queues to the sinks.

    Registered after the sender's own exit hook, so it runs before it (``atexit``
    runs hooks last-in first-out): loguru's own hook (``logger.remove``) comes too
    late, after the sender was closed.
    """
    loguru = sys.modules.get("loguru")
    if loguru is None:
        return
    with contextlib.suppress(Exception):  # exit goes on
        loguru.logger.complete()


def _install_exit_hook() -> None:
    state = _process.state
    with state.loguru_hook_lock:
        if not state.loguru_hook_installed:
            state.loguru_hook_installed = True
            atexit.register(_complete_loguru)


class LoguruSink(KeywordFrontEnd):
    """A loguru sink that turns tagged records into Bucket tracking calls.

    Use it with ``logger.add(LoguruSink(...))``; any of loguru's ``add`` options
    (``level``, ``filter``, ``enqueue`` ...) apply as usual. Takes the options of
    :class:`~bucket_logging.BucketProcessor`: ``tracking_key`` (default: env
    ``BUCKET_TRACKING_KEY``), ``base_url``, ``rules`` (``match`` against the record's
    message, ``logger`` against its ``name``), ``user_id_field`` and
    ``company_id_field`` (keys of ``extra``, and of structlog's contextvars),
    ``sender``, and the sender's options.

    Raises:
        ConfigurationError: when a rule or an option is invalid, or no tracking key
            is given or set in the environment (unless ``offline=True``).
    """

    __slots__ = ()

    def _configured(self) -> None:
        _install_exit_hook()  # after the sender's own hook: runs before it at exit

    def __call__(self, message: Any) -> None:
        """Track the record of a loguru ``message`` if it asks for it; never raises."""
        try:
            record = message.record
            fields = record["extra"]
            template = record["message"]
            plan: object = self._first_step(fields, template)
            if plan is False:
                return
            name = record["name"]
            if type(name) is not str:
                name = ""
            if plan is not None:
                plan = self._wants(fields, name, template)
                if plan is None:
                    return
            if is_internal(name, record["thread"].id):
                return
            created = record["time"].timestamp()
        except Exception:  # an odd record must not break logging
            return
        if plan is None:
            self._track_event(fields, created, name, template)
        else:
            self._track(fields, created, name, template, plan)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered, or ``timeout`` (default: the
        sender's ``shutdown_timeout``); True when it was. Never raises.

        Records still in loguru's ``enqueue=True`` queue are not the sink's yet: call
        ``logger.complete()`` first.
        """
        return super().flush(timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._rule_count()} rule(s)>"
