// Codec ids and names, and the door to the codec libraries: compression.ts holds them and is big
// to load (node:zlib, snappyjs, lz4-wasm), so a process loads it only once a compressed batch is
// to be written or read (`loadCodecs`). Importing compression.ts anywhere installs it here.

import { ErrorCode, GregorError } from "./errors.ts";

/** Codec ids as stored in bits 0-2 of a record batch's attributes (Kafka's numbering). */
export const Codec = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;
/** The name of a codec. */
export type CodecName = keyof typeof Codec;
/** A codec id. */
export type CodecId = typeof Codec[CodecName];

/** Every codec name, in id order. */
export const CODEC_NAMES: readonly CodecName[] = Object.freeze(
  (Object.keys(Codec) as CodecName[]).sort((a, b) => Codec[a] - Codec[b]),
);

/**
 * The ceiling on any decompressed output, whatever limit the caller passes: a batch's own length
 * is an int32, and snappyjs reads a declared length of 2 GiB or more as a negative number.
 */
export const DECOMPRESSED_BYTES_CEILING = 0x7fff_ffff;

/** Thrown by `decompress` for corrupt input or output over the limit. */
export class CompressionError extends Error {
  /** The codec that failed. */
  readonly codec: CodecName;

  constructor(codec: CodecName, message: string, options?: ErrorOptions) {
    super(message, options);
    this.codec = codec;
    this.name = "CompressionError";
  }
}

/**
 * The name of a codec id, or null if the id is not a known codec.
 *
 * @example
 * ```ts
 * import { codecName } from "./codecs.ts";
 * codecName(3); // "lz4"
 * codecName(7); // null
 * ```
 */
export function codecName(id: number): CodecName | null {
  return CODEC_NAMES[id] ?? null;
}

/** What compression.ts provides once loaded. */
export interface CodecLibraries {
  compress(id: CodecId, bytes: Uint8Array): Uint8Array;
  decompress(id: CodecId, bytes: Uint8Array, outputBytesMax: number): Uint8Array;
}

/**
 * The codec libraries of this process, once loaded. Process-wide like the module cache it mirrors:
 * the same code for every node, set once, never changed after.
 */
const libraries: { loaded: CodecLibraries | null; loading: Promise<void> | null } = {
  loaded: null,
  loading: null,
};

/** Called by compression.ts as it is evaluated. */
export function installCodecs(codecs: CodecLibraries): void {
  libraries.loaded ??= codecs;
}

/** True once the codec libraries are loaded: `compressBytes` and `decompressBytes` work. */
export function codecsLoaded(): boolean {
  return libraries.loaded !== null;
}

/**
 * Loads the codec libraries. Resolves at once if they are loaded; every call while they load gets
 * the same promise, so callers waiting on it resume in the order they asked.
 */
export function loadCodecs(): Promise<void> {
  libraries.loading ??= libraries.loaded !== null
    ? Promise.resolve()
    : import("./compression.ts").then(() => {
      if (libraries.loaded === null) throw new Error("compression.ts did not install its codecs");
    });
  return libraries.loading;
}

/** Thrown when a codec is needed before `loadCodecs()` finished: a caller forgot to wait. */
export class CodecsNotLoaded extends GregorError {
  constructor(id: number) {
    super(
      ErrorCode.UNSUPPORTED_CODEC,
      `The ${codecName(id) ?? id} codec is not loaded yet (await loadCodecs() first)`,
    );
    this.name = "CodecsNotLoaded";
  }
}

/** compression.ts's `compress`; codec none needs no library. */
export function compressBytes(id: CodecId, bytes: Uint8Array): Uint8Array {
  if (id === Codec.none) return bytes;
  if (libraries.loaded === null) throw new CodecsNotLoaded(id);
  return libraries.loaded.compress(id, bytes);
}

/** compression.ts's `decompress`. */
export function decompressBytes(
  id: CodecId,
  bytes: Uint8Array,
  outputBytesMax: number,
): Uint8Array {
  if (libraries.loaded === null) throw new CodecsNotLoaded(id);
  return libraries.loaded.decompress(id, bytes, outputBytesMax);
}
