package dev.gregormq;

/** The connection to a broker ended; requests on it may be sent again on a new connection. */
public class ConnectionLostException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** Says which broker and why. */
  public ConnectionLostException(String message, Throwable cause) {
    super(message, cause);
  }
}
