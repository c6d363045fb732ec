package dev.gregormq;

/** The broker's error codes (docs/protocol.md, "Error codes"). */
public enum ErrorCode {
  INTERNAL(1), MALFORMED_FRAME(2), UNSUPPORTED_VERSION(3), UNKNOWN_OPCODE(4), FRAME_TOO_LARGE(5),
  MALFORMED_REQUEST(6), HANDSHAKE_REQUIRED(7), AUTHENTICATION_FAILED(8), INVALID_REQUEST(9),
  UNKNOWN_TOPIC(10), TOPIC_EXISTS(11), INVALID_TOPIC(12), UNKNOWN_PARTITION(13),
  CORRUPT_BATCH(14), BATCH_TOO_LARGE(15), OFFSET_OUT_OF_RANGE(16), UNKNOWN_SUBSCRIPTION(17),
  SUBSCRIPTION_EXISTS(18), LIMIT_EXCEEDED(19), UNSUPPORTED_CODEC(20), STORAGE_ERROR(21),
  TIMEOUT(22), NOT_LEADER(23), SUBSCRIPTION_IN_USE(24), SHUTTING_DOWN(25), UNKNOWN_MEMBER(26),
  STALE_GENERATION(27), FENCED_INSTANCE(28), GROUP_NOT_EMPTY(29), OUT_OF_ORDER_SEQUENCE(30),
  PRODUCER_FENCED(31), INVALID_OFFSET(32), DUPLICATE_SEQUENCE(33), PARTITION_DAMAGED(34),
  AUTHORIZATION_FAILED(35);

  private final int code;

  ErrorCode(int code) {
    this.code = code;
  }

  /** The code on the wire. */
  public int code() {
    return code;
  }

  /** Whether the same request may succeed if sent again. */
  public boolean retriable() {
    switch (this) {
      case STORAGE_ERROR:
      case TIMEOUT:
      case NOT_LEADER:
      case LIMIT_EXCEEDED:
      case SHUTTING_DOWN:
      case OUT_OF_ORDER_SEQUENCE:
        return true;
      default:
        return false;
    }
  }

  /** The code with this wire value, or null for one this SDK does not know. */
  public static ErrorCode of(int code) {
    for (ErrorCode c : values()) {
      if (c.code == code) {
        return c;
      }
    }
    return null;
  }
}
