package dev.gregormq;

/**
 * How to subscribe: the partition; where to start ({@code start} 0 earliest, 1 latest, 2 the
 * offset in {@code startValue}, 3 the first batch at or after the timestamp in startValue); a
 * durable name (its acknowledged position is kept by the broker and wins over start); the ack
 * timeout after which unacknowledged messages come again (noAcks: never); the credit window.
 */
public record SubscribeConfig(int partition, int start, long startValue, String durable,
    int ackTimeoutMs, boolean noAcks, int windowMessages, int windowBytes) {
  public static final int EARLIEST = 0;
  public static final int LATEST = 1;
  public static final int OFFSET = 2;
  public static final int TIMESTAMP = 3;

  /** Partition 0 from the latest offset, acks with a 30 s timeout, a window of 1000 / 1 MiB. */
  public static SubscribeConfig defaults() {
    return new SubscribeConfig(0, LATEST, 0, "", 30_000, false, 1000, 1 << 20);
  }

  public SubscribeConfig withPartition(int v) {
    return new SubscribeConfig(v, start, startValue, durable, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig fromEarliest() {
    return new SubscribeConfig(partition, EARLIEST, 0, durable, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig fromLatest() {
    return new SubscribeConfig(partition, LATEST, 0, durable, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig fromOffset(long offset) {
    return new SubscribeConfig(partition, OFFSET, offset, durable, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig fromTimestamp(long ms) {
    return new SubscribeConfig(partition, TIMESTAMP, ms, durable, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig withDurable(String name) {
    return new SubscribeConfig(partition, start, startValue, name, ackTimeoutMs, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig withAckTimeoutMs(int v) {
    return new SubscribeConfig(partition, start, startValue, durable, v, noAcks, windowMessages, windowBytes);
  }

  public SubscribeConfig withNoAcks(boolean v) {
    return new SubscribeConfig(partition, start, startValue, durable, ackTimeoutMs, v, windowMessages, windowBytes);
  }

  public SubscribeConfig withWindowMessages(int v) {
    return new SubscribeConfig(partition, start, startValue, durable, ackTimeoutMs, noAcks, v, windowBytes);
  }

  public SubscribeConfig withWindowBytes(int v) {
    return new SubscribeConfig(partition, start, startValue, durable, ackTimeoutMs, noAcks, windowMessages, v);
  }
}
