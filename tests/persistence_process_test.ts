// The broker as a real process on a real disk: SIGKILLed again and again while acknowledged
// produces stream in under --fsync always, every acknowledged message must come back once, at its
// offset; after a graceful SIGTERM the restart must find a clean log and rewrite nothing.

import assert from "node:assert/strict";
import { type Client, connect, ConnectionError } from "../src/client/mod.ts";
import { SeededRandom } from "../src/io/prng.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
/** Reproduce a failing run with GREGORMQ_CRASH_SEED=<seed> deno test -A tests/persistence_process_test.ts */
const SEED = Number(Deno.env.get("GREGORMQ_CRASH_SEED") ?? 0x5eed_2026);
const TOPIC = "crash";
/** SIGKILLs per run. */
const KILLS = 5;
/** A kill comes once this many sends were acknowledged since the broker started, drawn per kill. */
const ACKS_BEFORE_KILL_MIN = 300;
const ACKS_BEFORE_KILL_MAX = 6_000;
/** Sends not yet acknowledged or failed at most. */
const IN_FLIGHT_MAX = 2_000;
/** Sends started between two turns of the event loop at most, drawn per turn. */
const BURST_MAX = 200;
/** Sends after the last restart, all of which must be acknowledged. */
const FINAL_SENDS = 500;
/** Sends over a whole run at most. */
const SENDS_MAX = 100_000;
/** Producing, killing and restarting must be over by then. */
const PRODUCE_MS_MAX = 20_000;
/** A broker that has not said it is listening by then has failed to start. */
const STARTUP_MS_MAX = 10_000;
/** Every single wait (an acknowledgement, an exit, a delivery) is bounded by this. */
const WAIT_MS_MAX = 10_000;
/** Output lines kept per broker process, to explain a failure. */
const OUTPUT_LINES_MAX = 1_000;

/** One broker process, its output read line by line so it never blocks on a full pipe. */
class BrokerProcess {
  readonly port: number;
  readonly lines: string[];
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<void>;
  #exited = false;

  private constructor(
    child: Deno.ChildProcess,
    io: { port: number; lines: string[]; drained: Promise<void> },
  ) {
    this.#child = child;
    this.port = io.port;
    this.lines = io.lines;
    this.#drained = io.drained;
    this.#status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  /** Starts a broker on `dataDir` and waits for its "listen" line. */
  static async start(dataDir: string, port: number): Promise<BrokerProcess> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        BROKER,
        "--port",
        String(port),
        "--data-dir",
        dataDir,
        "--fsync",
        "always",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines: string[] = [];
    let listening: ((port: number) => void) | null = null;
    const listened = new Promise<number>((r) => (listening = r));
    const onLine = (line: string): void => {
      if (lines.length < OUTPUT_LINES_MAX) lines.push(line);
      if (listening === null || !line.includes('"listen"')) return;
      const listen = String((JSON.parse(line) as { listen: string }).listen);
      listening(Number(listen.slice(listen.lastIndexOf(":") + 1)));
      listening = null;
    };
    const drained = Promise.all([
      readLines(child.stdout, onLine),
      readLines(child.stderr, onLine),
    ]).then(() => {});
    try {
      const bound = await within(
        Promise.race([
          listened,
          child.status.then((s) => {
            throw new Error(
              `The broker exited (code ${s.code}, signal ${s.signal}) before listening`,
            );
          }),
        ]),
        STARTUP_MS_MAX,
        "the broker's listen line",
      );
      return new BrokerProcess(child, { port: bound, lines, drained });
    } catch (err) {
      kill(child, "SIGKILL");
      await child.status;
      await drained;
      throw new Error(`${(err as Error).message}; its output:\n${lines.join("\n")}`);
    }
  }

  /** SIGKILL, and asserts the process really died of it. */
  async kill9(): Promise<void> {
    this.#child.kill("SIGKILL");
    const status = await within(this.#status, WAIT_MS_MAX, "the SIGKILLed broker's exit");
    await this.#drained;
    assert.equal(status.signal, "SIGKILL", `broker exited with ${JSON.stringify(status)}`);
    assert.equal(status.success, false);
  }

  /** SIGTERM, and asserts a graceful exit (code 0). */
  async terminate(): Promise<void> {
    this.#child.kill("SIGTERM");
    const status = await within(this.#status, WAIT_MS_MAX, "the SIGTERMed broker's exit");
    await this.#drained;
    assert.equal(status.code, 0, `broker exited with ${JSON.stringify(status)}:\n${this.output}`);
    assert.equal(status.signal, null);
  }

  /** For `finally`: SIGKILL if still running. Never throws. */
  async stop(): Promise<void> {
    if (!this.#exited) kill(this.#child, "SIGKILL");
    await this.#status.catch(() => {});
    await this.#drained;
  }

  /** Lines logged at level "warn". */
  get warnings(): string[] {
    return this.lines.filter((l) => l.includes('"level":"warn"'));
  }

  get output(): string {
    return this.lines.join("\n");
  }
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone.
  }
}

async function readLines(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void) {
  let rest = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) onLine(p);
    }
  } catch {
    // The process went away mid-read; what it wrote so far is all there is.
  }
  if (rest !== "") onLine(rest);
}

/** `p`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`No ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Client settings: reconnect fast, and give up long before the test would hang. */
function connectTo(port: number): Promise<Client> {
  return connect({
    port,
    connectTimeoutMs: WAIT_MS_MAX,
    requestTimeoutMs: WAIT_MS_MAX,
    reconnectBackoffMsMin: 20,
    reconnectBackoffMsMax: 200,
  });
}

/**
 * Reads the whole partition from offset 0 with a fresh client and checks that offsets run
 * contiguously from 0 and no value appears twice. Returns value → offset.
 */
async function readAll(port: number, highWatermark: number): Promise<Map<string, number>> {
  const reader = await connectTo(port);
  try {
    const consumer = await reader.subscribe(TOPIC, {
      from: "earliest",
      autoAck: true,
      windowMessages: 10_000,
    });
    const at = new Map<string, number>();
    for (let offset = 0; offset < highWatermark; offset++) {
      const m = await within(consumer.next(), WAIT_MS_MAX, `delivery of offset ${offset}`);
      assert.ok(m !== null, `the subscription ended before offset ${offset}`);
      assert.equal(m.offset, offset, `offsets must be contiguous from 0 (seed ${SEED})`);
      const value = m.text();
      const earlier = at.get(value);
      assert.equal(
        earlier,
        undefined,
        `${value} is stored twice, at offsets ${earlier} and ${offset} (seed ${SEED})`,
      );
      at.set(value, offset);
    }
    await consumer.close();
    return at;
  } finally {
    await reader.close();
  }
}

async function highWatermark(client: Client): Promise<number> {
  const d = await client.admin.describeTopic(TOPIC);
  assert.equal(d.partitions.length, 1);
  return d.partitions[0]!.highWatermark;
}

/** The segment files of the topic's partition 0, by name, with their inode numbers. */
async function segmentInodes(dataDir: string): Promise<Map<string, number | null>> {
  const dir = `${dataDir}/topics/${TOPIC}/0`;
  const out = new Map<string, number | null>();
  for await (const e of Deno.readDir(dir)) {
    if (e.name.endsWith(".log")) out.set(e.name, (await Deno.stat(`${dir}/${e.name}`)).ino);
  }
  return out;
}

Deno.test("acknowledged produces survive repeated SIGKILL of the broker process (fsync always)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-crash-" });
  const random = new SeededRandom(SEED, "kill moments");
  const bursts = random.fork("bursts");
  let broker: BrokerProcess | null = null;
  let client: Client | null = null;
  try {
    broker = await BrokerProcess.start(dataDir, 0);
    const port = broker.port;
    // One client throughout: it must reconnect to each restarted broker on the same port.
    client = await connectTo(port);
    await client.admin.createTopic(TOPIC);
    const producer = client.producer({ lingerMs: 1 });

    let sends = 0;
    let inFlight = 0;
    let ackedSinceStart = 0;
    const acked = new Map<string, number>();
    const failed = new Map<string, unknown>();
    let progress: (() => void) | null = null;
    const wake = (): void => {
      const w = progress;
      progress = null;
      w?.();
    };
    const send = (): void => {
      const value = `m${sends++}`;
      inFlight++;
      producer.send(TOPIC, { value }).then(
        (offset) => {
          acked.set(value, offset);
          ackedSinceStart++;
        },
        (err) => failed.set(value, err),
      ).finally(() => {
        inFlight--;
        wake();
      });
    };
    const deadline = performance.now() + PRODUCE_MS_MAX;
    /**
     * Sends, IN_FLIGHT_MAX at a time and `sendsMax` in all, until `done()`; bounded by the
     * deadline.
     */
    const produceUntil = async (
      done: () => boolean,
      opts: { sendsMax: number; what: string },
    ): Promise<void> => {
      const what = opts.what;
      while (!done()) {
        assert.ok(performance.now() < deadline, `${what} not reached in time (seed ${SEED})`);
        // Bursts of random size with a turn of the event loop between them, so produces stream
        // in as many batches in flight at once rather than in lock step.
        const burst = Math.min(
          bursts.int(1, BURST_MAX + 1),
          IN_FLIGHT_MAX - inFlight,
          opts.sendsMax - sends,
        );
        if (burst > 0) {
          for (let i = 0; i < burst; i++) send();
          await new Promise((r) => setTimeout(r, 0));
        } else {
          await within(new Promise<void>((r) => (progress = r)), WAIT_MS_MAX, `progress: ${what}`);
        }
      }
    };

    const killedWithInFlight: number[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      const target = random.int(ACKS_BEFORE_KILL_MIN, ACKS_BEFORE_KILL_MAX + 1);
      ackedSinceStart = 0;
      await produceUntil(() => ackedSinceStart >= target && inFlight > 0, {
        sendsMax: SENDS_MAX,
        what: `kill ${kill + 1} after ${target} acknowledgements`,
      });
      assert.ok(inFlight > 0, "the kill must land while produces are in flight");
      killedWithInFlight.push(inFlight);
      await broker.kill9();
      // Same port and data directory: the client reconnects and its queued produces go through.
      broker = await BrokerProcess.start(dataDir, port);
    }
    const finalFrom = sends;
    await produceUntil(() => sends === finalFrom + FINAL_SENDS && inFlight === 0, {
      sendsMax: finalFrom + FINAL_SENDS,
      what: "the final sends",
    });
    await producer.flush();
    assert.equal(inFlight, 0);
    assert.equal(acked.size + failed.size, sends);
    for (let i = finalFrom; i < sends; i++) {
      assert.ok(
        acked.has(`m${i}`),
        `m${i}, sent after the last restart, failed: ${failed.get(`m${i}`)}`,
      );
    }
    for (const [value, err] of failed) {
      assert.ok(
        err instanceof ConnectionError,
        `${value} failed with ${err}, not a ConnectionError`,
      );
    }

    const end = await highWatermark(client);
    const stored = await readAll(port, end);
    for (const [value, offset] of acked) {
      assert.equal(
        stored.get(value),
        offset,
        `acknowledged ${value} must be at offset ${offset} (seed ${SEED})`,
      );
    }
    let unknownStored = 0;
    for (const value of stored.keys()) {
      assert.match(value, /^m\d+$/, `${value} was never sent`);
      assert.ok(Number(value.slice(1)) < sends, `${value} was never sent`);
      if (!acked.has(value)) {
        assert.ok(failed.has(value));
        unknownStored++;
      }
    }
    assert.equal(end, acked.size + unknownStored);
    console.log(
      `seed ${SEED}: ${sends} sent, ${acked.size} acknowledged, ${failed.size} failed with the ` +
        `connection (${unknownStored} of them stored anyway); in flight at the kills: ` +
        `${killedWithInFlight.join(", ")}`,
    );
  } finally {
    await client?.close();
    await broker?.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("after a graceful SIGTERM the broker restarts on its log as it was, rewriting nothing", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-sigterm-" });
  const rounds = 20;
  const perRound = 100;
  const count = rounds * perRound;
  let broker: BrokerProcess | null = null;
  let client: Client | null = null;
  try {
    broker = await BrokerProcess.start(dataDir, 0);
    const port = broker.port;
    client = await connectTo(port);
    await client.admin.createTopic(TOPIC);
    const producer = client.producer({ lingerMs: 1 });
    // Round by round, so the log holds many batches rather than one.
    const offsets: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const sends = Array.from(
        { length: perRound },
        (_, i) => producer.send(TOPIC, { value: `g${r * perRound + i}` }),
      );
      offsets.push(...await within(Promise.all(sends), WAIT_MS_MAX, "acknowledgements"));
    }
    await client.close();
    client = null;
    const before = await segmentInodes(dataDir);
    assert.ok(before.size > 0);

    await broker.terminate();
    broker = await BrokerProcess.start(dataDir, port);
    assert.deepEqual(broker.warnings, [], "a restart after a clean shutdown truncates nothing");
    // Recovery after a crash copies the active segment into a new file; after a clean one it must
    // keep the file it has.
    assert.deepEqual(await segmentInodes(dataDir), before, "segment files must not be replaced");

    client = await connectTo(port);
    assert.equal(await highWatermark(client), count);
    const stored = await readAll(port, count);
    offsets.forEach((offset, i) => assert.equal(stored.get(`g${i}`), offset));
    assert.equal(await client.publish(TOPIC, { value: "after restart" }), count);
    await client.close();
    client = null;
    await broker.terminate();
  } finally {
    await client?.close();
    await broker?.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
