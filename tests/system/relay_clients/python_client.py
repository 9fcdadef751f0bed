"""The OpenTelemetry Python SDK's logs (stdlib logging through its LoggingHandler),
exported by OTLP/HTTP (protobuf) to bucket-logging relay.

usage: python python_client.py URL TOKEN COMPRESSION COUNT  (URL ends in /v1/logs;
COMPRESSION none or gzip); prints one JSON line per record: {"n": ..., "created": ...}.
"""

import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

url, token, compression, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
provider = LoggerProvider()
exporter = OTLPLogExporter(
    endpoint=url, headers={"Authorization": f"Bearer {token}"}, compression=Compression(compression)
)
provider.add_log_record_processor(
    BatchLogRecordProcessor(exporter, max_export_batch_size=25, schedule_delay_millis=100)
)
log = logging.getLogger("app.python")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))


class Created(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        print(json.dumps({"n": record.n, "created": record.created}), flush=True)  # type: ignore[attr-defined]
        return True


log.addFilter(Created())
for n in range(count):
    log.info(
        "message sent",
        extra={
            "n": n,
            "bucket_event": "Sent message",
            "user_id": n,
            "company_id": "acme",
            # SDKs whose attributes are flat: dotted keys
            "bucket_attributes.plan": "pro",
            "bucket_attributes.seats": n,
        },
    )
provider.shutdown()  # exports what is left
