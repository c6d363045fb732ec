// Frames: a fixed 20-byte header (magic, version, flags, opcode, correlation id, payload length,
// header checksum) and a payload. FrameParser is a resumable state machine that accepts any
// chunking of the byte stream and rejects an oversized frame before buffering its payload.

import { crc32c } from "./crc32c.ts";
import { ErrorCode, MalformedError } from "./errors.ts";
import type { Conn } from "../io/types.ts";

/** "GM": the first two bytes of every frame. */
export const MAGIC = 0x474d;
/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;
/** Header bytes before the payload. */
export const HEADER_BYTES = 20;
/** Bytes of the header covered by its checksum (everything before the checksum). */
const HEADER_CHECKED_BYTES = 16;
/** Default largest payload, in bytes; the handshake may lower it. */
export const FRAME_PAYLOAD_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;

/** Header flags. */
export const Flag = {
  /** The frame answers the request with the same correlation id. */
  RESPONSE: 0x01,
  /** The response payload is an error: u16 code + string message. */
  ERROR: 0x02,
  /** Sent by the broker without a request (a delivery); correlation id 0. */
  PUSH: 0x04,
} as const;

/** A decoded frame header. */
export interface FrameHeader {
  version: number;
  flags: number;
  opcode: number;
  correlationId: number;
  payloadLength: number;
}

/** A whole frame. */
export interface Frame extends FrameHeader {
  payload: Uint8Array;
}

/** Encodes a frame. The payload is copied once, after the header. */
export function encodeFrame(
  opcode: number,
  correlationId: number,
  payload: Uint8Array,
  flags = 0,
): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  writeHeader(out, {
    version: PROTOCOL_VERSION,
    flags,
    opcode,
    correlationId,
    payloadLength: payload.length,
  });
  out.set(payload, HEADER_BYTES);
  return out;
}

/** Writes a header for a payload of `h.payloadLength` bytes into the first 20 bytes of `out`. */
export function writeHeader(out: Uint8Array, h: FrameHeader): void {
  const dv = new DataView(out.buffer, out.byteOffset, HEADER_BYTES);
  dv.setUint16(0, MAGIC);
  dv.setUint8(2, h.version);
  dv.setUint8(3, h.flags);
  dv.setUint16(4, h.opcode);
  dv.setUint16(6, 0);
  dv.setUint32(8, h.correlationId);
  dv.setUint32(12, h.payloadLength);
  dv.setUint32(16, crc32c(out.subarray(0, HEADER_CHECKED_BYTES)));
}

/** What `FrameParser.next` found. */
export type ParseResult =
  | { kind: "frame"; frame: Frame }
  | { kind: "need" }
  | { kind: "error"; code: number; message: string; correlationId: number };

/** Options for a FrameParser. */
export interface FrameParserOptions {
  /** Largest payload accepted; a bigger frame is an error before its payload is read. */
  payloadBytesMax: number;
}

/** A payload at least this big is read straight into its own buffer (see `readTarget`). */
export const DIRECT_PAYLOAD_BYTES_MIN = 64 * 1024;
/** The first size of a payload buffer read into directly; it doubles as bytes arrive. */
const DIRECT_BUFFER_BYTES_INITIAL = 256 * 1024;

/**
 * Reassembles frames from chunks of a byte stream. `push` takes ownership of each chunk (frames may
 * be views into it), so a caller must not reuse a buffer it pushed. After an error the parser
 * stays failed: the stream cannot be trusted past a bad header.
 *
 * A reader may instead ask `readTarget()` for where the next bytes should go: for a big payload
 * whose header has arrived that is the rest of the payload's own buffer, so its bytes are read in
 * place (no copy of each read, no reassembly); the buffer grows as bytes arrive, so a peer that
 * announces a big frame and sends little costs no more memory than it sent (times two).
 */
export class FrameParser {
  #payloadBytesMax: number;
  #chunks: Uint8Array[] = [];
  /** Bytes of `#chunks[0]` already taken (a position rather than a new view per frame taken). */
  #head = 0;
  #buffered = 0;
  #header: FrameHeader | null = null;
  #failed: ParseResult | null = null;
  /** The payload being read in place, and how much of it has arrived. */
  #direct: Uint8Array | null = null;
  #directFilled = 0;

  constructor(opts: FrameParserOptions) {
    this.#payloadBytesMax = opts.payloadBytesMax;
  }

  /**
   * Sets the largest payload of the frames whose headers are still to come (a broker allows a
   * connection only a small HELLO until the handshake completes).
   */
  setPayloadBytesMax(bytes: number): void {
    this.#payloadBytesMax = bytes;
  }

  /** Bytes held and not yet returned as frames. */
  get buffered(): number {
    return this.#buffered + this.#directFilled;
  }

  /** Adds bytes read from the stream. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#direct !== null) {
      throw new RangeError("push() while a payload is read in place: read into readTarget()");
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * Where the caller should read the next bytes into, then report them with `filled`: a view of
   * the current big payload's buffer (at most the bytes it still lacks), or null to read into
   * its own buffer and `push` as usual.
   */
  readTarget(): Uint8Array | null {
    const header = this.#header;
    if (this.#failed !== null || header === null) return null;
    const length = header.payloadLength;
    if (this.#direct === null) {
      if (length < DIRECT_PAYLOAD_BYTES_MIN || this.#buffered >= length) return null;
      const have = this.#buffered;
      this.#direct = new Uint8Array(Math.min(length, Math.max(DIRECT_BUFFER_BYTES_INITIAL, have)));
      this.#directFilled = have;
      if (have > 0) this.#direct.set(this.#take(have));
    }
    if (this.#directFilled === this.#direct.length && this.#direct.length < length) {
      const grown = new Uint8Array(Math.min(length, this.#direct.length * 2));
      grown.set(this.#direct);
      this.#direct = grown;
    }
    return this.#direct.subarray(this.#directFilled, Math.min(this.#direct.length, length));
  }

  /** Reports `n` bytes read into the view `readTarget` returned. */
  filled(n: number): void {
    const target = this.#direct;
    if (target === null || n < 0 || this.#directFilled + n > target.length) {
      throw new RangeError(`filled(${n}) does not match the read target`);
    }
    this.#directFilled += n;
  }

  /** The next frame, "need" if more bytes are required, or a (sticky) error. */
  next(): ParseResult {
    if (this.#failed !== null) return this.#failed;
    if (this.#direct !== null) {
      const header = this.#header as FrameHeader;
      if (this.#directFilled < header.payloadLength) return NEED;
      const payload = this.#direct;
      this.#direct = null;
      this.#directFilled = 0;
      this.#header = null;
      return { kind: "frame", frame: withPayload(header, payload) };
    }
    if (this.#header === null) {
      if (this.#buffered < HEADER_BYTES) return NEED;
      const raw = this.#take(HEADER_BYTES);
      const h = this.#decodeHeader(raw);
      if (h.kind === "error") return (this.#failed = h);
      this.#header = h.header;
    }
    const header = this.#header;
    if (this.#buffered < header.payloadLength) return NEED;
    this.#header = null;
    return {
      kind: "frame",
      frame: withPayload(header, this.#take(header.payloadLength)),
    };
  }

  #decodeHeader(
    raw: Uint8Array,
  ): { kind: "ok"; header: FrameHeader } | {
    kind: "error";
    code: number;
    message: string;
    correlationId: number;
  } {
    const magic = u16At(raw, 0);
    if (magic !== MAGIC) {
      return bad(
        ErrorCode.MALFORMED_FRAME,
        `Bad magic 0x${magic.toString(16).padStart(4, "0")}`,
        0,
      );
    }
    if (u32At(raw, 16) !== crc32c(raw.subarray(0, HEADER_CHECKED_BYTES))) {
      return bad(ErrorCode.MALFORMED_FRAME, "Frame header checksum mismatch", 0);
    }
    const header: FrameHeader = {
      version: raw[2]!,
      flags: raw[3]!,
      opcode: u16At(raw, 4),
      correlationId: u32At(raw, 8),
      payloadLength: u32At(raw, 12),
    };
    if (header.version !== PROTOCOL_VERSION) {
      return bad(
        ErrorCode.UNSUPPORTED_VERSION,
        `Protocol version ${header.version} is not supported (this broker speaks ${PROTOCOL_VERSION})`,
        header.correlationId,
      );
    }
    if (u16At(raw, 6) !== 0) {
      return bad(
        ErrorCode.MALFORMED_FRAME,
        "Reserved header bytes are not zero",
        header.correlationId,
      );
    }
    if (header.payloadLength > this.#payloadBytesMax) {
      return bad(
        ErrorCode.FRAME_TOO_LARGE,
        `Frame payload of ${header.payloadLength} bytes is over the limit of ${this.#payloadBytesMax}`,
        header.correlationId,
      );
    }
    return { kind: "ok", header };
  }

  /** Removes and returns the first `n` buffered bytes; a view when they sit in one chunk. */
  #take(n: number): Uint8Array {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#skip(first, n);
      return out;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0] as Uint8Array;
      const k = Math.min(c.length - this.#head, n - off);
      out.set(c.subarray(this.#head, this.#head + k), off);
      off += k;
      this.#skip(c, k);
    }
    return out;
  }

  /** Marks `k` more bytes of `first` (the first chunk) taken. */
  #skip(first: Uint8Array, k: number): void {
    this.#head += k;
    if (this.#head === first.length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}

/** A frame of `header` and `payload`: a literal of one shape, not a spread, on every frame read. */
function withPayload(header: FrameHeader, payload: Uint8Array): Frame {
  return {
    version: header.version,
    flags: header.flags,
    opcode: header.opcode,
    correlationId: header.correlationId,
    payloadLength: header.payloadLength,
    payload,
  };
}

/** The big-endian u16 at `at` of `b`. */
function u16At(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

/** The big-endian u32 at `at` of `b`. */
function u32At(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

const NEED: ParseResult = { kind: "need" };

function bad(
  code: number,
  message: string,
  correlationId: number,
): { kind: "error"; code: number; message: string; correlationId: number } {
  return { kind: "error", code, message, correlationId };
}

/**
 * The next whole frame read from `conn` through `parser`, or null at end of stream; `onRead` is told
 * the size of every read (for byte counters, or to acknowledge a big frame as it comes in). `buf` is
 * the read buffer, reused: the parser gets a copy of just the bytes read, so the frames it hands on
 * (views into what it holds) do not pin the whole buffer.
 * @throws {MalformedError} for bytes that are not a frame
 */
export async function readFrame(
  conn: Pick<Conn, "read">,
  parser: FrameParser,
  buf: Uint8Array,
  onRead: (bytes: number) => void = () => {},
): Promise<Frame | null> {
  for (;;) {
    const r = parser.next();
    if (r.kind === "frame") return r.frame;
    if (r.kind === "error") throw new MalformedError(r.message);
    const n = await conn.read(buf);
    if (n === null) return null;
    onRead(n);
    parser.push(buf.slice(0, n));
  }
}
