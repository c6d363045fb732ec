package dev.gregormq;

import java.util.ArrayList;
import java.util.ArrayDeque;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Batches messages per partition and sends one batch per partition at a time. Idempotent (the
 * default): the producer id and each partition's sequence go in every batch, so a batch resent
 * after a lost connection is stored once; the broker answers a resend with the first offset.
 */
public final class Producer implements AutoCloseable {
  /** The offset a message was stored at. */
  public record Result(String topic, int partition, long offset) {}

  /** The pause before asking for a producer id again after a retriable error. */
  private static final long PRODUCER_ID_RETRY_PAUSE_MS = 100;

  /** Errors the broker raises before it looks at a batch's sequence: that sequence is unused. */
  private static final Set<ErrorCode> REFUSED_BEFORE_SEQUENCE = EnumSet.of(
      ErrorCode.MALFORMED_REQUEST, ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_TOPIC,
      ErrorCode.INVALID_TOPIC, ErrorCode.UNKNOWN_PARTITION, ErrorCode.CORRUPT_BATCH,
      ErrorCode.BATCH_TOO_LARGE, ErrorCode.UNSUPPORTED_CODEC);

  private final Client client;
  private final ProducerConfig cfg;
  private final Map<String, PartitionQueue> queues = new HashMap<>();
  private final Map<String, Integer> sticky = new HashMap<>();
  private long producerId = -1;
  private short epoch = -1;
  private boolean closed;
  private final ArrayDeque<Runnable> incoming = new ArrayDeque<>();
  private boolean dispatching;
  /** Bytes of messages queued and not yet answered; guarded by {@code room}. */
  private long buffered;
  private final Object room = new Object();

  Producer(Client client, ProducerConfig cfg) {
    this.client = client;
    this.cfg = cfg;
  }

  private record Pending(Batch.Record record, int size, CompletableFuture<Result> done) {}

  private final class PartitionQueue {
    final String topic;
    final int partition;
    final ArrayDeque<Pending> queue = new ArrayDeque<>();
    boolean draining;
    int sequence;
    final List<CompletableFuture<Void>> idle = new ArrayList<>();

    PartitionQueue(String topic, int partition) {
      this.topic = topic;
      this.partition = partition;
    }
  }

  /**
   * Queues a message; the future completes with its offset or fails with the reason. While
   * {@code bufferBytesMax} bytes of messages wait for an answer, it waits for room, up to
   * {@code maxBlockMs}; then the future fails with a TimeoutException.
   */
  public CompletableFuture<Result> send(String topic, Message m) {
    CompletableFuture<Result> done = new CompletableFuture<>();
    int size = sizeOf(m);
    try {
      takeRoom(size);
    } catch (TimeoutException | InterruptedException e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      done.completeExceptionally(e);
      return done;
    }
    done.whenComplete((r, e) -> giveRoom(size));
    boolean start;
    synchronized (incoming) {
      incoming.add(() -> {
        try {
          enqueue(topic, m, done);
        } catch (RuntimeException e) {
          done.completeExceptionally(e);
        }
      });
      start = !dispatching;
      dispatching = true;
    }
    if (start) {
      client.executor.execute(this::dispatch);
    }
    return done;
  }

  /** A message's bytes as batchBytesMax and bufferBytesMax count them. */
  private static int sizeOf(Message m) {
    return 16 + (m.key() == null ? 0 : m.key().length) + (m.value() == null ? 0 : m.value().length);
  }

  /** Waits until {@code size} more bytes fit (or nothing is buffered), then takes them. */
  private void takeRoom(int size) throws TimeoutException, InterruptedException {
    synchronized (room) {
      long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(cfg.maxBlockMs());
      while (buffered > 0 && buffered + size > cfg.bufferBytesMax()) {
        long leftNs = deadline - System.nanoTime();
        if (leftNs <= 0) {
          throw new TimeoutException("the producer's buffer of " + cfg.bufferBytesMax()
              + " bytes stayed full for " + cfg.maxBlockMs() + " ms");
        }
        TimeUnit.NANOSECONDS.timedWait(room, leftNs);
      }
      buffered += size;
    }
  }

  private void giveRoom(int size) {
    synchronized (room) {
      buffered -= size;
      room.notifyAll();
    }
  }

  /**
   * Places sent messages on their partitions' queues one at a time, in the order send was
   * called: choosing a partition may ask the broker for the topic's partition count.
   */
  private void dispatch() {
    while (true) {
      Runnable r;
      synchronized (incoming) {
        r = incoming.poll();
        if (r == null) {
          dispatching = false;
          return;
        }
      }
      r.run();
    }
  }

  private void enqueue(String topic, Message m, CompletableFuture<Result> done) {
    int partition;
    if (m.partition() != null) {
      partition = m.partition();
    } else {
      int n = client.partitions(topic);
      if (m.key() != null) {
        partition = Batch.partitionForKey(m.key(), n);
      } else {
        synchronized (this) {
          partition = sticky.getOrDefault(topic, 0) % n;
        }
      }
    }
    long ts = m.timestampMs() != 0 ? m.timestampMs() : System.currentTimeMillis();
    Batch.Record rec = new Batch.Record(0, ts, m.key(), m.value(), m.headers());
    int size = sizeOf(m);
    PartitionQueue q;
    boolean start;
    synchronized (this) {
      if (closed) {
        throw new IllegalStateException("the producer is closed");
      }
      q = queues.computeIfAbsent(topic + "\u0000" + partition, k -> new PartitionQueue(topic, partition));
      q.queue.add(new Pending(rec, size, done));
      start = !q.draining;
      q.draining = true;
    }
    if (start) {
      client.executor.execute(() -> drain(q));
    }
  }

  /** Sends the queue's batches one after another until it is empty. */
  private void drain(PartitionQueue q) {
    while (true) {
      if (cfg.lingerMs() > 0) {
        Client.sleep(cfg.lingerMs());
      }
      List<Pending> batch = new ArrayList<>();
      List<CompletableFuture<Void>> idle = List.of();
      synchronized (this) {
        int bytes = 0;
        while (!q.queue.isEmpty() && batch.size() < cfg.batchRecordsMax()
            && (batch.isEmpty() || bytes + q.queue.peek().size() <= cfg.batchBytesMax())) {
          Pending p = q.queue.poll();
          bytes += p.size();
          batch.add(p);
        }
        if (batch.isEmpty()) {
          q.draining = false;
          idle = new ArrayList<>(q.idle);
          q.idle.clear();
        }
      }
      if (batch.isEmpty()) {
        idle.forEach(f -> f.complete(null));
        return;
      }
      sendBatch(q, batch);
      synchronized (this) {
        sticky.merge(q.topic, 1, Integer::sum);
      }
    }
  }

  private void sendBatch(PartitionQueue q, List<Pending> msgs) {
    List<Batch.Record> recs = new ArrayList<>(msgs.size());
    for (Pending p : msgs) {
      recs.add(p.record());
    }
    long started = System.currentTimeMillis();
    try {
      long id = -1;
      short ep = -1;
      int seq = -1;
      if (cfg.idempotent()) {
        synchronized (this) {
          while (producerId < 0) {
            Map<String, Object> r;
            try {
              r = client.call(Protocol.INIT_PRODUCER_ID, Map.of());
            } catch (GregorException e) {
              // The controller hands out producer ids: while a cluster elects a new one the node
              // asked answers NOT_LEADER (or TIMEOUT); ask again within the delivery timeout.
              if (!e.retriable() || System.currentTimeMillis() - started >= cfg.deliveryTimeoutMs()) {
                throw e;
              }
              Client.sleep(PRODUCER_ID_RETRY_PAUSE_MS);
              continue;
            }
            producerId = (Long) r.get("producerId");
            epoch = (short) (long) (Long) r.get("producerEpoch");
          }
          id = producerId;
          ep = epoch;
        }
        seq = q.sequence;
      }
      byte[] batch = Batch.encode(recs, cfg.codec(), 0, id, ep, seq);
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("topic", q.topic);
      m.put("partition", (long) q.partition);
      m.put("acks", (long) cfg.acks());
      m.put("timeoutMs", 30_000L);
      m.put("batch", batch);
      long backoff = 50;
      while (true) {
        try {
          long base = transmit(m);
          if (cfg.idempotent()) {
            q.sequence = (int) ((q.sequence + (long) msgs.size()) % (1L << 31));
          }
          for (int i = 0; i < msgs.size(); i++) {
            msgs.get(i).done().complete(new Result(q.topic, q.partition, base < 0 ? -1 : base + i));
          }
          return;
        } catch (RuntimeException e) {
          boolean again = e instanceof ConnectionLostException
              || e instanceof GregorException ge && ge.retriable();
          if (again && cfg.idempotent()
              && System.currentTimeMillis() - started < cfg.deliveryTimeoutMs()) {
            Client.sleep(backoff);
            backoff = Math.min(2 * backoff, 1000);
            continue;
          }
          if (cfg.idempotent() && !(e instanceof GregorException ge2
              && ge2.errorCode() != null && REFUSED_BEFORE_SEQUENCE.contains(ge2.errorCode()))) {
            // The broker may have stored it: its sequence is spent.
            q.sequence = (int) ((q.sequence + (long) msgs.size()) % (1L << 31));
          }
          throw e;
        }
      }
    } catch (RuntimeException e) {
      for (Pending p : msgs) {
        p.done().completeExceptionally(e);
      }
    }
  }

  /** One PRODUCE on the current connection; its base offset, or -1 with acks 0. */
  private long transmit(Map<String, Object> m) {
    Connection c = client.connection();
    if (cfg.acks() == 0) {
      c.sendOneWay(Protocol.PRODUCE, m);
      return -1;
    }
    try {
      return (Long) c.request(Protocol.PRODUCE, m).get(client.cfg.requestTimeoutMs(),
          TimeUnit.MILLISECONDS).get("baseOffset");
    } catch (TimeoutException e) {
      throw new GregorException(ErrorCode.TIMEOUT, "PRODUCE got no answer from " + c.addr);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while producing", e);
    } catch (ExecutionException e) {
      throw Client.unwrap(e);
    }
  }

  /** Completes when every message queued so far has its answer. */
  public CompletableFuture<Void> flush() {
    CompletableFuture<Void> placed = new CompletableFuture<>();
    synchronized (incoming) {
      incoming.add(() -> placed.complete(null));
      if (!dispatching) {
        dispatching = true;
        client.executor.execute(this::dispatch);
      }
    }
    return placed.thenCompose(x -> idle());
  }

  private CompletableFuture<Void> idle() {
    List<CompletableFuture<Void>> all = new ArrayList<>();
    synchronized (this) {
      for (PartitionQueue q : queues.values()) {
        if (q.draining) {
          CompletableFuture<Void> f = new CompletableFuture<>();
          q.idle.add(f);
          all.add(f);
        }
      }
    }
    return CompletableFuture.allOf(all.toArray(new CompletableFuture<?>[0]));
  }

  /** Flushes, then refuses new messages. */
  @Override
  public void close() {
    try {
      flush().get(cfg.deliveryTimeoutMs(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (ExecutionException | TimeoutException e) {
      // Each message's own future carries its failure; closing still goes ahead.
    }
    synchronized (this) {
      closed = true;
    }
  }
}
