// Small real filesystems for the abuse tests: a tmpfs mounted for a test (read-only, or small
// enough to fill up), and a writer that fills one. Mounting needs root; a test that cannot mount
// skips with the reason this gives.

/** Bytes per write while filling a filesystem; halved down to one byte as it runs out. */
const FILL_CHUNK_BYTES = 64 * 1024;
/** Writes while filling, at most: the loop is bounded even on a filesystem that never fills. */
const FILL_WRITES_MAX = 10_000;

/** Runs a command; whether it succeeded, and its output. */
async function run(cmd: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { ok: out.success, output: text.trim() };
  } catch (err) {
    return { ok: false, output: (err as Error).message };
  }
}

/**
 * Mounts a tmpfs with mount `options` ("size=2m", "ro,size=1m") on `dir`. Resolves null once
 * mounted, else why it could not be (not root, no mount command), for the test to print and skip.
 */
export async function mountTmpfs(dir: string, options: string): Promise<string | null> {
  const r = await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  return r.ok ? null : `cannot mount a tmpfs (${options}) on ${dir}: ${r.output || "no reason"}`;
}

/** Unmounts what `mountTmpfs` mounted on `dir` (a failure is ignored: cleanup only). */
export async function unmount(dir: string): Promise<void> {
  await run("umount", [dir]);
}

/**
 * Writes zeros to `path` until its filesystem has no byte left (smaller and smaller writes, down
 * to one byte); resolves the bytes written. Throws if the filesystem did not fill within
 * FILL_WRITES_MAX writes.
 */
export async function fillUp(path: string): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true });
  let written = 0;
  try {
    for (let size = FILL_CHUNK_BYTES, i = 0; i < FILL_WRITES_MAX; i++) {
      try {
        written += await file.write(new Uint8Array(size));
      } catch (err) {
        if (!/No space|ENOSPC|os error 28/.test(String(err))) throw err;
        if (size === 1) return written;
        size = Math.floor(size / 2);
      }
    }
  } finally {
    file.close();
  }
  throw new Error(`${path} did not fill its filesystem within ${FILL_WRITES_MAX} writes`);
}
