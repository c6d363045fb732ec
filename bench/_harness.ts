// Pieces every benchmark harness under bench/ needs: stopping and reading child processes,
// timeouts, number formatting, payloads, and a main wrapper that always cleans up.

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
