"""Starts the tracking, then says for each of the library's threads whether it blocks
SIGTERM (Linux: ``SigBlk`` in ``/proc/self/task/<id>/status``).

A process-directed SIGTERM goes to any one thread that does not block it. A Python
handler runs only on the main thread, when it next runs Python code: a SIGTERM that
lands on another thread while the main thread waits in an uninterruptible wait (a lock,
a semaphore, a read) stays unhandled for as long as the wait lasts; with the default
disposition the process would have died.
"""

import signal
import threading

from _tracking import track, tracked_logger

track(tracked_logger("stop_apps.threads"), "Started", 0)
bit = 1 << (signal.SIGTERM - 1)
for thread in threading.enumerate():
    if thread.name.startswith("bucket_logging"):
        with open(f"/proc/self/task/{thread.native_id}/status") as status:
            [mask] = [line.split()[1] for line in status if line.startswith("SigBlk:")]
        print(f"{thread.name} blocks SIGTERM: {bool(int(mask, 16) & bit)}", flush=True)
