"""A script that logs three tagged events and returns (nothing flushes explicitly)."""

from _tracking import track, tracked_logger

log = tracked_logger("stop_apps.script")
for n in range(3):
    track(log, "Ran script", n)
