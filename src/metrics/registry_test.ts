import assert from "node:assert/strict";
import { BrokerMetrics, METRIC_NAMES } from "./registry.ts";

Deno.test("BrokerMetrics.scrape() exports the tallied requests, records and histograms", async () => {
  const m = new BrokerMetrics();
  m.observer.request("PRODUCE", "OK");
  m.observer.request("PRODUCE", "OK");
  m.observer.request("FETCH", "UNKNOWN_TOPIC");
  m.observer.produced("t1", 10, 1000, 0.0005);
  m.observer.produced("t1", 5, 400, 3);
  m.observer.delivered("t1", 7, 600);
  m.observer.synced(0.002, 4);
  const text = await m.scrape();
  const line = (s: string) => assert.ok(text.includes(`\n${s}\n`), `missing ${s} in\n${text}`);
  line(`${METRIC_NAMES.requests}{op="PRODUCE",code="OK"} 2`);
  line(`${METRIC_NAMES.requests}{op="FETCH",code="UNKNOWN_TOPIC"} 1`);
  line(`${METRIC_NAMES.messagesIn}{topic="t1"} 15`);
  line(`${METRIC_NAMES.bytesIn}{topic="t1"} 1400`);
  line(`${METRIC_NAMES.messagesOut}{topic="t1"} 7`);
  line(`${METRIC_NAMES.bytesOut}{topic="t1"} 600`);
  // Buckets are cumulative; an observation equal to a bound counts in that bound's bucket.
  line(`${METRIC_NAMES.produceDuration}_bucket{le="0.00025"} 0`);
  line(`${METRIC_NAMES.produceDuration}_bucket{le="0.0005"} 1`);
  line(`${METRIC_NAMES.produceDuration}_bucket{le="2.5"} 1`);
  line(`${METRIC_NAMES.produceDuration}_bucket{le="5"} 2`);
  line(`${METRIC_NAMES.produceDuration}_bucket{le="+Inf"} 2`);
  line(`${METRIC_NAMES.produceDuration}_count 2`);
  line(`${METRIC_NAMES.fsyncBatches}_bucket{le="2"} 0`);
  line(`${METRIC_NAMES.fsyncBatches}_bucket{le="4"} 1`);
  line(`${METRIC_NAMES.fsyncDuration}_sum 0.002`);
  assert.equal(m.contentType, "text/plain; version=0.0.4; charset=utf-8");
  // A second scrape reads the same registry and sees later events.
  m.observer.request("PRODUCE", "OK");
  assert.ok((await m.scrape()).includes(`${METRIC_NAMES.requests}{op="PRODUCE",code="OK"} 3`));
});
