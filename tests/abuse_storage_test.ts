// Damaged files on a real disk under a real broker process: a byte flipped in a sealed segment (in
// the tail the broker reads at start, and far back), a truncated sealed segment and a garbage
// topic.json. The broker must start, serve every healthy topic whole and each damaged partition up
// to its damage, say so (log, describe, metrics, /readyz still 200), and after `gregorctl topic
// repair` take records again from the cut.

import assert from "node:assert/strict";
import { type Client, connect, ErrorCode, GregorError } from "../src/client/mod.ts";
import { BATCH_HEADER_BYTES, readBatchHeader } from "../src/protocol/batch.ts";
import { killAll } from "./_broker_process.ts";
import { fillUp, mountTmpfs, unmount } from "./_filesystem.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
/** Records per small topic, and the segment size that spreads them over several segments. */
const RECORDS = 200;
const SMALL_SEGMENT_BYTES = 4096;
/** The "deep" topic: more than the 4 MiB the broker reads back at start, in 1 MiB segments. */
const DEEP_RECORDS = 6_000;
const DEEP_VALUE_BYTES = 1_000;
const DEEP_SEGMENT_BYTES = 1024 * 1024;
/** Produces in flight at most while loading data. */
const IN_FLIGHT_MAX = 500;
/** Every wait for a delivery, an exit or a line is bounded by this. */
const WAIT_MS_MAX = 15_000;
/** Log lines kept per broker. */
const LOG_LINES_MAX = 10_000;
/** How long a subscriber waits for more after the damage before it is taken as stopped there. */
const QUIET_MS = 1_500;

/** A batch in a segment file: where it starts, how long it is, and its offsets. */
interface FileBatch {
  pos: number;
  size: number;
  base: number;
  last: number;
}

function batchesOf(bytes: Uint8Array): FileBatch[] {
  const out: FileBatch[] = [];
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= bytes.length;) {
    const h = readBatchHeader(bytes, pos, { headerOnly: true });
    out.push({
      pos,
      size: h.sizeBytes,
      base: h.baseOffset,
      last: h.baseOffset + h.recordCount - 1,
    });
    pos += h.sizeBytes;
  }
  return out;
}

/** The segment files of `topic`'s partition 0, oldest first. */
async function segments(dataDir: string, topic: string): Promise<string[]> {
  const dir = `${dataDir}/topics/${topic}/0`;
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".log")) names.push(e.name);
  return names.sort().map((n) => `${dir}/${n}`);
}

/** A broker process: where it listens, and every line it logged (up to LOG_LINES_MAX). */
interface Broker {
  child: Deno.ChildProcess;
  port: number;
  metrics: string;
  lines: string[];
}

/** Starts a broker on `dataDir`; resolves at its listen line, which comes after recovery's reports. */
async function startBroker(dataDir: string): Promise<Broker> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BROKER, "--port", "0", "--data-dir", dataDir, "--metrics-port", "0"],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  let found: (line: { listen: string; metrics: string }) => void = () => {};
  const listening = new Promise<{ listen: string; metrics: string }>((r) => (found = r));
  void (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (lines.length < LOG_LINES_MAX) lines.push(line);
        if (line.startsWith("{") && line.includes('"listen"')) found(JSON.parse(line));
      }
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = child.status.then((s) => {
    throw new Error(`The broker exited with ${s.code} before listening:\n${lines.join("\n")}`);
  });
  const started = await Promise.race([
    listening,
    exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("The broker did not start")), WAIT_MS_MAX);
    }),
  ]).finally(() => clearTimeout(timer));
  exited.catch(() => {});
  return {
    child,
    port: Number(started.listen.split(":").pop()),
    metrics: started.metrics,
    lines,
  };
}

/** Ends a broker with SIGTERM (a clean shutdown) and waits for it, bounded. */
async function stop(b: Broker): Promise<void> {
  b.child.kill("SIGTERM");
  const timer = setTimeout(() => b.child.kill("SIGKILL"), WAIT_MS_MAX);
  await b.child.status;
  clearTimeout(timer);
}

/** Publishes `count` values, `inFlightMax` at a time (1: each its own batch). */
async function load(
  client: Client,
  topic: string,
  count: number,
  opts: { value: (i: number) => string; inFlightMax: number },
): Promise<void> {
  const { value, inFlightMax } = opts;
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < count; i++) {
    const p: Promise<unknown> = client.publish(topic, { value: value(i) }).then((offset) =>
      assert.equal(offset, i)
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= inFlightMax) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

/**
 * Subscribes from the earliest offset and collects values by offset until `end` is reached or
 * nothing more comes for QUIET_MS.
 */
async function collect(client: Client, topic: string, end: number): Promise<string[]> {
  const sub = await client.subscribe(topic, { from: "earliest" });
  const it = sub[Symbol.asyncIterator]();
  const values: string[] = [];
  const deadline = Date.now() + WAIT_MS_MAX * 2;
  while (values.length < end && Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const quiet = new Promise<null>((r) => (timer = setTimeout(() => r(null), QUIET_MS)));
    const next = await Promise.race([it.next(), quiet]).finally(() => clearTimeout(timer));
    if (next === null || next.done) break;
    values[next.value.offset] = next.value.text();
    next.value.ack();
  }
  await sub.close();
  return values;
}

async function gregorctl(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", GREGORCTL, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function refusal(p: Promise<unknown>): Promise<GregorError> {
  const err = await p.then(() => null, (e) => e);
  assert.ok(err instanceof GregorError, `expected a refusal, got ${err}`);
  return err;
}

const small = (topic: string) => (i: number) => `${topic}-${i}`;

Deno.test({
  name:
    "A broker with damaged segments and a garbage topic.json starts, serves the rest, reports the damage and repairs it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "gregormq-damage-" });
    const procs: Broker[] = [];
    const clients: Client[] = [];
    try {
      // --- Write: four small topics over several segments, and one deep topic.
      let broker = await startBroker(dataDir);
      procs.push(broker);
      let client = await connect({ port: broker.port });
      clients.push(client);
      for (const t of ["healthy", "flipped", "truncated", "badmeta"]) {
        await client.admin.createTopic(t, {
          configs: { "segment.bytes": String(SMALL_SEGMENT_BYTES) },
        });
        // One batch per record, so batches are small and segments many.
        await load(client, t, RECORDS, { value: small(t), inFlightMax: 1 });
      }
      await client.admin.createTopic("deep", {
        configs: { "segment.bytes": String(DEEP_SEGMENT_BYTES) },
      });
      const deepValue = (i: number) => `deep-${i}-`.padEnd(DEEP_VALUE_BYTES, "x");
      await load(client, "deep", DEEP_RECORDS, { value: deepValue, inFlightMax: IN_FLIGHT_MAX });
      client.close();
      await stop(broker);

      // --- Damage, with plain file writes.
      // flipped: a record byte of the middle batch of the second segment (in the last 4 MiB).
      const flippedSegs = await segments(dataDir, "flipped");
      assert.ok(flippedSegs.length >= 3, `only ${flippedSegs.length} segments`);
      const fBytes = await Deno.readFile(flippedSegs[1]!);
      const fBatch = batchesOf(fBytes)[Math.floor(batchesOf(fBytes).length / 2)]!;
      fBytes[fBatch.pos + fBatch.size - 2]! ^= 0x10;
      await Deno.writeFile(flippedSegs[1]!, fBytes);
      const flippedAt = fBatch.base;
      // truncated: the first segment loses the last 10 bytes of its last batch.
      const truncSegs = await segments(dataDir, "truncated");
      const tBytes = await Deno.readFile(truncSegs[0]!);
      const truncatedAt = batchesOf(tBytes).at(-1)!.base;
      await Deno.truncate(truncSegs[0]!, tBytes.length - 10);
      // deep: a record byte of a batch in the first segment, more than 4 MiB from the end.
      const deepSegs = await segments(dataDir, "deep");
      const dBytes = await Deno.readFile(deepSegs[0]!);
      const dBatches = batchesOf(dBytes);
      const dBatch = dBatches[Math.floor(dBatches.length / 2)]!;
      dBytes[dBatch.pos + dBatch.size - 2]! ^= 0x01;
      await Deno.writeFile(deepSegs[0]!, dBytes);
      const deepAt = dBatch.base;
      // badmeta: garbage metadata.
      const metaPath = `${dataDir}/topics/badmeta/topic.json`;
      await Deno.writeTextFile(metaPath, "garbage{");

      // --- Restart: it must start.
      broker = await startBroker(dataDir);
      procs.push(broker);
      client = await connect({ port: broker.port });
      clients.push(client);

      // Healthy: every record.
      assert.deepEqual(
        await collect(client, "healthy", RECORDS),
        Array.from({ length: RECORDS }, (_, i) => small("healthy")(i)),
      );
      // Damaged: every record before the damage, and nothing at or after it.
      for (const [t, at] of [["flipped", flippedAt], ["truncated", truncatedAt]] as const) {
        assert.ok(at > 0 && at < RECORDS - 1, `${t} damaged at ${at}`);
        assert.deepEqual(
          await collect(client, t, RECORDS),
          Array.from({ length: at }, (_, i) => small(t)(i)),
          t,
        );
        const d = (await client.admin.describeTopic(t)).partitions[0]!;
        assert.equal(d.damagedFromOffset, at, t);
        assert.equal(d.highWatermark, RECORDS, t);
        const err = await refusal(client.publish(t, { value: "after" }));
        assert.equal(err.code, ErrorCode.PARTITION_DAMAGED);
        assert.match(err.message, new RegExp(`Partition ${t}/0 is damaged from offset ${at} `));
        assert.match(err.message, new RegExp(`gregorctl topic repair ${t} --partition 0`));
      }
      // Deep: found by the subscriber's read rather than at start; it gets everything before.
      const deep = await collect(client, "deep", DEEP_RECORDS);
      assert.equal(deep.length, deepAt);
      assert.ok(deep.every((v, i) => v === deepValue(i)));
      assert.equal(
        (await client.admin.describeTopic("deep")).partitions[0]!.damagedFromOffset,
        deepAt,
      );
      // The garbage metadata: the topic is refused, its file left as it was.
      const metaErr = await refusal(client.publish("badmeta", { value: "x" }));
      assert.equal(metaErr.code, ErrorCode.PARTITION_DAMAGED);
      const describeErr = await refusal(client.admin.describeTopic("badmeta"));
      assert.match(describeErr.message, /Topic badmeta was not loaded at start: .*topic\.json/);
      assert.equal(await Deno.readTextFile(metaPath), "garbage{");

      // Reported: error log lines, metrics, describe; still ready.
      const logged = broker.lines.join("\n");
      for (
        const [t, at] of [["flipped", flippedAt], ["truncated", truncatedAt], ["deep", deepAt]]
      ) {
        assert.match(
          logged,
          new RegExp(`"level":"error","msg":"Partition ${t}/0 is damaged from offset ${at}: `),
        );
      }
      assert.match(logged, /"level":"error","msg":"Cannot load topic badmeta: /);
      const metricsUrl = `http://${broker.metrics}`;
      const ready = await fetch(`${metricsUrl}/readyz`);
      await ready.body?.cancel();
      assert.equal(ready.status, 200);
      const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
      assert.match(metrics, /gregormq_partition_damaged\{topic="flipped",partition="0"\} 1/);
      assert.match(metrics, /gregormq_partition_damaged\{topic="healthy",partition="0"\} 0/);
      assert.match(metrics, /gregormq_topics_unloadable 1/);
      const addr = `127.0.0.1:${broker.port}`;
      const described = await gregorctl(["--broker", addr, "topic", "describe", "flipped"]);
      assert.equal(described.code, 0, described.stderr);
      assert.match(described.stdout, new RegExp(`damaged from offset ${flippedAt}`));

      // Repair: it says what it dropped, and the partition takes records again from the cut.
      const repaired = await gregorctl(["--broker", addr, "topic", "repair", "flipped"]);
      assert.equal(repaired.code, 0, repaired.stderr);
      assert.match(
        repaired.stdout,
        new RegExp(
          `^flipped/0: dropped offsets ${flippedAt}\\.\\.${RECORDS - 1} \\(${
            RECORDS - flippedAt
          } records, \\d+ bytes\\): .*fails its checks at byte ${fBatch.pos}: .*; new records get ` +
            `offsets from ${flippedAt}\\n$`,
        ),
      );
      const again = await gregorctl(["--broker", addr, "topic", "repair", "flipped"]);
      assert.equal(again.stdout, "flipped/0: every batch checks out; nothing dropped\n");
      assert.equal(await client.publish("flipped", { value: "after" }), flippedAt);
      const d = (await client.admin.describeTopic("flipped")).partitions[0]!;
      assert.equal(d.damagedFromOffset, -1);
      assert.deepEqual(await collect(client, "flipped", flippedAt + 1), [
        ...Array.from({ length: flippedAt }, (_, i) => small("flipped")(i)),
        "after",
      ]);
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

/** Size of the full filesystem the disk-full test runs on. */
const FULL_FS_BYTES = 2 * 1024 * 1024;
/** Records acknowledged before the disk fills, and their size: most of the filesystem. */
const FULL_FS_RECORDS = 600;
const FULL_FS_VALUE_BYTES = 1_000;
/** Publishes in flight against the full disk when the broker is killed. */
const FULL_FS_PENDING = 50;

Deno.test({
  name:
    "After a SIGKILL on a full disk the broker starts with no free space and keeps every acknowledged record",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-full-" });
    const why = await mountTmpfs(dir, `size=${FULL_FS_BYTES}`);
    if (why !== null) {
      console.log(`skipped: cannot mount a tmpfs to fill up (${why}); it needs root`);
      await Deno.remove(dir);
      return;
    }
    const dataDir = `${dir}/data`;
    const procs: Broker[] = [];
    const clients: Client[] = [];
    try {
      let broker = await startBroker(dataDir);
      procs.push(broker);
      let client = await connect({ port: broker.port });
      clients.push(client);
      const value = (i: number) => `full-${i}-`.padEnd(FULL_FS_VALUE_BYTES, "y");
      await client.admin.createTopic("full");
      await load(client, "full", FULL_FS_RECORDS, { value, inFlightMax: 20 });
      await fillUp(`${dir}/filler`);
      // Publishes against the full disk, in flight when the broker dies.
      for (let i = 0; i < FULL_FS_PENDING; i++) {
        client.publish("full", { value: "unacknowledged" }).catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 300));
      broker.child.kill("SIGKILL");
      await broker.child.status;
      client.close();

      // No free byte, and it must start all the same. The records a crash left in the active
      // segment are held back until they can be made durable in a copy (an fsync that failed
      // before the crash may have left bytes the disk never got): appends are refused meanwhile.
      broker = await startBroker(dataDir);
      procs.push(broker);
      client = await connect({ port: broker.port });
      clients.push(client);
      const err = await client.producer({ idempotent: false }).send("full", { value: "while full" })
        .catch((e) => e);
      assert.ok(err instanceof GregorError && err.code === ErrorCode.STORAGE_ERROR, String(err));
      assert.match(err.message, /held back/);
      assert.ok(
        broker.lines.some((l) => l.includes("No free space to make") && l.includes("durable")),
        broker.lines.join("\n"),
      );
      // A subscriber that had the last acknowledged record before the crash resumes after it: the
      // held-back offsets exist, so it waits for them (it is not told they are out of range, which
      // sends a client back to the earliest offset).
      const last = FULL_FS_RECORDS - 1;
      const resumed = await client.subscribe("full", { from: { offset: last } });
      // A one-off read there finds nothing to read yet, not an offset out of range.
      assert.deepEqual(await client.readPartition("full", 0, { from: { offset: last } }), []);
      const next = resumed[Symbol.asyncIterator]().next();
      // Room again: the next produce makes the segment durable, then is stored after it.
      await Deno.remove(`${dir}/filler`);
      const at = await client.publish("full", { value: "after room" });
      assert.ok(at >= FULL_FS_RECORDS, `stored at ${at}, after every acknowledged record`);
      const first = await next;
      assert.equal(first.done, false);
      assert.equal(first.value.offset, last, "the resumed subscriber gets the offset it asked for");
      assert.equal(first.value.text(), value(last));
      await resumed.close();
      const got = await collect(client, "full", FULL_FS_RECORDS);
      assert.equal(got.length, FULL_FS_RECORDS);
      assert.ok(got.every((v, i) => v === value(i)), "every acknowledged record, at its offset");
      const left = [...Deno.readDirSync(`${dataDir}/topics/full/0`)].map((e) => e.name);
      assert.deepEqual(left.filter((n) => n.endsWith(".tmp")), []);
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await unmount(dir);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
