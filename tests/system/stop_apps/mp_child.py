"""A parent that starts a ``multiprocessing`` child; the child logs 3 events and ends.

    python mp_child.py return|os_exit|flush_os_exit|pool [fork|forkserver|spawn]

``return``: the child's target returns (multiprocessing then ends it with ``os._exit``
after its finalizers); ``os_exit``: the target calls ``os._exit(0)`` itself;
``flush_os_exit``: it calls ``bucket_logging.flush()`` first; ``pool``: a ``Pool(2)``
logs the 3 events in its workers, then is closed and joined (its workers return).
The parent logs one event before the child starts and one after it ended, then
returns. The start method is ``fork`` unless named.
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


def pool_task(n: int) -> int:
    track(log, "Child work", n)
    return os.getpid()


if __name__ == "__main__":
    track(log, "Parent before", 0)
    mode = sys.argv[1]
    context = multiprocessing.get_context(sys.argv[2] if len(sys.argv) > 2 else "fork")
    if mode == "pool":
        pool = context.Pool(2)
        pool.map(pool_task, range(3))
        pool.close()
        pool.join()
        print("child exit 0", flush=True)
    else:
        proc = context.Process(target=child, args=(mode,))
        proc.start()
        proc.join()
        print(f"child exit {proc.exitcode}", flush=True)
    track(log, "Parent after", 1)
