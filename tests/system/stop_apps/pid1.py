"""A program that may run as PID 1 (a container's ``CMD ["python", "pid1.py"]`` without an
init): logs tagged events "Before" 0..N-1, prints ``logged before``, then for each line
read from stdin logs the next N events "After" and prints ``logged after K``; ends by
returning at the end of stdin. It installs no SIGTERM handler of its own.

    python pid1.py N
"""

from __future__ import annotations

import os
import sys

from _tracking import track, tracked_logger

count = int(sys.argv[1])
log = tracked_logger("stop_apps.pid1")
print(f"pid={os.getpid()}", flush=True)
for n in range(count):
    track(log, "Before", n)
print("logged before", flush=True)
after = 0
for _line in sys.stdin:
    for _ in range(count):
        track(log, "After", after)
        after += 1
    print(f"logged after {after}", flush=True)
