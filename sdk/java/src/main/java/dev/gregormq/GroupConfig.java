package dev.gregormq;

/**
 * How a consumer-group member behaves: {@code instanceId} makes it static (a restart with the same
 * id within the session timeout moves nothing; it does not leave on close); the assignor
 * ({@code sticky}, {@code range} or {@code roundrobin}; the group's first member decides); the
 * session timeout after which the broker removes a silent member; auto-commit and its interval;
 * where a partition without a committed offset starts ({@code resetEarliest}: the log start,
 * else the high watermark, Kafka's default); each partition's credit window; the messages of all
 * partitions buffered for {@link GroupConsumer#next}; and the rebalance listener.
 */
public record GroupConfig(String instanceId, String assignor, int sessionTimeoutMs,
    boolean autoCommit, int autoCommitIntervalMs, boolean resetEarliest, int windowMessages,
    int windowBytes, int bufferMessages, RebalanceListener listener) {

  /** A dynamic sticky member, a 10 s session, auto-commit every second, from the latest offset. */
  public static GroupConfig defaults() {
    return new GroupConfig("", "sticky", 10_000, true, 1000, false, 500, 1 << 20, 10_000,
        new RebalanceListener() {});
  }

  public GroupConfig withInstanceId(String v) {
    return new GroupConfig(v, assignor, sessionTimeoutMs, autoCommit, autoCommitIntervalMs,
        resetEarliest, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig withAssignor(String v) {
    return new GroupConfig(instanceId, v, sessionTimeoutMs, autoCommit, autoCommitIntervalMs,
        resetEarliest, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig withSessionTimeoutMs(int v) {
    return new GroupConfig(instanceId, assignor, v, autoCommit, autoCommitIntervalMs,
        resetEarliest, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig withAutoCommit(boolean v) {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, v, autoCommitIntervalMs,
        resetEarliest, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig withAutoCommitIntervalMs(int v) {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit, v,
        resetEarliest, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig fromEarliest() {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit,
        autoCommitIntervalMs, true, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig fromLatest() {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit,
        autoCommitIntervalMs, false, windowMessages, windowBytes, bufferMessages, listener);
  }

  public GroupConfig withWindow(int messages, int bytes) {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit,
        autoCommitIntervalMs, resetEarliest, messages, bytes, bufferMessages, listener);
  }

  public GroupConfig withBufferMessages(int v) {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit,
        autoCommitIntervalMs, resetEarliest, windowMessages, windowBytes, v, listener);
  }

  public GroupConfig withListener(RebalanceListener v) {
    return new GroupConfig(instanceId, assignor, sessionTimeoutMs, autoCommit,
        autoCommitIntervalMs, resetEarliest, windowMessages, windowBytes, bufferMessages, v);
  }
}
