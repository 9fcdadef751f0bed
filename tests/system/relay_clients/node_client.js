// The OpenTelemetry Node SDK's logs, exported by OTLP/HTTP (JSON) to bucket-logging relay.
// usage: node node_client.js URL TOKEN COUNT  (URL ends in /v1/logs); prints one JSON line
// per record emitted: {"n": ..., "time_ms": ...}.
"use strict";
const { LoggerProvider, BatchLogRecordProcessor } = require("@opentelemetry/sdk-logs");
const { OTLPLogExporter } = require("@opentelemetry/exporter-logs-otlp-http");

async function main() {
  const [url, token, count] = process.argv.slice(2);
  const exporter = new OTLPLogExporter({ url, headers: { Authorization: `Bearer ${token}` } });
  const config = { maxExportBatchSize: 25, scheduledDelayMillis: 100 };
  // newer sdk-logs take ({exporter, ...config}), older (exporter, config)
  const processor =
    BatchLogRecordProcessor.length <= 1
      ? new BatchLogRecordProcessor({ exporter, ...config })
      : new BatchLogRecordProcessor(exporter, config);
  const provider = new LoggerProvider({ processors: [processor] });
  const logger = provider.getLogger("app.node");
  const base = Date.now() - 60000;
  for (let n = 0; n < Number(count); n++) {
    const timeMs = base + n * 7;
    logger.emit({
      body: "message sent",
      timestamp: timeMs,
      attributes: {
        bucket_event: "Sent message",
        user_id: n,
        company_id: "acme",
        bucket_attributes: { plan: "pro", seats: n },
      },
    });
    process.stdout.write(JSON.stringify({ n, time_ms: timeMs }) + "\n");
  }
  await provider.shutdown(); // exports what is left
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
