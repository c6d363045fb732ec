// Small helpers on top of the seam interfaces that every caller would otherwise rewrite.

import type { Conn, Disk, File } from "./types.ts";

/** Writes all of `bytes` to `conn`, looping over short writes. */
export async function writeAll(conn: Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) {
    off += await conn.write(off === 0 ? bytes : bytes.subarray(off));
  }
}

/**
 * Reads exactly `buf.length` bytes. Resolves `false` if the stream ended before any byte was
 * read; throws if it ended part way.
 */
export async function readExactly(conn: Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(off === 0 ? buf : buf.subarray(off));
    if (n === null) {
      if (off === 0) return false;
      throw new Error(`Stream ended after ${off} of ${buf.length} bytes`);
    }
    off += n;
  }
  return true;
}

/** The directory part of a "/"-separated path ("." when there is none). */
export function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return ".";
  if (i === 0) return "/";
  return path.slice(0, i);
}

/** Joins path parts with "/". */
export function joinPath(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("/").replace(/\/+/g, "/");
}

/**
 * Creates `dir` and its missing parents durably: mkdir may make several levels, and each is
 * durable only once the directory holding it is synced.
 */
export async function mkdirDurable(disk: Disk, dir: string): Promise<void> {
  await disk.mkdir(dir);
  for (let d = dir;;) {
    const parent = dirname(d);
    await disk.syncDir(parent);
    if (parent === d || parent === "." || parent === "/") break;
    d = parent;
  }
}

/** Reads a whole file. */
export async function readFile(disk: Disk, path: string): Promise<Uint8Array> {
  const file = await disk.open(path);
  try {
    const buf = new Uint8Array(await file.size());
    const n = await file.readAt(0, buf);
    return buf.subarray(0, n);
  } finally {
    file.close();
  }
}

/**
 * Replaces `path` with `bytes` atomically and durably: write a temporary file, sync it, rename it
 * over `path`, sync the directory. After a crash the file holds either the old or the new bytes.
 */
export async function writeFileAtomic(disk: Disk, path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const file: File = await disk.open(tmp, { create: true });
  try {
    await file.truncate(0);
    await file.writeAt(0, bytes);
    await file.sync();
  } finally {
    file.close();
  }
  await disk.rename(tmp, path);
  await disk.syncDir(dirname(path));
}

/** Buffers at least this big are written on their own instead of being copied into a merge. */
const MERGE_BYTES_MAX = 16 * 1024;

/**
 * Writes `buffers` in order, as few writes as is cheap: neighbours smaller than 16 KiB are merged
 * into one write (fewer syscalls), bigger ones go out as they are (no copy). A stand-in for
 * writev, which Deno lacks.
 */
export async function writeAllOf(conn: Conn, buffers: readonly Uint8Array[]): Promise<number> {
  let written = 0;
  let i = 0;
  while (i < buffers.length) {
    let j = i;
    let n = 0;
    while (j < buffers.length && (buffers[j] as Uint8Array).length < MERGE_BYTES_MAX) {
      n += (buffers[j] as Uint8Array).length;
      j++;
    }
    if (j <= i + 1) {
      // A big buffer, or a small one with no small neighbour: written as it is, no copy.
      const b = buffers[i] as Uint8Array;
      await writeAll(conn, b);
      written += b.length;
      i++;
      continue;
    }
    const merged = new Uint8Array(n);
    let off = 0;
    for (let k = i; k < j; k++) {
      merged.set(buffers[k] as Uint8Array, off);
      off += (buffers[k] as Uint8Array).length;
    }
    await writeAll(conn, merged);
    written += n;
    i = j;
  }
  return written;
}
