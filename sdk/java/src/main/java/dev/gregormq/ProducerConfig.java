package dev.gregormq;

/**
 * Producer settings: linger before a batch goes, most records and bytes per batch, the codec,
 * acks (0 none, 1 leader, 2 quorum), whether it is idempotent, how long a message may be retried
 * before it fails, the bytes of messages that may wait for an answer, and how long {@code send}
 * waits for room when that many do (then its future fails with a TimeoutException).
 */
public record ProducerConfig(int lingerMs, int batchRecordsMax, int batchBytesMax, Codec codec,
    int acks, boolean idempotent, int deliveryTimeoutMs, long bufferBytesMax, long maxBlockMs) {

  /**
   * 5 ms linger, 10,000 records or 256 KiB a batch, no compression, acks 1, idempotent, 2 min,
   * 64 MiB waiting for answers, and {@code send} waiting up to 60 s for room.
   */
  public static ProducerConfig defaults() {
    return new ProducerConfig(5, 10_000, 256 * 1024, Codec.NONE, 1, true, 120_000,
        64L * 1024 * 1024, 60_000);
  }

  public ProducerConfig withLingerMs(int v) {
    return new ProducerConfig(v, batchRecordsMax, batchBytesMax, codec, acks, idempotent,
        deliveryTimeoutMs, bufferBytesMax, maxBlockMs);
  }

  public ProducerConfig withBatchRecordsMax(int v) {
    return new ProducerConfig(lingerMs, v, batchBytesMax, codec, acks, idempotent,
        deliveryTimeoutMs, bufferBytesMax, maxBlockMs);
  }

  public ProducerConfig withCodec(Codec v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, v, acks, idempotent,
        deliveryTimeoutMs, bufferBytesMax, maxBlockMs);
  }

  /** acks 0 sends without waiting and so cannot be idempotent. */
  public ProducerConfig withAcks(int v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, v,
        idempotent && v != 0,
        deliveryTimeoutMs, bufferBytesMax, maxBlockMs);
  }

  public ProducerConfig withIdempotent(boolean v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, acks, v,
        deliveryTimeoutMs, bufferBytesMax, maxBlockMs);
  }

  /** The bytes of messages queued and not yet answered, at most (as batchBytesMax counts them). */
  public ProducerConfig withBufferBytesMax(long v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, acks, idempotent,
        deliveryTimeoutMs, v, maxBlockMs);
  }

  /** How long {@code send} waits for room in the buffer before its future fails. */
  public ProducerConfig withMaxBlockMs(long v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, acks, idempotent,
        deliveryTimeoutMs, bufferBytesMax, v);
  }
}
