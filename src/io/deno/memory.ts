// Giving freed memory back to the operating system. The buffers a load passes through (deliveries
// to thousands of connections, a burst's batches) are malloc'ed outside the JavaScript heap; once
// freed, glibc keeps their pages in its arenas, so the process's RSS stays at its peak long after
// the load (2.5 to 2.7 times idle a minute after a connection flood). glibc's malloc_trim(0) hands
// those free pages back. Deno exposes it only through FFI: the broker calls it where it was given
// FFI permission for the C library (the start task, the image and the systemd unit scope
// `--allow-ffi` to its path), and does without elsewhere.

import process from "node:process";

/** Where the C library may be, by distribution and architecture; the first one allowed is used. */
export const LIBC_PATHS: readonly string[] = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/usr/lib/libc.so.6",
];

/** What `memoryTrimmer` gives: the trim itself, and the resident set it is judged by. */
export interface MemoryTrimmer {
  /** Which library it calls, for the log. */
  readonly library: string;
  /** Returns the allocator's free pages to the OS; true if it released any. */
  trim(): boolean;
}

/**
 * glibc's malloc_trim, through the first of `paths` this process may open with FFI (permission
 * granted, not merely promptable) that exists; null on another OS, without such a permission, or
 * where the library has no malloc_trim (musl).
 */
export function memoryTrimmer(paths: readonly string[] = LIBC_PATHS): MemoryTrimmer | null {
  if (Deno.build.os !== "linux") return null;
  for (const path of paths) {
    if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") continue;
    try {
      const lib = Deno.dlopen(path, { malloc_trim: { parameters: ["usize"], result: "i32" } });
      return { library: path, trim: () => lib.symbols.malloc_trim(0n) === 1 };
    } catch {
      // Not there, not glibc (no malloc_trim), or not loadable: try the next, else do without.
    }
  }
  return null;
}

/** How often the resident set is looked at, ms. */
export const TRIM_EVERY_MS = 10_000;
/** Growth of the resident set over its low mark that makes a trim worth it, bytes. */
export const TRIM_SLACK_BYTES = 8 * 1024 * 1024;
/**
 * A period in which the process used less CPU than this fraction of it is quiet: only then is it
 * trimmed. A trim that gives back 200 MB takes about 20 ms (madvise of every free page) and the
 * pages a busy process reuses fault back in, so a broker under load is left alone.
 */
export const QUIET_CPU_FRACTION = 0.1;

/**
 * Every TRIM_EVERY_MS (`everyMs`), trims if the resident set (`rssBytes`, VmRSS by default) is more
 * than TRIM_SLACK_BYTES (`slackBytes`) over the smallest it has been and the period was quiet (see
 * QUIET_CPU_FRACTION; `cpuMicros`): a process at rest or under load is not trimmed, one above its
 * rest after a load at most once per period. It keeps trimming while above, not just once: the
 * buffers a load leaves behind are freed when the garbage collector next runs, which after the
 * load may be half a minute later. The timer does not keep the process alive.
 */
export function trimPeriodically(
  trimmer: MemoryTrimmer,
  opts: {
    everyMs?: number;
    slackBytes?: number;
    rssBytes?: () => number;
    /** CPU time the process has used so far, µs. */
    cpuMicros?: () => number;
  } = {},
): () => void {
  const everyMs = opts.everyMs ?? TRIM_EVERY_MS;
  const rssBytes = opts.rssBytes ?? (() => Deno.memoryUsage().rss);
  const cpuMicros = opts.cpuMicros ?? (() => {
    const u = process.cpuUsage();
    return u.user + u.system;
  });
  const slack = opts.slackBytes ?? TRIM_SLACK_BYTES;
  let low = rssBytes();
  let cpuBefore = cpuMicros();
  const id = setInterval(() => {
    const rss = rssBytes();
    const cpu = cpuMicros();
    const quiet = cpu - cpuBefore < QUIET_CPU_FRACTION * everyMs * 1000;
    cpuBefore = cpu;
    low = Math.min(low, rss);
    if (quiet && rss > low + slack) trimmer.trim();
  }, everyMs);
  Deno.unrefTimer(id);
  return () => clearInterval(id);
}
