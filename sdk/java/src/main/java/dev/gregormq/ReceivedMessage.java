package dev.gregormq;

import java.util.List;

/** A delivered message; redelivered if this subscription handed out its offset before. */
public record ReceivedMessage(String topic, int partition, long offset, long timestampMs,
    byte[] key, byte[] value, List<Batch.Header> headers, boolean redelivered) {}
