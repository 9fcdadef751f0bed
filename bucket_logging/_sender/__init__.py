"""Layer 4, the bulk sender: items in, HTTP requests out. It knows nothing of logging.

From the top down (the ``sender-layers`` contract in ``pyproject.toml``): the process's
shared senders (:mod:`.shared`), the :class:`~bucket_logging.BulkSender` facade
(:mod:`.sender`) with its ``before_send`` and start-up line (:mod:`.before_send`), the
engine's thread and loop (:mod:`.engine`, :mod:`.loop`) with what flushes and the close
wait for (:mod:`.waiters`) and the HTTP client's modules and TLS context
(:mod:`.http_stack`), the
spooled path (:mod:`.spooling`, :mod:`.settle`), delivery of one batch with retries and
bisection, answers read within bounds (:mod:`.delivery`, :mod:`.retry`,
:mod:`.answers`), the batch queue (:mod:`.queue`), the
immutable configuration (:mod:`.config`) and the ledger that counts every item
(:mod:`.ledger`).

May import: :mod:`bucket_logging._spool`, :mod:`bucket_logging._items`,
:mod:`bucket_logging._runtime`, :mod:`bucket_logging._exceptions`,
:mod:`bucket_logging._version`; never a front end, structlog or loguru.
"""
