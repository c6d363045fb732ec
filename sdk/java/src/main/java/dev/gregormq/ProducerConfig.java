package dev.gregormq;

/**
 * Producer settings: linger before a batch goes, most records and bytes per batch, the codec,
 * acks (0 none, 1 leader, 2 quorum), whether it is idempotent, and how long a message may be
 * retried before it fails.
 */
public record ProducerConfig(int lingerMs, int batchRecordsMax, int batchBytesMax, Codec codec,
    int acks, boolean idempotent, int deliveryTimeoutMs) {

  /** 5 ms linger, 10,000 records or 256 KiB a batch, no compression, acks 1, idempotent, 2 min. */
  public static ProducerConfig defaults() {
    return new ProducerConfig(5, 10_000, 256 * 1024, Codec.NONE, 1, true, 120_000);
  }

  public ProducerConfig withLingerMs(int v) {
    return new ProducerConfig(v, batchRecordsMax, batchBytesMax, codec, acks, idempotent, deliveryTimeoutMs);
  }

  public ProducerConfig withBatchRecordsMax(int v) {
    return new ProducerConfig(lingerMs, v, batchBytesMax, codec, acks, idempotent, deliveryTimeoutMs);
  }

  public ProducerConfig withCodec(Codec v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, v, acks, idempotent, deliveryTimeoutMs);
  }

  /** acks 0 sends without waiting and so cannot be idempotent. */
  public ProducerConfig withAcks(int v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, v, idempotent && v != 0,
        deliveryTimeoutMs);
  }

  public ProducerConfig withIdempotent(boolean v) {
    return new ProducerConfig(lingerMs, batchRecordsMax, batchBytesMax, codec, acks, v, deliveryTimeoutMs);
  }
}
