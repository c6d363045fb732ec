package dev.gregormq;

/**
 * An error the broker answered with, or one this SDK raises with a protocol code (such as
 * CORRUPT_BATCH for a batch that fails its checks). Carries the code's number and name and
 * whether retrying may help.
 */
public class GregorException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final int code;
  private final ErrorCode errorCode;

  /** An error with a known code. */
  public GregorException(ErrorCode code, String message) {
    super(code.name() + ": " + message);
    this.code = code.code();
    this.errorCode = code;
  }

  /** An error as the broker sent it: its code may be one this SDK does not know. */
  public GregorException(int code, String message) {
    super(name(code) + ": " + message);
    this.code = code;
    this.errorCode = ErrorCode.of(code);
  }

  private static String name(int code) {
    ErrorCode c = ErrorCode.of(code);
    return c == null ? "ERROR_" + code : c.name();
  }

  /** The code on the wire. */
  public int code() {
    return code;
  }

  /** The code's protocol name (e.g. TOPIC_EXISTS), or ERROR_n for an unknown code. */
  public String codeName() {
    return name(code);
  }

  /** The code, or null for one this SDK does not know. */
  public ErrorCode errorCode() {
    return errorCode;
  }

  /** Whether the same request may succeed if sent again. */
  public boolean retriable() {
    return errorCode != null && errorCode.retriable();
  }
}
