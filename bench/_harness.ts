// Pieces every benchmark harness under bench/ needs: stopping and reading child processes,
// timeouts, number formatting, payloads, and a main wrapper that always cleans up.

/** The repository root: children run from here. */
export const REPO_DIR = new URL("..", import.meta.url).pathname;
/** A child that has not said it is listening by then has failed to start. */
export const STARTUP_MS_MAX = 20_000;
/** A stopped child gets this long to exit after SIGTERM before SIGKILL. */
export const STOP_MS_MAX = 5_000;
/** Lines of a child's output kept to explain a failure. */
export const OUTPUT_LINES_KEPT_MAX = 40;

/** Sends `signal` to a child, ignoring one that is already gone. */
export function stopChild(p: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    p.kill(signal);
  } catch {
    // Already gone.
  }
}

/** Calls `onLine` for each line of a child's output until it ends. */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (l: string) => void,
): Promise<void> {
  let rest = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) onLine(p);
    }
  } catch {
    // The child went away; nothing more to read.
  }
  if (rest !== "") onLine(rest);
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** `p`, or an error if it takes longer than `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      p,
      sleep(ms, timer.signal).then(() => {
        throw new Error(`No answer within ${ms} ms`);
      }),
    ]);
  } finally {
    timer.abort();
  }
}

/** A whole number with thousands separators. */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** `bytes` of printable, mildly compressible payload. */
export function payload(bytes: number): Uint8Array {
  const p = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) p[i] = 97 + (i % 26);
  return p;
}

/**
 * Runs a harness's `main`, then `cleanUp` whatever happens — also on Ctrl-C or a kill, so no
 * broker, server or temporary file is left behind — and exits 0, or 1 if `main` threw.
 */
export async function runHarness(
  name: string,
  main: () => Promise<void>,
  cleanUp: () => Promise<void>,
): Promise<never> {
  for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(sig, () => {
      cleanUp().finally(() => Deno.exit(code));
    });
  }
  let code = 0;
  try {
    await main();
  } catch (err) {
    console.error(`${name}: ${(err as Error)?.stack ?? err}`);
    code = 1;
  } finally {
    await cleanUp();
  }
  Deno.exit(code);
}

/** The port from a broker's JSON "listen" log line, or null for any other line. */
export function listenPort(line: string): number | null {
  if (!line.startsWith("{") || !line.includes('"listen"')) return null;
  const listen = (JSON.parse(line) as { listen?: string }).listen ?? "";
  const port = Number(listen.slice(listen.lastIndexOf(":") + 1));
  return Number.isInteger(port) && port > 0 ? port : null;
}

/** A child process whose output is read line by line: first to find its address, then drained. */
export class Child {
  readonly name: string;
  readonly #process: Deno.ChildProcess;
  readonly #lines: string[] = [];
  readonly #status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(name: string, command: string, args: string[]) {
    this.name = name;
    this.#process = new Deno.Command(command, {
      args,
      cwd: REPO_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#process.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  get pid(): number {
    return this.#process.pid;
  }

  /**
   * Resolves with the first non-null `find(line)` over both output streams, which keep being drained
   * afterwards so a chatty child never blocks on a full pipe.
   */
  async ready<T>(find: (line: string) => T | null): Promise<T> {
    let found: ((v: T) => void) | null = null;
    const result = new Promise<T>((r) => (found = r));
    const onLine = (line: string): void => {
      this.#lines.push(line);
      if (this.#lines.length > OUTPUT_LINES_KEPT_MAX) this.#lines.shift();
      if (found === null) return;
      const v = find(line);
      if (v !== null) {
        found(v);
        found = null;
      }
    };
    void readLines(this.#process.stdout, onLine);
    void readLines(this.#process.stderr, onLine);
    const timer = new AbortController();
    try {
      return await Promise.race([
        result,
        this.#status.then((s) => {
          throw new Error(
            `${this.name} exited with code ${s.code} before listening${this.#tail()}`,
          );
        }),
        sleep(STARTUP_MS_MAX, timer.signal).then(() => {
          throw new Error(`${this.name} did not listen within ${STARTUP_MS_MAX} ms${this.#tail()}`);
        }),
      ]);
    } finally {
      timer.abort();
    }
  }

  #tail(): string {
    return this.#lines.length === 0 ? "" : `; its last output:\n${this.#lines.join("\n")}`;
  }

  /** SIGTERM, then SIGKILL if it has not exited within STOP_MS_MAX. Never throws. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    stopChild(this.#process, "SIGTERM");
    const timer = new AbortController();
    const exited = await Promise.race([
      this.#status.then(() => true, () => true),
      sleep(STOP_MS_MAX, timer.signal).then(() => false, () => false),
    ]);
    timer.abort();
    if (!exited) {
      stopChild(this.#process, "SIGKILL");
      await this.#status.catch(() => {});
    }
  }
}

/** A process's resident set, MiB, from /proc/<pid>/status; null where there is no /proc. */
export async function rssMiB(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = /^VmRSS:\s*(\d+)\s*kB/m.exec(status)?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

/** `rssMiB`, or an error where it cannot be read. */
export async function mustRss(pid: number): Promise<number> {
  const r = await rssMiB(pid);
  if (r === null) throw new Error(`Cannot read VmRSS of pid ${pid} from /proc`);
  return r;
}

/**
 * The whole number after `name` in `args`, or `fallback` without the flag. Anything but 1..max
 * prints `usage` with the range and exits 2.
 */
export function countArg(
  args: readonly string[],
  name: string,
  fallback: number,
  max: number,
  usage: string,
): number {
  const i = args.indexOf(name);
  const n = i < 0 ? fallback : Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    console.error(`${usage} (${name} 1..${max})`);
    Deno.exit(2);
  }
  return n;
}

/** Wall-clock milliseconds comparable between processes on this machine (sub-millisecond). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The value at quantile `q` (0..1) of ascending `sorted`: the floor(q·n)-th; NaN when empty. */
export function percentile(sorted: Float64Array | readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** The median of `xs` (the upper one of an even count), leaving `xs` as it is. */
export function median(xs: readonly number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 0.5);
}
