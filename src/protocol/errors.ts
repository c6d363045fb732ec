// Error codes of the wire protocol and the typed errors that carry them. Every error that crosses
// the wire is a `GregorError` whose `code` maps one-to-one to a protocol error code.

/** Stable protocol error codes (u16 on the wire). Never renumber; only add. */
export const ErrorCode = {
  /** An unexpected failure inside the broker. */
  INTERNAL: 1,
  /** Bad magic or header checksum: the byte stream cannot be trusted any more. Closes. */
  MALFORMED_FRAME: 2,
  /** The frame's protocol version is not spoken. Closes. */
  UNSUPPORTED_VERSION: 3,
  /** The opcode is unknown. Closes. */
  UNKNOWN_OPCODE: 4,
  /** The frame's payload is over the negotiated limit. Closes, before reading the payload. */
  FRAME_TOO_LARGE: 5,
  /** The payload does not decode as the opcode's request. */
  MALFORMED_REQUEST: 6,
  /** A request came before HELLO. Closes. */
  HANDSHAKE_REQUIRED: 7,
  /** The credential was refused. Closes. */
  AUTHENTICATION_FAILED: 8,
  /** A request's values are out of range or contradict each other. */
  INVALID_REQUEST: 9,
  /** The topic does not exist (and was not auto-created). */
  UNKNOWN_TOPIC: 10,
  /** A topic of that name exists already. */
  TOPIC_EXISTS: 11,
  /** The topic name is not allowed. */
  INVALID_TOPIC: 12,
  /** The partition does not exist in the topic. */
  UNKNOWN_PARTITION: 13,
  /** A record batch failed its checksum or its structure is wrong. */
  CORRUPT_BATCH: 14,
  /** A record batch is over the topic's batch size limit. */
  BATCH_TOO_LARGE: 15,
  /** The requested offset is before the earliest or after the latest offset. */
  OFFSET_OUT_OF_RANGE: 16,
  /** No subscription with that id on this connection. */
  UNKNOWN_SUBSCRIPTION: 17,
  /** The subscription id is in use on this connection. */
  SUBSCRIPTION_EXISTS: 18,
  /** A broker limit (connections, subscriptions, queued bytes) was reached. */
  LIMIT_EXCEEDED: 19,
  /** The compression codec is unknown or unavailable. */
  UNSUPPORTED_CODEC: 20,
  /** The storage layer failed; the request had no effect, or an unknown one if it was a write. */
  STORAGE_ERROR: 21,
  /** The request did not complete in time. */
  TIMEOUT: 22,
  /** This node does not lead the partition; ask the metadata for the leader. */
  NOT_LEADER: 23,
  /** The durable subscription is in use by another connection. */
  SUBSCRIPTION_IN_USE: 24,
  /** The broker is shutting down. */
  SHUTTING_DOWN: 25,
  /** The group does not know the member id (it left, or its session timed out); join again. */
  UNKNOWN_MEMBER: 26,
  /** The request names a generation the group has left behind, or a partition the member no
   * longer owns; heartbeat to learn the current generation and assignment. */
  STALE_GENERATION: 27,
  /** Another process joined with this static instance id; this one is fenced off. */
  FENCED_INSTANCE: 28,
  /** The group has live members; the operation needs an empty group. */
  GROUP_NOT_EMPTY: 29,
  /** An idempotent batch's sequence is past the next expected one: an earlier batch is missing. */
  OUT_OF_ORDER_SEQUENCE: 30,
  /** A newer epoch of this producer id exists; this producer is fenced off. */
  PRODUCER_FENCED: 31,
  /** A committed offset would move backwards, or lies outside the partition. */
  INVALID_OFFSET: 32,
  /** An idempotent batch was stored before, longer ago than the broker remembers its offset. */
  DUPLICATE_SEQUENCE: 33,
  /**
   * The partition's log failed its checks from some offset on: reads from there and appends are
   * refused until an operator repairs it (REPAIR_PARTITIONS); or the topic's metadata could not be
   * loaded at start, and the topic is refused until an operator fixes it. Retrying does not help.
   */
  PARTITION_DAMAGED: 34,
  /** The authenticated principal may not do this operation on this resource (the ACLs). */
  AUTHORIZATION_FAILED: 35,
} as const;

/** The name of a protocol error code. */
export type ErrorName = keyof typeof ErrorCode;
/** A protocol error code. */
export type ErrorCodeValue = typeof ErrorCode[ErrorName];

const NAMES = new Map<number, ErrorName>(
  (Object.entries(ErrorCode) as [ErrorName, number][]).map(([name, code]) => [code, name]),
);

/** The name of `code`, or null if it is not a known code. */
export function errorName(code: number): ErrorName | null {
  return NAMES.get(code) ?? null;
}

/** Error codes after which the broker closes the connection. */
export const FATAL_CODES: ReadonlySet<number> = new Set([
  ErrorCode.MALFORMED_FRAME,
  ErrorCode.UNSUPPORTED_VERSION,
  ErrorCode.UNKNOWN_OPCODE,
  ErrorCode.FRAME_TOO_LARGE,
  ErrorCode.HANDSHAKE_REQUIRED,
  ErrorCode.AUTHENTICATION_FAILED,
]);

/** Error codes a client may retry unchanged, perhaps after reconnecting. */
export const RETRIABLE_CODES: ReadonlySet<number> = new Set([
  ErrorCode.STORAGE_ERROR,
  ErrorCode.TIMEOUT,
  ErrorCode.NOT_LEADER,
  ErrorCode.LIMIT_EXCEEDED,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.OUT_OF_ORDER_SEQUENCE,
]);

/** An error with a protocol error code; what the broker sends and what the client throws. */
export class GregorError extends Error {
  /** The protocol error code. */
  readonly code: number;

  constructor(code: ErrorCodeValue | number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "GregorError";
  }

  /** The code's name, e.g. "UNKNOWN_TOPIC". */
  get codeName(): string {
    return errorName(this.code) ?? `CODE_${this.code}`;
  }

  /** True if the same request may succeed when retried. */
  get retriable(): boolean {
    return RETRIABLE_CODES.has(this.code);
  }
}

/** A payload or batch that does not decode: thrown by the pure decoders. */
export class MalformedError extends GregorError {
  constructor(message: string) {
    super(ErrorCode.MALFORMED_REQUEST, message);
    this.name = "MalformedError";
  }
}
