package dev.gregormq;

import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * A message to send. A null partition picks one: by the key's murmur2 hash if there is a key,
 * else the producer's sticky partition. A timestamp of 0 means now.
 */
public record Message(byte[] key, byte[] value, List<Batch.Header> headers, long timestampMs,
    Integer partition) {

  /** A message with just a value. */
  public static Message of(String value) {
    return new Message(null, value.getBytes(StandardCharsets.UTF_8), List.of(), 0, null);
  }

  /** A keyed message. */
  public static Message of(String key, String value) {
    return new Message(key == null ? null : key.getBytes(StandardCharsets.UTF_8),
        value.getBytes(StandardCharsets.UTF_8), List.of(), 0, null);
  }
}
