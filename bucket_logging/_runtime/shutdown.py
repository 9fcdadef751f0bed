"""How a process ends: every way it stops delivers what was logged, within a deadline.

The senders deliver their queues when the process ends, whichever way it ends:

* **Interpreter exit** (a script returns, ``sys.exit``, an unhandled exception, Ctrl-C):
  an ``atexit`` hook.
* **SIGTERM with the default disposition**, which is what ``docker stop``, Kubernetes,
  systemd and supervisors send: the default action kills the process without running
  ``atexit``. When the first sender is built on the main thread and SIGTERM's disposition
  is still the default, a handler is installed that delivers what is queued and then
  ends the process *by SIGTERM* as before (the default disposition is put back and the
  signal raised again: same exit status, no traceback). An application's or a server's
  own handler is never replaced or wrapped: servers that save the handler they found and
  re-raise SIGTERM after their graceful shutdown (uvicorn, gunicorn's ``UvicornWorker``)
  hand the signal on to this one. A second SIGTERM during the delivery ends the process
  at once. Switch it off with ``handle_sigterm=False`` or ``BUCKET_HANDLE_SIGTERM=0``.
* **Forked pool children** (``multiprocessing`` with fork or forkserver, Celery's prefork
  pool through billiard) leave with ``os._exit``, skipping ``atexit``, after running
  their pool's finalizers: a sender that starts in such a child registers one there.

Every path calls :func:`shutdown_all`, which closes every live
sender within its ``shutdown_timeout``; what this module installed is recorded on
:data:`bucket_logging._runtime.state.state`.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import Any, Final

from . import diagnostics as _diagnostics
from . import state as _process
from .diagnostics import report

__all__ = [
    "ENV_HANDLE_SIGTERM",
    "install",
    "shutdown_all",
    "sigterm_enabled",
    "start_thread",
    "watch_pool_exit",
]

#: Set to ``0``, ``false``, ``off`` or ``no`` to install no SIGTERM handler.
ENV_HANDLE_SIGTERM: Final = "BUCKET_HANDLE_SIGTERM"

_FALSE: Final = frozenset({"0", "false", "off", "no"})


#: A finalizer of ours runs before the pools' own (higher runs first).
_FINALIZER_PRIORITY: Final = 10


#: Signals that are delivered to the process, not to a thread that caused them. The
#: library's threads block them, so that the kernel hands them to a thread that runs
#: Python's handlers (the main thread): one of ours taking SIGTERM left the handler
#: waiting for a main thread blocked on a lock, and the process neither delivered
#: nor ended.
_PROCESS_SIGNALS: Final = (
    frozenset(signal.valid_signals())
    - {
        getattr(signal, name)
        for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS")
        if hasattr(signal, name)
    }
    if hasattr(signal, "pthread_sigmask")
    else frozenset()
)


def start_thread(thread: threading.Thread) -> None:
    """Start one of the library's threads with the process's signals blocked in it.

    The new thread inherits the mask, so it never takes SIGTERM, SIGINT, SIGCHLD...
    from the application's main thread. Raises what :meth:`threading.Thread.start`
    raises (``RuntimeError`` at interpreter shutdown).
    """
    if not _PROCESS_SIGNALS:  # pragma: no cover - Windows
        thread.start()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _PROCESS_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def sigterm_enabled(option: object = True) -> bool:
    """Whether a sender built with ``handle_sigterm=option`` may install the handler.

    False when the option is false (``False``, or a string such as ``"false"``/``"0"``
    from an INI file) or when ``BUCKET_HANDLE_SIGTERM`` switches it off.
    """
    if isinstance(option, str):
        option = option.strip().lower() not in _FALSE
    if not option:
        return False
    return os.environ.get(ENV_HANDLE_SIGTERM, "").strip().lower() not in _FALSE


def install(*, sigterm: bool) -> None:
    """Deliver at interpreter exit, and on SIGTERM where ``sigterm`` allows.

    Called whenever a sender is built; does its work once per process. The SIGTERM
    handler is installed only from the main thread (where Python allows it) and only
    while SIGTERM has its default disposition.
    """
    state = _process.state
    if not state.exit_hook_installed:
        state.exit_hook_installed = True
        atexit.register(_at_exit)
        _watch_celery()
    if (
        sigterm
        and not state.sigterm_installed
        and threading.current_thread() is threading.main_thread()
    ):
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                state.sigterm_installed = True
        except (ValueError, OSError, AttributeError):  # not the main interpreter, no SIGTERM
            pass


def watch_pool_exit() -> None:
    """Deliver at the exit of a forked pool child (called when a sender starts).

    ``multiprocessing`` and billiard children end with ``os._exit`` after running their
    finalizers, never ``atexit``. Registered once per process, after the pool cleared the
    finalizers its parent had.
    """
    state = _process.state
    pid = os.getpid()
    if state.pool_pid == pid:
        return
    state.pool_pid = pid
    util: Any = sys.modules.get("multiprocessing.util")  # (billiard shares its registry)
    if util is not None:
        try:
            util.Finalize(None, _at_exit, exitpriority=_FINALIZER_PRIORITY)
            # A child clears the finalizers it inherited, after a forkserver child has
            # imported the main module (where our sender may start): register again
            # after that clearing, in every child.
            util.register_after_fork(state, _watch_again)
        except Exception as exc:  # pragma: no cover - an unknown version
            report("pool-exit", "bucket_logging: cannot watch the pool's exit (%r)", exc)
    _watch_celery()


def _watch_again(state: _process.State) -> None:
    state.pool_pid = 0
    watch_pool_exit()


def _watch_celery() -> None:
    """Celery's prefork children leave with ``os._exit`` even before their finalizers,
    right after sending ``worker_process_shutdown``: deliver on that signal."""
    signals: Any = sys.modules.get("celery.signals")
    if signals is None:
        return
    try:
        signals.worker_process_shutdown.connect(
            _on_celery_process_shutdown, weak=False, dispatch_uid="bucket_logging"
        )
    except Exception as exc:  # pragma: no cover - an unknown version of Celery
        report("pool-exit", "bucket_logging: cannot watch Celery's pool exit (%r)", exc)


def _on_celery_process_shutdown(**_: Any) -> None:
    _at_exit()


def shutdown_all() -> None:
    """Deliver what every live sender holds, within each one's deadline, and close it.

    The exit hook. Every sender hurries at once, then each is closed in turn.
    """
    senders = [s for s in list(_process.state.live) if not s.closed]
    if not senders:
        _diagnostics.report_suppressed()
        return
    deadline = time.monotonic() + max(s.shutdown_timeout for s in senders)
    for sender in senders:
        sender.start_closing(time.monotonic() + sender.shutdown_timeout)
    for sender in senders:
        remaining = max(0.0, min(sender.shutdown_timeout, deadline - time.monotonic()))
        try:
            sender.close(remaining)
        except Exception as exc:  # pragma: no cover - exit must go on
            report("exit", "bucket_logging: error at exit: %r", exc)
    _diagnostics.report_suppressed()


def _at_exit() -> None:
    shutdown_all()


def _on_sigterm(signum: int, frame: object) -> None:
    """Deliver what is queued, then let SIGTERM end the process as it would have."""
    state = _process.state
    if not state.in_sigterm:  # a second SIGTERM during the delivery ends it at once
        state.in_sigterm = True
        try:
            _at_exit()
        except BaseException as exc:  # pragma: no cover - the process ends regardless
            report("exit", "bucket_logging: error while delivering on SIGTERM: %r", exc)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def _after_fork_in_child() -> None:
    """A forked child inherits the handler and the ``atexit`` hook, not a delivery."""
    _process.state.in_sigterm = False


_process.at_fork(after_in_child=_after_fork_in_child)
