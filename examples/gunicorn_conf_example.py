"""A gunicorn configuration module with a ``BucketHandler``: pre-fork servers.

    BUCKET_TRACKING_KEY=... gunicorn -c examples/gunicorn_conf_example.py myapp.wsgi

gunicorn applies ``logconfig_dict`` (with ``logging.config.dictConfig``) in the
master process, before it forks the workers. Nothing special is needed for
bucket_logging:

* after a fork, the sender is rebuilt in the child on its first use (its queue,
  thread and connections belong to one process): what the master queued before
  the fork is sent by the master only, what a worker logs is sent by that worker;
  nothing is sent twice. So ``post_fork`` has nothing to do for bucket_logging;
* a worker that exits normally delivers what it queued at interpreter exit (within
  ``shutdown_timeout``), and so does a worker ended by SIGTERM; ``worker_exit`` below
  flushes explicitly as well, which also covers sync workers that leave through
  ``os._exit``. gunicorn does not call ``worker_exit`` for ``UvicornWorker``; those
  workers deliver on their own, except with ``--preload``, where the app's lifespan
  shutdown must call ``await bucket_logging.aflush(5)`` (see docs/delivery.md,
  "When the process ends").

``python examples/gunicorn_conf_example.py`` (no gunicorn needed) simulates the
pre-fork model with ``os.fork()``: the master logs before the fork, the worker after
it, and each event arrives once (without ``BUCKET_TRACKING_URL`` it starts a local
tracking server and prints the calls).
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import warnings
from typing import Any

import bucket_logging

bind = "127.0.0.1:8000"
workers = 2

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(process)d] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
        "bucket": {
            "class": "bucket_logging.BucketHandler",  # key from $BUCKET_TRACKING_KEY
            "level": "INFO",
            "shutdown_timeout": 5.0,
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "bucket"]},
}


def post_fork(server: Any, worker: Any) -> None:
    """Called in each worker right after the fork.

    Nothing to do for bucket_logging: the sender notices the fork and starts afresh
    in this process on first use. Per-worker set-up of your own goes here.
    """


def worker_exit(server: Any, worker: Any) -> None:
    """Called in a worker just before it exits: deliver what it queued."""
    bucket_logging.flush(timeout=5)


# -- simulating gunicorn: ``python examples/gunicorn_conf_example.py`` -------------


def simulate_prefork() -> int:
    """Log in the master, fork a worker that logs; return the worker's exit code."""
    logging.config.dictConfig(logconfig_dict)  # in the master, like gunicorn
    log = logging.getLogger("app.deploy")
    # Queued in the master before the fork: sent by the master only.
    log.info("Release %s started", "v42", extra={"user_id": "ops", "bucket_event": "Deployed"})
    if not hasattr(os, "fork"):  # e.g. Windows
        print("os.fork() is not available here: no worker simulated")
        return 0
    sys.stdout.flush()  # or the worker would inherit (and repeat) buffered output
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that runs threads (the sender's);
        # gunicorn forks in the same situation. bucket_logging rebuilds its own state
        # in the child.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            post_fork(None, None)
            logging.getLogger("app.worker").info(
                "Worker %d booted",
                os.getpid(),
                extra={"user_id": "ops", "bucket_event": "Worker booted"},
            )
            worker_exit(None, None)
            code = 0
        finally:
            sys.stdout.flush()
            os._exit(code)  # like a gunicorn worker: the master's exit hooks are not run
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(f"worker exited with status {code}")
    return code


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    worker_status = simulate_prefork()
    show_delivery(local_server)
    sys.exit(worker_status)
