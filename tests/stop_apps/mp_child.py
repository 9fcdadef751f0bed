"""A parent that forks a ``multiprocessing`` child; the child logs 3 events and ends.

    python mp_child.py return|os_exit|flush_os_exit

``return``: the child's target returns (multiprocessing then ends it with ``os._exit``
after its finalizers); ``os_exit``: the target calls ``os._exit(0)`` itself;
``flush_os_exit``: it calls ``bucket_logging.flush()`` first. The parent logs one event
before the fork and one after the child ended, then returns.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from _tracking import track, tracked_logger

import bucket_logging

log = tracked_logger("stop_apps.mp")


def child(mode: str) -> None:
    for n in range(3):
        track(log, "Child work", n)
    if mode == "flush_os_exit":
        bucket_logging.flush(timeout=5)
    if mode != "return":
        os._exit(0)


if __name__ == "__main__":
    track(log, "Parent before", 0)
    proc = multiprocessing.get_context("fork").Process(target=child, args=(sys.argv[1],))
    proc.start()
    proc.join()
    print(f"child exit {proc.exitcode}", flush=True)
    track(log, "Parent after", 1)
