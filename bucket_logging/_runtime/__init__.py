"""Layer 1, process life: what the whole process shares, and how it ends.

Holds the one object of process-wide mutable state (:mod:`.state`: shared senders, live
senders, the fork hook, the exit flags), the library's own voice on the ``bucket_logging``
logger (:mod:`.diagnostics`), the exit paths (:mod:`.shutdown`: ``atexit``, SIGTERM, pool
children, PID 1; :mod:`.uvicorn_stop`: a uvicorn server's own shutdown) and the
library's single-thread worker (:mod:`.worker`).

May import: :mod:`bucket_logging._options` (the options table),
:mod:`bucket_logging._exceptions` and the standard library. Everything else may import it.
"""
