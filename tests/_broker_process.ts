// A broker as a real child process, for the multi-process tests: spawn `cli/broker.ts` with the
// given flags, wait for its JSON listen line, keep draining (and remembering the end of) its log.

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
/** Log lines kept per broker, to explain one that died. */
const LINES_KEPT = 50;

/** A running broker process. */
export interface BrokerProcess {
  child: Deno.ChildProcess;
  /** The first line it logged: where it listens (`listen`, `cluster`) and its `nodeId`. */
  listen: { listen: string; cluster?: string; nodeId?: string };
  /** Its last log lines. */
  lines: string[];
}

/** Starts a broker with `args` (after `cli/broker.ts`); resolves once it listens. */
export async function spawnBroker(args: string[]): Promise<BrokerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BROKER, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("A broker exited before listening");
    text += value;
  }
  const lines = text.split("\n");
  // Keep draining its log so the pipe never fills up.
  void (async () => {
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) return;
      lines.push(...String(r.value).split("\n"));
      if (lines.length > LINES_KEPT) lines.splice(0, lines.length - LINES_KEPT);
    }
  })();
  return { child, listen: JSON.parse(lines[0]!), lines };
}

/** SIGKILLs every process (those already gone are skipped) and waits for them. */
export async function killAll(procs: readonly { child: Deno.ChildProcess }[]): Promise<void> {
  for (const p of procs) {
    try {
      p.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await p.child.status.catch(() => {});
  }
}
