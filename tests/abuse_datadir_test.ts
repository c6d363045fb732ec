// The data directory abused, with real broker processes on real filesystems: a second broker on a
// directory in use, a read-only directory, a full disk. Each time the operator gets one clear line,
// the broker that owns the directory keeps serving, and nothing acknowledged is lost.
// The read-only and full-disk tests mount a small tmpfs (root only) and skip, saying why, if they
// cannot.

import assert from "node:assert/strict";
import { type Client, connect, ErrorCode, GregorError } from "../src/client/mod.ts";
import { freePort, readAll } from "./_broker_process.ts";
import { fillUp, mountTmpfs, unmount } from "./_filesystem.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
/** A broker that has not said it is listening (or exited) by then has failed. */
const STARTUP_MS_MAX = 15_000;
/** Output lines kept per broker process. */
const OUTPUT_LINES_MAX = 2_000;
/** A message big enough to need new pages of the full disk, bytes. */
const BIG_VALUE_BYTES = 16 * 1024;
/** The delivery timeout of the producer that meets the full disk, ms. */
const SHORT_DELIVERY_TIMEOUT_MS = 3_000;

/** A broker process whose stdout and stderr are read line by line into `lines`. */
class Broker {
  readonly lines: string[] = [];
  readonly child: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<void>;

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BROKER, ...args],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.child.status;
    this.#drained = Promise.all([this.#read(this.child.stdout), this.#read(this.child.stderr)])
      .then(() => {});
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      this.lines.push(...parts);
      if (this.lines.length > OUTPUT_LINES_MAX) this.lines.splice(0, this.lines.length / 2);
    }
    if (rest !== "") this.lines.push(rest);
  }

  /** Resolves once it logged its listen line; rejects (with its output) if it exits first. */
  async listening(): Promise<void> {
    const deadline = Date.now() + STARTUP_MS_MAX;
    let exited = false;
    void this.status.then(() => (exited = true));
    while (!this.lines.some((l) => l.includes("GregorMQ broker listening"))) {
      if (exited || Date.now() > deadline) {
        throw new Error(`The broker did not start; its output:\n${this.lines.join("\n")}`);
      }
      await sleep(20);
    }
  }

  /** Its exit code and every line it printed, once it exited (bounded by STARTUP_MS_MAX). */
  async exited(): Promise<{ code: number; lines: string[] }> {
    const timer = setTimeout(() => this.kill(), STARTUP_MS_MAX);
    const { code } = await this.status;
    clearTimeout(timer);
    await this.#drained;
    return { code, lines: this.lines.filter((l) => l.trim() !== "") };
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  async stop(): Promise<void> {
    this.kill();
    await this.status;
    await this.#drained;
  }
}

function brokerArgs(dataDir: string, port: number, metricsPort: number | null): string[] {
  const args = ["--port", String(port), "--data-dir", dataDir];
  return metricsPort === null
    ? [...args, "--no-metrics-enabled"]
    : [...args, "--metrics-port", String(metricsPort)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Produces `values` to `topic` and reads them back: the broker serves this client. */
async function assertServes(client: Client, topic: string, values: string[]): Promise<void> {
  const offsets: number[] = [];
  for (const v of values) offsets.push(await client.publish(topic, { value: v }));
  const all = await readAll(client, topic);
  assert.deepEqual(offsets.map((o) => all[o]), values, `${topic} must take and return messages`);
}

async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

Deno.test({
  name: "a second broker on a data dir in use exits 2 naming the holder; the first keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-lock-" });
    const brokers: Broker[] = [];
    const clients: Client[] = [];
    try {
      const firstPort = freePort();
      const first = new Broker(brokerArgs(dir, firstPort, null));
      brokers.push(first);
      await first.listening();
      const client = await connect({ port: firstPort });
      clients.push(client);
      await assertServes(client, "orders", ["a", "b"]);

      const startedMs = Date.now();
      const second = new Broker(brokerArgs(dir, freePort(), null));
      brokers.push(second);
      const { code, lines } = await second.exited();
      const tookMs = Date.now() - startedMs;
      assert.equal(code, 2, `the second broker must exit 2; its output:\n${lines.join("\n")}`);
      assert.deepEqual(lines, [`data dir ${dir} is in use by pid ${first.child.pid}`]);
      assert.ok(tookMs < 5_000, `it must give up at once, not wait for the lock (${tookMs} ms)`);

      // The first one noticed nothing: its client still produces and consumes.
      await assertServes(client, "orders", ["c", "d"]);

      // The OS drops the lock with the process, whatever kills it: a new broker starts at once.
      client.close();
      clients.length = 0;
      await first.stop();
      const nextPort = freePort();
      const next = new Broker(brokerArgs(dir, nextPort, null));
      brokers.push(next);
      await next.listening();
      const again = await connect({ port: nextPort });
      clients.push(again);
      assert.deepEqual(await readAll(again, "orders"), ["a", "b", "c", "d"]);
      await assertServes(again, "orders", ["e"]);
    } finally {
      for (const c of clients) c.close();
      for (const b of brokers) await b.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "a broker on a read-only data dir exits 2 with one line saying why",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-ro-" });
    // Root writes through chmod, so root needs a filesystem that is read-only for everyone.
    const root = Deno.uid() === 0;
    const why = root ? await mountTmpfs(dir, "ro,size=1m") : null;
    if (why !== null) {
      console.log(`skipped: ${why}`);
      await Deno.remove(dir, { recursive: true });
      return;
    }
    if (!root) await Deno.chmod(dir, 0o555);
    try {
      const other = await Deno.makeTempDir({ prefix: "gregormq-ok-" });
      const port = freePort();
      const healthy = new Broker(brokerArgs(other, port, null));
      try {
        await healthy.listening();
        const broker = new Broker(brokerArgs(dir, freePort(), null));
        const { code, lines } = await broker.exited();
        assert.equal(code, 2, `it must exit 2; its output:\n${lines.join("\n")}`);
        assert.equal(lines.length, 1, `one line, got:\n${lines.join("\n")}`);
        assert.match(lines[0]!, new RegExp(`^data dir ${dir} is not writable: \\S`));
        await t.step("a broker elsewhere is not disturbed", async () => {
          const client = await connect({ port });
          try {
            await assertServes(client, "t", ["x"]);
          } finally {
            client.close();
          }
        });
      } finally {
        await healthy.stop();
        await Deno.remove(other, { recursive: true }).catch(() => {});
      }
    } finally {
      if (root) await unmount(dir);
      else await Deno.chmod(dir, 0o755);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "a full disk: producers get STORAGE_ERROR with ENOSPC, logged once, not ready, then " +
    "everything comes back and nothing acknowledged is lost",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-full-" });
    const why = await mountTmpfs(dir, "size=2m");
    if (why !== null) {
      console.log(`skipped: ${why}`);
      await Deno.remove(dir, { recursive: true });
      return;
    }
    const filler = `${dir}/filler`;
    const brokers: Broker[] = [];
    const clients: Client[] = [];
    try {
      const port = freePort();
      const metricsPort = freePort();
      const broker = new Broker(brokerArgs(dir, port, metricsPort));
      brokers.push(broker);
      await broker.listening();
      const client = await connect({ port });
      clients.push(client);
      const producer = client.producer({ deliveryTimeoutMs: SHORT_DELIVERY_TIMEOUT_MS });
      const acked: string[] = [];
      for (let i = 0; i < 20; i++) {
        const value = `before-${i}`;
        assert.equal(await producer.send("disk", { value }), acked.length);
        acked.push(value);
      }
      await client.admin.createTopic("mem", { configs: { persistence: "memory" } });

      const filled = await fillUp(filler);
      assert.ok(filled > 0, "the filler must have taken the free space");
      const big = "x".repeat(BIG_VALUE_BYTES);

      // The idempotent producer retries until its delivery timeout, then says what it met.
      const timedOut = await producer.send("disk", { value: big }).then(
        () => null,
        (err) => err,
      );
      assert.ok(timedOut instanceof GregorError, `expected a GregorError, got ${timedOut}`);
      assert.equal(timedOut.code, ErrorCode.TIMEOUT, timedOut.message);
      assert.match(timedOut.message, /last error STORAGE_ERROR: .*no space left on device/);
      const cause = timedOut.cause;
      assert.ok(cause instanceof GregorError && cause.code === ErrorCode.STORAGE_ERROR);

      // Without retries the answer comes at once.
      const plain = client.producer({ idempotent: false });
      const refused = await plain.send("disk", { value: big }).then(() => null, (err) => err);
      assert.ok(refused instanceof GregorError, `expected a GregorError, got ${refused}`);
      assert.equal(refused.code, ErrorCode.STORAGE_ERROR, refused.message);
      assert.match(refused.message, /no space left on device/);

      const created = await client.admin.createTopic("disk2").then(() => null, (err) => err);
      assert.ok(created instanceof GregorError, `expected a GregorError, got ${created}`);
      assert.equal(created.code, ErrorCode.STORAGE_ERROR, `not INTERNAL: ${created.message}`);
      assert.match(created.message, /no space left on device/);

      const notReady = await httpGet(metricsPort, "/readyz");
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, /storage failing .*\(no_space\).*no space left on device/);
      const metrics = (await httpGet(metricsPort, "/metrics")).body;
      const counted = Number(
        /gregormq_storage_errors_total\{cause="no_space"\} (\d+)/.exec(metrics)?.[1] ?? 0,
      );
      assert.ok(counted >= 3, `failures are counted (${counted}):\n${metrics}`);

      // Memory topics and reads of what is stored go on.
      await assertServes(client, "mem", ["m1", "m2"]);
      assert.deepEqual(await readAll(client, "disk"), acked);

      // Space back: writes work again, and so does readiness.
      await Deno.remove(filler);
      const after = client.producer();
      for (let i = 0; i < 5; i++) {
        const value = `after-${i}`;
        assert.equal(await after.send("disk", { value }), acked.length);
        acked.push(value);
      }
      assert.equal((await httpGet(metricsPort, "/readyz")).status, 200);
      const failingLines = broker.lines.filter((l) => l.includes("Storage is failing"));
      assert.equal(failingLines.length, 1, `logged once:\n${failingLines.join("\n")}`);
      assert.match(failingLines[0]!, /no space left on device/);
      assert.equal(broker.lines.filter((l) => l.includes("Storage works again")).length, 1);

      // After a restart, every acknowledged message is there, at its offset.
      client.close();
      clients.length = 0;
      await broker.stop();
      const restarted = new Broker(brokerArgs(dir, port, metricsPort));
      brokers.push(restarted);
      await restarted.listening();
      const reader = await connect({ port });
      clients.push(reader);
      assert.deepEqual(await readAll(reader, "disk"), acked);
    } finally {
      for (const c of clients) c.close();
      for (const b of brokers) await b.stop();
      await unmount(dir);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
