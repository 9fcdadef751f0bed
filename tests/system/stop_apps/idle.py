"""Sends a first event, idles until told (stdin), logs a last event and exits.

    python idle.py [--wait-for-sigterm]

With ``--wait-for-sigterm`` it then waits for SIGTERM instead of returning.

Meanwhile the test drops the sender's keep-alive connection on the server side, so the
last event needs a new connection, opened during interpreter exit.
"""

import sys
import time

from _tracking import track, tracked_logger

import bucket_logging

log = tracked_logger("stop_apps.idle")
track(log, "Started", 0)
print("first sent", bucket_logging.flush(timeout=10), flush=True)
sys.stdin.readline()  # idle
track(log, "Last", 1)
print("logged last", flush=True)
if "--wait-for-sigterm" in sys.argv:
    while True:
        time.sleep(1)
