package dev.gregormq;

import java.util.List;

/**
 * Told when a group member's partitions change. Both methods run on the member's heartbeat thread,
 * so the group waits for them; they must not close the member.
 */
public interface RebalanceListener {
  /** Partitions added to the member, before their messages arrive. */
  default void onAssigned(List<TopicPartition> partitions) {}

  /**
   * Partitions taken away, after their last message was handed out and before they are committed
   * (with auto-commit) and released: commit here when committing by hand.
   */
  default void onRevoked(List<TopicPartition> partitions) {}
}
