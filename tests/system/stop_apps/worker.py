"""A worker loop: logs N tagged events, then waits for work until it is stopped.

    python worker.py N [--own-handler before|after|ignore|chain] [--shutdown-timeout S]
                       [--processor] [--no-sigterm-kw] [--configure-in-thread]
                       [--busy]

Prints ``sigterm=<disposition>`` once the tracking is configured (SIG_DFL, or the name of
the callable in place), then ``logged N``. ``--own-handler`` installs an application's
SIGTERM handler before or after the tracking is configured: it logs a final event and
ends the process with ``sys.exit(0)``; ``ignore`` sets SIGTERM to ``SIG_IGN`` first;
``chain`` installs, after the tracking, a handler that logs a final event and then calls
the handler it replaced (as libraries that chain signal handlers do).
``--configure-in-thread`` creates the handler (so the sender) in another thread.
``--busy`` goes on logging numbered events, without a pause, until it is stopped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType

from _tracking import track, tracked_logger

args = argparse.ArgumentParser()
args.add_argument("events", type=int)
args.add_argument("--own-handler", choices=["before", "after", "ignore", "chain"])
args.add_argument("--shutdown-timeout", type=float, default=5.0)
args.add_argument("--processor", action="store_true", help="a BucketProcessor as well")
args.add_argument("--no-sigterm-kw", action="store_true", help="handle_sigterm=False")
args.add_argument("--configure-in-thread", action="store_true")
args.add_argument("--busy", action="store_true")
opts = args.parse_args()

log = logging.getLogger("stop_apps.worker")


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The application's own graceful stop: log a last event, then leave with status 0."""
    print("app handler ran", flush=True)
    track(log, "Stopped worker", -1)
    sys.exit(0)


if opts.own_handler == "before":
    signal.signal(signal.SIGTERM, on_sigterm)
elif opts.own_handler == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
options: dict[str, object] = {"shutdown_timeout": opts.shutdown_timeout}
if opts.no_sigterm_kw:
    options["handle_sigterm"] = False
if opts.configure_in_thread:
    configuring = threading.Thread(target=tracked_logger, args=(log.name,), kwargs=options)
    configuring.start()
    configuring.join()
else:
    tracked_logger(log.name, **options)
if opts.processor:
    from bucket_logging import BucketProcessor

    BucketProcessor(**options)  # type: ignore[arg-type]
if opts.own_handler == "after":
    signal.signal(signal.SIGTERM, on_sigterm)
elif opts.own_handler == "chain":
    replaced = signal.getsignal(signal.SIGTERM)

    def chained(signum: int, frame: FrameType | None) -> None:
        print("app handler ran", flush=True)
        track(log, "Stopped worker", -1)
        if callable(replaced):
            replaced(signum, frame)
        else:  # the default: die by the signal
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, chained)

disposition = signal.getsignal(signal.SIGTERM)
if isinstance(disposition, signal.Handlers):
    print(f"sigterm={disposition.name}", flush=True)
else:
    print(f"sigterm={getattr(disposition, '__qualname__', disposition)}", flush=True)
for n in range(opts.events):
    track(log, "Did work", n)
print(f"logged {opts.events}", flush=True)
n = opts.events
while opts.busy:  # a signal lands in the middle of some log call
    track(log, "Did work", n)
    n += 1
while True:  # waiting for more work
    time.sleep(1)
