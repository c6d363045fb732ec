// Small metadata files (topic configs, committed offsets, producer id blocks, node identity) with a
// checksum, so a bit flipped at rest or on the way back from the disk is caught instead of believed.
// The text stays readable: the content, then one trailer line with its CRC-32C.

import type { Disk } from "../io/types.ts";
import { readFile, writeFileAtomic } from "../io/util.ts";
import { crc32c } from "../protocol/crc32c.ts";

const TRAILER = "\n#crc32c:";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads of a file whose checksum fails before it counts as damaged (a flip may be transient). */
export const CHECKED_REREADS = 4;

/** A checksummed file whose content does not match its checksum on any read. */
export class CorruptFileError extends Error {
  constructor(path: string, why: string) {
    super(`${path} is damaged (${why}); refusing to use it`);
    this.name = "CorruptFileError";
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** Replaces `path` atomically and durably with `text` and its checksum. */
export async function writeChecked(disk: Disk, path: string, text: string): Promise<void> {
  const body = encoder.encode(text);
  await writeFileAtomic(disk, path, encoder.encode(`${text}${TRAILER}${hex(crc32c(body))}\n`));
}

/**
 * The text `writeChecked` stored at `path`. Reads again when the checksum fails; throws
 * CorruptFileError if no read checks out, and the disk's NotFound if there is no file.
 */
export async function readChecked(
  disk: Disk,
  path: string,
  rereads = CHECKED_REREADS,
): Promise<string> {
  let why = "";
  for (let attempt = 0; attempt <= rereads; attempt++) {
    const all = decoder.decode(await readFile(disk, path));
    const at = all.lastIndexOf(TRAILER);
    if (at < 0) {
      why = "no checksum line";
      continue;
    }
    const text = all.slice(0, at);
    const want = all.slice(at + TRAILER.length).trim();
    if (hex(crc32c(encoder.encode(text))) === want) return text;
    why = "checksum mismatch";
  }
  throw new CorruptFileError(path, why);
}
