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
  A first sender built on another thread asks the main thread to install it (a pending
  call). As PID 1, where the kernel ignores SIGTERM's default action, the handler
  delivers without closing the senders, stays in place and says once why.
* **uvicorn servers that imported the app inside their signal capture** (``--workers``,
  ``--reload``, gunicorn ``--preload`` with ``UvicornWorker``): they put back and re-raise
  the default SIGTERM, so a sender that starts there hooks the server's shutdown
  instead (see :mod:`bucket_logging._runtime.uvicorn_stop`).
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

from .. import _options
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
    return bool(_options.resolve("handle_sigterm", option))


def install(*, sigterm: bool) -> None:
    """Deliver at interpreter exit, and on SIGTERM where ``sigterm`` allows.

    Called whenever a sender is built; does its work once per process. The SIGTERM
    handler is installed only while SIGTERM has its default disposition, by the main
    thread (where Python allows it): from another thread, the main thread is asked to.
    """
    state = _process.state
    if not state.exit_hook_installed:
        state.exit_hook_installed = True
        atexit.register(_at_exit)
        _watch_celery()
    if not sigterm or state.sigterm_installed:
        return
    if threading.current_thread() is threading.main_thread():
        _install_sigterm_handler()
    elif state.sigterm_requested is None:
        _ask_the_main_thread()


def _install_sigterm_handler() -> None:
    """On the main thread: install the handler if SIGTERM's disposition is the default."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            _process.state.sigterm_installed = True
    except (ValueError, OSError, AttributeError):  # not the main interpreter, no SIGTERM
        pass


def _ask_the_main_thread() -> None:
    """A first sender built on another thread: Python lets only the main thread install
    a signal handler, so the main thread is asked to, with ``Py_AddPendingCall`` (CPython's
    public C API for exactly this: the call runs on the main thread between two bytecodes,
    where Python runs signal handlers). It runs as soon as the main thread runs Python
    code; one that only waits in C (a ``join()`` without end) runs it when it wakes."""
    state = _process.state
    try:
        import ctypes  # noqa: PLC0415 - rarely needed (and absent from some builds)

        api = ctypes.pythonapi
        if sys.implementation.name != "cpython" or (
            ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyInterpreterState_Get", api))()
            != ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyInterpreterState_Main", api))()
        ):
            raise RuntimeError("not CPython's main interpreter")
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
        add_pending_call = ctypes.PYFUNCTYPE(ctypes.c_int, callback_type, ctypes.c_void_p)(
            ("Py_AddPendingCall", api)
        )
        callback = callback_type(_install_on_the_main_thread)
        state.sigterm_requested = callback  # kept for good: ctypes calls it later
        if add_pending_call(callback, None) != 0:
            raise RuntimeError("the interpreter's pending calls are full")
    except Exception as exc:
        _diagnostics.warn_once(
            "sigterm-thread",
            "bucket_logging: no SIGTERM handler: the first sender was built on thread %r, "
            "and the main thread cannot be asked to install one (%s); a SIGTERM ends the "
            "process with what is queued. Build the first handler at import time, or call "
            "bucket_logging.flush() from your own SIGTERM handling",
            threading.current_thread().name,
            exc,
        )


def _install_on_the_main_thread(_: object) -> int:
    try:
        if threading.current_thread() is threading.main_thread():
            _install_sigterm_handler()
    except BaseException:  # pragma: no cover - a pending call must not raise
        pass
    return 0


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


def shutdown_all(limit: float | None = None) -> None:
    """Deliver what every live sender holds, within each one's deadline, and close it.

    The exit hook. Every sender hurries at once, then each is closed in turn. ``limit``
    shortens every sender's ``shutdown_timeout`` (``0``: close at once, counting and
    reporting what is still queued).
    """
    senders = [s for s in list(_process.state.live) if not s.closed]
    if not senders:
        _diagnostics.report_suppressed()
        return

    def budget(sender: _process.LiveSender) -> float:
        return sender.shutdown_timeout if limit is None else min(limit, sender.shutdown_timeout)

    deadline = time.monotonic() + max(budget(s) for s in senders)
    for sender in senders:
        sender.start_closing(time.monotonic() + budget(sender))
    for sender in senders:
        remaining = max(0.0, min(budget(sender), deadline - time.monotonic()))
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
    if os.getpid() == 1:  # SIGTERM's default action cannot end PID 1
        _deliver_as_init()
        return
    if not state.in_sigterm:  # a second SIGTERM during the delivery ends it at once
        state.in_sigterm = True
        try:
            _at_exit()
        except BaseException as exc:  # pragma: no cover - the process ends regardless
            report("exit", "bucket_logging: error while delivering on SIGTERM: %r", exc)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
    # Still here: the default action did not end the process (SIGTERM blocked in this
    # thread, or a PID 1 that getpid() does not show). What is logged now is dropped.
    _diagnostics.warn_once(
        "alive",
        "bucket_logging: SIGTERM did not end this process after the delivery; the senders "
        "are closed, what is logged from now on is dropped",
    )


#: Why a SIGTERM did not end PID 1, and the fix (said once).
PID1_MESSAGE: Final = (
    "bucket_logging: SIGTERM does not end this process: it runs as PID 1 (a container "
    "started without an init), and the kernel ignores a signal's default action for PID 1. "
    "What was logged is delivered and the senders stay open for what the process logs "
    "next. To stop on SIGTERM, start the container with an init (`docker run --init`, "
    "Compose `init: true`, or tini as its entrypoint), or handle SIGTERM in the app"
)


def _deliver_as_init() -> None:
    """PID 1: deliver what is queued (back-offs cut short) without closing the senders,
    and say once why the process goes on. The handler stays in place: each later
    SIGTERM delivers again, and the process ends its own way (its exit delivers the rest).
    """
    _diagnostics.warn_once("pid1", PID1_MESSAGE)
    try:
        live = [s for s in list(_process.state.live) if not s.closed]
        if live:
            _process.flush_all(max(s.shutdown_timeout for s in live))
    except BaseException as exc:  # pragma: no cover - the application goes on
        report("exit", "bucket_logging: error while delivering on SIGTERM: %r", exc)


def _after_fork_in_child() -> None:
    """A forked child inherits the handler and the ``atexit`` hook, not a delivery."""
    _process.state.in_sigterm = False


_process.at_fork(after_in_child=_after_fork_in_child)
