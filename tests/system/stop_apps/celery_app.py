"""A Celery app on kombu's ``filesystem://`` transport (no broker service needed).

The task ``hit(n)`` logs the tagged event "Task ran" number n. The queue lives in
``$STOP_APP_QUEUE_DIR``. ``python celery_app.py N`` sends the tasks 0..N-1.
"""

from __future__ import annotations

import os
import sys

from _tracking import track, tracked_logger
from celery import Celery

QUEUE = os.environ["STOP_APP_QUEUE_DIR"]

app = Celery("stop_apps", broker="filesystem://")
app.conf.update(
    broker_transport_options={
        "data_folder_in": QUEUE,
        "data_folder_out": QUEUE,
        "control_folder": os.path.join(QUEUE, "control"),
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
log = tracked_logger("stop_apps.tasks")


@app.task(name="stop_apps.hit")
def hit(n: int) -> None:
    track(log, "Task ran", n)


if __name__ == "__main__":
    for i in range(int(sys.argv[1])):
        hit.delay(i)
