package dev.gregormq;

import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A subscription to one partition with credit-based flow control: the broker pushes at most the
 * window; each message taken with {@link #next} earns its credit back, returned in one CREDIT
 * frame once half the window is owed. After a lost connection it subscribes again on the next
 * connection from the first unacknowledged offset (or, with noAcks, the next unread one). In a
 * cluster it subscribes where the partition is served: a node that answers NOT_LEADER is left
 * for the partition's leader.
 */
public final class Subscription implements AutoCloseable {
  private final Client client;
  private final String topic;
  private final SubscribeConfig cfg;
  /** The offset the subscription started at, as the broker chose it. */
  public final long startOffset;

  private final ArrayDeque<ReceivedMessage> queue = new ArrayDeque<>();
  private final ArrayDeque<int[]> credits = new ArrayDeque<>(); // per delivery: {left, bytes}
  private Connection conn;
  private long id;
  private int owedMessages;
  private int owedBytes;
  private long next;
  private long handedOut = -1;
  private long recvNext;
  private long acked = -1;
  private RuntimeException lost;
  /** When a resubscription meeting NOT_LEADER gives up (epoch ms); 0 while none is under way. */
  private long resumeGivesUpAt;
  private boolean closed;

  Subscription(Client client, String topic, SubscribeConfig cfg) {
    this.client = client;
    this.topic = topic;
    this.cfg = cfg;
    open(cfg.start(), cfg.startValue(), System.currentTimeMillis() + client.cfg.requestTimeoutMs());
    synchronized (this) {
      this.startOffset = next;
    }
  }

  /**
   * How long a subscription resuming after a lost connection keeps asking while the nodes answer
   * NOT_LEADER (a leader being elected, a replica catching up after a restart), at most.
   */
  static final long RESUBSCRIBE_NOT_LEADER_MS = 60_000;

  /**
   * The pause before asking again after the attempt-th NOT_LEADER: 100 ms more each time, at most
   * 1 s (a leader is elected, or a replica catches up, within seconds).
   */
  static long notLeaderPauseMs(int attempt) {
    return Math.min(100L * attempt, 1_000L);
  }

  /**
   * Subscribes where the partition is served. In a cluster only the partition's leader, or a
   * replica keeping up with it, serves reads; another node answers NOT_LEADER (docs/protocol.md
   * §8.2). Then the subscription goes to the leader the cluster's metadata names, asking again
   * with a growing pause while none is known or it refuses too, until deadline (epoch ms).
   */
  private void open(int from, long value, long deadline) {
    Connection c = client.connection();
    for (int attempt = 1; ; attempt++) {
      try {
        start(c, from, value);
        return;
      } catch (GregorException e) {
        if (e.errorCode() != ErrorCode.NOT_LEADER || System.currentTimeMillis() >= deadline) {
          throw e;
        }
      }
      Connection next = client.leaderConnection(topic, cfg.partition());
      if (next == null) {
        next = client.connection();
      }
      // Straight to a newly named leader; the same node again waits a little first.
      if (next == c || attempt > 1) {
        Client.sleep(notLeaderPauseMs(attempt));
      }
      c = next;
    }
  }

  private void start(Connection c, int from, long value) {
    long sid = client.nextSubscriptionId.incrementAndGet();
    synchronized (this) {
      conn = c;
      id = sid;
      queue.clear();
      credits.clear();
      owedMessages = 0;
      owedBytes = 0;
      lost = null;
      // The reader may hand over this subscription's first deliveries before the SUBSCRIBE answer
      // is read: they must not be judged against the last subscription's position (a resumed
      // subscription would drop them all, and the credit they took would never come back).
      recvNext = 0;
    }
    c.addSubscription(sid, m -> onDeliver(sid, m), () -> onLost(c));
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("subscriptionId", sid);
    m.put("topic", topic);
    m.put("partition", (long) cfg.partition());
    m.put("start", (long) from);
    m.put("startValue", value);
    m.put("durableName", cfg.durable() == null ? "" : cfg.durable());
    m.put("ackTimeoutMs", cfg.noAcks() ? 0L : (long) cfg.ackTimeoutMs());
    m.put("creditMessages", (long) cfg.windowMessages());
    m.put("creditBytes", (long) cfg.windowBytes());
    Map<String, Object> resp;
    try {
      resp = c.request(Protocol.SUBSCRIBE, m).get(client.cfg.requestTimeoutMs(), TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.TimeoutException e) {
      c.removeSubscription(sid);
      throw new GregorException(ErrorCode.TIMEOUT, "SUBSCRIBE got no answer from " + c.addr);
    } catch (Exception e) {
      c.removeSubscription(sid);
      throw Client.unwrap(e);
    }
    synchronized (this) {
      next = (Long) resp.get("startOffset");
      recvNext = Math.max(recvNext, next);
    }
  }

  private synchronized void onDeliver(long sid, Map<String, Object> m) {
    if (sid != id) {
      return;
    }
    long first = (Long) m.get("firstOffset");
    boolean redelivery = (Long) m.get("redelivery") == 1;
    byte[] raw = (byte[]) m.get("records");
    List<Batch> batches;
    try {
      batches = Batch.decodeAll(raw == null ? new byte[0] : raw, 64 << 20);
    } catch (GregorException e) {
      lost = new GregorException(ErrorCode.CORRUPT_BATCH,
          "a delivery for " + topic + "/" + cfg.partition() + " does not decode: " + e.getMessage());
      notifyAll();
      return;
    }
    if (redelivery) {
      int before = queue.size();
      queue.removeIf(q -> q.offset() >= first);
      owedMessages += before - queue.size();
      for (int[] c : credits) {
        c[0] = 0;
      }
      recvNext = Math.min(recvNext, first);
    }
    int n = 0;
    int skipped = 0;
    for (Batch b : batches) {
      for (Batch.Record r : b.records()) {
        if (r.offset() < first) {
          continue; // before the offset asked for: in the batch, not charged to the window
        }
        if (r.offset() < recvNext) {
          // Seen already: never handed out, but the broker charged the window for it, so its
          // credit goes back (or redeliveries drain the window and the subscription stalls).
          skipped++;
          continue;
        }
        recvNext = r.offset() + 1;
        queue.add(new ReceivedMessage(topic, cfg.partition(), r.offset(), r.timestamp(), r.key(),
            r.value(), r.headers(), r.offset() <= handedOut));
        n++;
      }
    }
    credits.add(new int[] {n, raw == null ? 0 : raw.length});
    owedMessages += skipped;
    if (n == 0 || skipped > 0) {
      payBack();
    }
    notifyAll();
  }

  private synchronized void onLost(Connection c) {
    if (conn == c) {
      lost = new ConnectionLostException(c.addr + ": connection lost", null);
      notifyAll();
    }
  }

  private void payBack() {
    while (!credits.isEmpty() && credits.peek()[0] == 0) {
      owedBytes += credits.poll()[1];
    }
    if (owedMessages * 2 >= cfg.windowMessages() || owedBytes * 2 >= cfg.windowBytes()) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("subscriptionId", id);
      m.put("messages", (long) owedMessages);
      m.put("bytes", (long) owedBytes);
      try {
        conn.sendOneWay(Protocol.CREDIT, m);
      } catch (RuntimeException e) {
        // The connection is gone; the resubscribe after it grants a fresh window.
      }
      owedMessages = 0;
      owedBytes = 0;
    }
  }

  /**
   * The next message, waiting up to timeoutMs; null if none came in time. Resubscribes on a new
   * connection if the old one dropped.
   */
  public ReceivedMessage next(long timeoutMs) throws InterruptedException {
    long deadline = System.currentTimeMillis() + timeoutMs;
    while (true) {
      RuntimeException why;
      synchronized (this) {
        if (closed) {
          throw new IllegalStateException("the subscription is closed");
        }
        if (!queue.isEmpty()) {
          ReceivedMessage m = queue.poll();
          next = m.offset() + 1;
          handedOut = Math.max(handedOut, m.offset());
          owedMessages++;
          for (int[] c : credits) {
            if (c[0] > 0) {
              c[0]--;
              break;
            }
          }
          payBack();
          return m;
        }
        why = lost;
        if (why == null) {
          long left = deadline - System.currentTimeMillis();
          if (left <= 0) {
            return null;
          }
          wait(left);
          continue;
        }
      }
      if (!(why instanceof ConnectionLostException)) {
        throw why;
      }
      if (!resume(deadline)) {
        return null;
      }
    }
  }

  /** The next message as a future, completed on the client's threads. */
  public CompletableFuture<ReceivedMessage> nextAsync(long timeoutMs) {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return next(timeoutMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while waiting for a message", e);
      }
    }, client.executor);
  }

  /**
   * Subscribes again after a lost connection, wherever the partition is served now. False when
   * {@code deadline} (the caller's) passed first (the broker gone, the durable name held by
   * another subscriber, NOT_LEADER while a leader is elected): the next call goes on, NOT_LEADER
   * until RESUBSCRIBE_NOT_LEADER_MS after the loss. Any other failure is kept and thrown by later
   * calls too.
   */
  private boolean resume(long deadline) {
    long from;
    Connection old;
    synchronized (this) {
      from = cfg.noAcks() ? next : acked >= 0 ? acked + 1 : startOffset;
      old = conn;
      if (resumeGivesUpAt == 0) {
        resumeGivesUpAt = System.currentTimeMillis() + RESUBSCRIBE_NOT_LEADER_MS;
      }
    }
    old.removeSubscription(id);
    while (true) {
      try {
        open(SubscribeConfig.OFFSET, from, Math.min(deadline, resumeGivesUpAt));
        synchronized (this) {
          resumeGivesUpAt = 0;
        }
        return true;
      } catch (ConnectionLostException e) {
        if (System.currentTimeMillis() > deadline) {
          keep(e);
          return false;
        }
      } catch (GregorException e) {
        long now = System.currentTimeMillis();
        // Worth waiting for: the durable name's other holder letting go, a leader being elected.
        boolean passing = e.errorCode() == ErrorCode.SUBSCRIPTION_IN_USE
            || e.errorCode() == ErrorCode.NOT_LEADER && now < resumeGivesUpAt;
        if (!passing) {
          keep(e);
          throw e;
        }
        if (now > deadline) {
          keep(new ConnectionLostException("resubscribing to " + topic + "/" + cfg.partition()
              + " did not finish in time: " + e.getMessage(), e));
          return false;
        }
      }
      Client.sleep(client.cfg.reconnectBackoffMs());
    }
  }

  /** Remembers why the subscription is not subscribed now, for the next call of next. */
  private synchronized void keep(RuntimeException why) {
    lost = why;
  }

  /** Acknowledges every offset up to and including this one. */
  public synchronized void ack(long offset) {
    if (closed) {
      throw new IllegalStateException("the subscription is closed");
    }
    if (offset <= acked) {
      return;
    }
    acked = offset;
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("subscriptionId", id);
    m.put("offset", offset);
    conn.sendOneWay(Protocol.ACK, m);
  }

  /** Unsubscribes; a durable name keeps its acknowledged position at the broker. */
  @Override
  public void close() {
    Connection c;
    long sid;
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      c = conn;
      sid = id;
      notifyAll();
    }
    try {
      c.request(Protocol.UNSUBSCRIBE, Map.of("subscriptionId", sid))
          .get(client.cfg.requestTimeoutMs(), TimeUnit.MILLISECONDS);
    } catch (Exception e) {
      RuntimeException cause = Client.unwrap(e);
      if (!(cause instanceof ConnectionLostException)) {
        throw cause;
      }
    } finally {
      c.removeSubscription(sid);
    }
  }
}
