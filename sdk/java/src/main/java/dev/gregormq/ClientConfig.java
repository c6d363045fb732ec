package dev.gregormq;

import java.util.List;

/**
 * How a client connects. {@code servers} are host:port bootstrap addresses, tried in turn on the
 * first connect and on every reconnect.
 */
public record ClientConfig(List<String> servers, String clientId, byte[] credential,
    int requestTimeoutMs, int connectTimeoutMs, int reconnectBackoffMs) {

  /** Defaults: client id gregormq-java, no credential, 30 s requests, 5 s connects, 50 ms backoff. */
  public static ClientConfig of(List<String> servers) {
    return new ClientConfig(servers, "gregormq-java", null, 30_000, 5_000, 50);
  }

  /** The same config with another request timeout. */
  public ClientConfig withRequestTimeoutMs(int ms) {
    return new ClientConfig(servers, clientId, credential, ms, connectTimeoutMs, reconnectBackoffMs);
  }

  /** The same config presenting a credential in HELLO (e.g. a token). */
  public ClientConfig withCredential(byte[] credentialBytes) {
    return new ClientConfig(servers, clientId, credentialBytes, requestTimeoutMs, connectTimeoutMs,
        reconnectBackoffMs);
  }
}
