package dev.gregormq;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One member of a consumer group (docs/protocol.md §8.9). It heartbeats to the broker's
 * coordinator, consumes the partitions it is assigned (one subscription each, merged into one
 * stream read with {@link #next}) and hands back the ones it is told to give up after committing
 * them, so a rebalance stops only the partitions that move. A committed offset is the next one to
 * process (Kafka's convention). Make one with {@link Client#joinGroup}. {@code next} is meant for
 * one thread; the other methods may be called from any.
 */
public final class GroupConsumer implements AutoCloseable {
  /** Backoff between failed heartbeats, ms. */
  private static final long RETRY_MS_MIN = 50;
  private static final long RETRY_MS_MAX = 1000;
  /** How long a partition's reader waits for a message before looking whether it was stopped, ms. */
  private static final long PUMP_POLL_MS = 100;

  private final Client client;
  private final String group;
  private final List<String> topics;
  private final GroupConfig cfg;
  private final BlockingQueue<Item> buffer;
  /** One heartbeat at a time: membership changes happen under it. */
  private final ReentrantLock beatLock = new ReentrantLock();
  private final Object lock = new Object();

  // Guarded by lock.
  private String memberId = "";
  private long generation = -1;
  private final Map<TopicPartition, Owned> owned = new HashMap<>();
  private Item last;
  private long lastBeatOkMs = System.currentTimeMillis();
  private RuntimeException failure;
  private boolean closing;
  private volatile boolean closed;
  private final List<Thread> loops = new ArrayList<>();

  /** One partition the member consumes. */
  private static final class Owned {
    final TopicPartition tp;
    Subscription sub;
    /** The next offset to process: what a commit of this partition stores. */
    long position;
    long committed;
    volatile boolean stopped;

    Owned(TopicPartition tp, long committed) {
      this.tp = tp;
      this.committed = committed;
    }
  }

  private record Item(Owned owner, ReceivedMessage message) {}

  GroupConsumer(Client client, String group, List<String> topics, GroupConfig cfg) {
    if (topics.isEmpty()) {
      throw new IllegalArgumentException("a group member needs at least one topic");
    }
    this.client = client;
    this.group = group;
    this.topics = List.copyOf(topics);
    this.cfg = cfg;
    this.buffer = new ArrayBlockingQueue<>(cfg.bufferMessages());
  }

  /** Joins (the first heartbeat) and starts the heartbeat and auto-commit threads. */
  void start() {
    try {
      beat();
    } catch (RuntimeException e) {
      dropAll();
      throw e;
    }
    loops.add(thread("gregormq-group-heartbeat", this::heartbeatLoop));
    if (cfg.autoCommit()) {
      loops.add(thread("gregormq-group-autocommit", this::autoCommitLoop));
    }
  }

  private static Thread thread(String name, Runnable r) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    t.start();
    return t;
  }

  /** The group's name. */
  public String group() {
    return group;
  }

  /** The id the coordinator gave this member ("" while it is out of the group). */
  public String memberId() {
    synchronized (lock) {
      return memberId;
    }
  }

  /** The group generation this member last heard. */
  public long generation() {
    synchronized (lock) {
      return generation;
    }
  }

  /** The partitions this member consumes now, sorted. */
  public List<TopicPartition> assignment() {
    synchronized (lock) {
      return sorted(owned.keySet());
    }
  }

  private static List<TopicPartition> sorted(Iterable<TopicPartition> tps) {
    List<TopicPartition> out = new ArrayList<>();
    tps.forEach(out::add);
    out.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
    return out;
  }

  // --- Consuming ---------------------------------------------------------------------------

  /**
   * The next message of any assigned partition, waiting up to timeoutMs; null if none came in
   * time. Calling it again marks the message it returned before processed (what commit and
   * auto-commit store). Messages of one partition come in offset order. Throws
   * GregorException FENCED_INSTANCE once a newer process with the same instance id took this
   * member's place, IllegalStateException after close.
   */
  public ReceivedMessage next(long timeoutMs) throws InterruptedException {
    synchronized (lock) {
      markProcessed();
    }
    long deadline = System.currentTimeMillis() + timeoutMs;
    while (true) {
      synchronized (lock) {
        if (failure != null) {
          throw failure;
        }
      }
      if (closed) {
        throw new IllegalStateException("the group member is closed");
      }
      long left = deadline - System.currentTimeMillis();
      if (left <= 0) {
        return null;
      }
      // In slices, so a failure or close is seen while waiting.
      Item it = buffer.poll(Math.min(left, PUMP_POLL_MS), TimeUnit.MILLISECONDS);
      if (it == null) {
        continue;
      }
      synchronized (lock) {
        if (it.owner.stopped) {
          continue; // taken away while it waited in the buffer
        }
        last = it;
        return it.message;
      }
    }
  }

  private void markProcessed() {
    if (last != null && !last.owner.stopped && last.message.offset() + 1 > last.owner.position) {
      last.owner.position = last.message.offset() + 1;
    }
    last = null;
  }

  /** Moves one partition's messages into the shared buffer until the partition is stopped. */
  private void pump(Owned o) {
    try {
      while (!o.stopped) {
        ReceivedMessage m = o.sub.next(PUMP_POLL_MS);
        if (m == null) {
          continue;
        }
        Item it = new Item(o, m);
        while (!o.stopped && !buffer.offer(it, PUMP_POLL_MS, TimeUnit.MILLISECONDS)) {
          // The application is behind: wait for room.
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException e) {
      if (!o.stopped) {
        fail(new GregorException(e instanceof GregorException ge ? ge.code() : ErrorCode.INTERNAL.code(),
            "group " + group + " lost partition " + o.tp + ": " + e.getMessage()));
      }
    }
  }

  private void fail(RuntimeException e) {
    synchronized (lock) {
      if (failure == null) {
        failure = e;
      }
    }
  }

  // --- Membership --------------------------------------------------------------------------

  private void heartbeatLoop() {
    long retryMs = RETRY_MS_MIN;
    while (!closed) {
      long waitMs;
      try {
        waitMs = beat();
        retryMs = RETRY_MS_MIN;
      } catch (GregorException e) {
        if (closed) {
          return;
        }
        if (e.errorCode() == ErrorCode.FENCED_INSTANCE) {
          dropAll();
          fail(e);
          return;
        }
        waitMs = retryAfter(retryMs);
        retryMs = Math.min(RETRY_MS_MAX, retryMs * 2);
      } catch (ConnectionLostException e) {
        if (closed) {
          return;
        }
        waitMs = retryAfter(retryMs);
        retryMs = Math.min(RETRY_MS_MAX, retryMs * 2);
      } catch (RuntimeException e) {
        if (!closed) {
          fail(e);
        }
        return;
      }
      if (!pause(waitMs)) {
        return;
      }
    }
  }

  /** After a failed heartbeat: drops everything once out of touch for a whole session. */
  private long retryAfter(long retryMs) {
    boolean expired;
    synchronized (lock) {
      expired = System.currentTimeMillis() - lastBeatOkMs > cfg.sessionTimeoutMs();
    }
    if (expired) {
      // The coordinator has given the partitions away.
      dropAll();
      synchronized (lock) {
        memberId = "";
        generation = -1;
      }
    }
    return retryMs;
  }

  /** Sleeps unless closed meanwhile; false if closed. */
  private boolean pause(long ms) {
    synchronized (lock) {
      long deadline = System.currentTimeMillis() + ms;
      while (!closed) {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
          return true;
        }
        try {
          lock.wait(left);
        } catch (InterruptedException e) {
          return false;
        }
      }
      return false;
    }
  }

  /** One heartbeat (after any under way), its answer applied; returns ms to the next. */
  @SuppressWarnings("unchecked")
  private long beat() {
    beatLock.lock();
    try {
      Map<String, Object> req = new LinkedHashMap<>();
      synchronized (lock) {
        req.put("group", group);
        req.put("memberId", memberId);
        req.put("instanceId", cfg.instanceId() == null ? "" : cfg.instanceId());
        req.put("generation", generation);
        req.put("sessionTimeoutMs", (long) cfg.sessionTimeoutMs());
        req.put("assignor", cfg.assignor());
        req.put("topics", topics.stream().map(t -> Map.of("name", t)).toList());
        req.put("owned", partitionList(owned.keySet()));
      }
      Map<String, Object> resp;
      try {
        // Not Client.call: a join sent twice would make two members.
        resp = requestOnce(Protocol.GROUP_HEARTBEAT, req);
      } catch (GregorException e) {
        if (e.errorCode() != ErrorCode.UNKNOWN_MEMBER) {
          throw e;
        }
        // The session ended: the partitions may be someone else's now. Drop them uncommitted and
        // join again at once.
        dropAll();
        synchronized (lock) {
          memberId = "";
          generation = -1;
        }
        return 0;
      }
      Set<TopicPartition> assigned = new HashSet<>();
      for (Map<String, Object> p : (List<Map<String, Object>>) resp.get("assigned")) {
        assigned.add(new TopicPartition((String) p.get("topic"), ((Long) p.get("partition")).intValue()));
      }
      List<Owned> revoked = new ArrayList<>();
      List<TopicPartition> added = new ArrayList<>();
      synchronized (lock) {
        lastBeatOkMs = System.currentTimeMillis();
        memberId = (String) resp.get("memberId");
        generation = (Long) resp.get("generation");
        for (Owned o : owned.values()) {
          if (!assigned.contains(o.tp)) {
            revoked.add(o);
          }
        }
        for (TopicPartition tp : assigned) {
          if (!owned.containsKey(tp)) {
            added.add(tp);
          }
        }
      }
      if (!revoked.isEmpty()) {
        revoke(revoked);
        return 0; // tell the coordinator at once that they are free
      }
      if (!added.isEmpty()) {
        assign(sorted(added));
      }
      return (Long) resp.get("heartbeatIntervalMs");
    } finally {
      beatLock.unlock();
    }
  }

  private Map<String, Object> requestOnce(int opcode, Map<String, ?> msg) {
    Connection c = client.connection();
    try {
      return c.request(opcode, msg).get(client.cfg.requestTimeoutMs(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      throw new GregorException(ErrorCode.TIMEOUT, Protocol.opcodeName(opcode) + " got no answer from "
          + c.addr + " in " + client.cfg.requestTimeoutMs() + " ms");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ConnectionLostException("interrupted while waiting for " + Protocol.opcodeName(opcode), e);
    } catch (ExecutionException e) {
      throw Client.unwrap(e);
    }
  }

  private static List<Map<String, Object>> partitionList(Iterable<TopicPartition> tps) {
    List<Map<String, Object>> out = new ArrayList<>();
    for (TopicPartition tp : tps) {
      out.add(Map.of("topic", tp.topic(), "partition", (long) tp.partition()));
    }
    return out;
  }

  /** Starts consuming newly assigned partitions at the group's committed offsets. */
  @SuppressWarnings("unchecked")
  private void assign(List<TopicPartition> tps) {
    Map<String, Object> fetched = client.call(Protocol.OFFSET_FETCH,
        Map.of("group", group, "partitions", partitionList(tps)));
    Map<TopicPartition, Long> committed = new HashMap<>();
    for (Map<String, Object> o : (List<Map<String, Object>>) fetched.get("offsets")) {
      committed.put(new TopicPartition((String) o.get("topic"), ((Long) o.get("partition")).intValue()),
          (Long) o.get("offset"));
    }
    cfg.listener().onAssigned(List.copyOf(tps));
    SubscribeConfig reset = SubscribeConfig.defaults().withNoAcks(true)
        .withWindowMessages(cfg.windowMessages()).withWindowBytes(cfg.windowBytes());
    reset = cfg.resetEarliest() ? reset.fromEarliest() : reset.fromLatest();
    for (TopicPartition tp : tps) {
      long c = committed.getOrDefault(tp, -1L);
      SubscribeConfig sc = (c >= 0 ? reset.fromOffset(c) : reset).withPartition(tp.partition());
      Owned o = new Owned(tp, c);
      try {
        o.sub = subscribe(tp.topic(), sc);
      } catch (GregorException e) {
        if (e.errorCode() != ErrorCode.OFFSET_OUT_OF_RANGE) {
          throw new GregorException(e.code(), "group " + group + " cannot consume its partition "
              + tp + ": " + e.getMessage());
        }
        // The committed offset fell to retention: start where the reset policy says.
        o.sub = subscribe(tp.topic(), reset.withPartition(tp.partition()));
      }
      o.position = o.sub.startOffset;
      synchronized (lock) {
        owned.put(tp, o);
      }
      thread("gregormq-group-partition", () -> pump(o));
    }
  }

  private Subscription subscribe(String topic, SubscribeConfig sc) {
    try {
      return client.subscribe(topic, sc).join();
    } catch (RuntimeException e) {
      throw Client.unwrap(e);
    }
  }

  /** Gives partitions back: stop, tell the listener, commit (with auto-commit), release. */
  private void revoke(List<Owned> list) {
    synchronized (lock) {
      for (Owned o : list) {
        // The message in the application's hands counts as processed only once it asks for the
        // next, which it can no longer do for this partition.
        if (last != null && last.owner == o) {
          last = null;
        }
        o.stopped = true;
      }
    }
    cfg.listener().onRevoked(list.stream().map(o -> o.tp).toList());
    if (cfg.autoCommit()) {
      try {
        commitOwned(list);
      } catch (RuntimeException e) {
        // The partitions move on regardless; their new owner reads from the last commit.
      }
    }
    release(list);
  }

  /** Forgets partitions and ends their subscriptions. */
  private void release(List<Owned> list) {
    synchronized (lock) {
      for (Owned o : list) {
        o.stopped = true;
        owned.remove(o.tp, o);
      }
    }
    for (Owned o : list) {
      try {
        o.sub.close();
      } catch (RuntimeException e) {
        // Already gone with its connection.
      }
      client.forget(o.sub);
    }
  }

  /** Forgets every partition without committing (the session was lost, or close). */
  private void dropAll() {
    List<Owned> list;
    synchronized (lock) {
      list = new ArrayList<>(owned.values());
      last = null;
    }
    release(list);
  }

  // --- Commits -----------------------------------------------------------------------------

  /**
   * Commits every owned partition up to and including the last message {@link #next} returned,
   * and returns once the offsets are durable (Kafka's commitSync). Throws GregorException
   * STALE_GENERATION when one of them was taken away meanwhile.
   */
  public void commit() {
    List<Owned> list;
    synchronized (lock) {
      markProcessed();
      list = new ArrayList<>(owned.values());
    }
    commitOwned(list);
  }

  /**
   * Commits exactly these offsets (each the next offset to process) and returns once they are
   * durable. Throws GregorException STALE_GENERATION if this member does not own one of the
   * partitions (it moved in a rebalance), INVALID_OFFSET for an offset below the group's committed
   * one or past the partition's end, UNKNOWN_MEMBER after the session was lost.
   */
  public void commit(Map<TopicPartition, Long> offsets) {
    if (offsets.isEmpty()) {
      return;
    }
    List<Map<String, Object>> list = new ArrayList<>();
    offsets.forEach((tp, off) -> list.add(Map.of("topic", tp.topic(), "partition", (long) tp.partition(),
        "offset", off)));
    try {
      sendCommit(list);
    } catch (GregorException e) {
      // Inside a rebalance callback the heartbeat that would tell the new generation is this one.
      if (e.errorCode() != ErrorCode.STALE_GENERATION || beatLock.isHeldByCurrentThread()) {
        throw e;
      }
      // The broker told this member of a newer generation than the one sent: learn it, then
      // commit again if every partition is still ours. One that moved is the caller's to hear
      // about: dropping it quietly would report offsets committed that never were.
      beat();
      List<TopicPartition> moved;
      long gen;
      synchronized (lock) {
        moved = offsets.keySet().stream().filter(tp -> !owned.containsKey(tp)).toList();
        gen = generation;
      }
      if (!moved.isEmpty()) {
        throw new GregorException(ErrorCode.STALE_GENERATION, "cannot commit " + moved + " for group "
            + group + ": this member no longer owns it (generation " + gen + ")");
      }
      sendCommit(list);
    }
    synchronized (lock) {
      offsets.forEach((tp, off) -> {
        Owned o = owned.get(tp);
        if (o != null) {
          o.committed = Math.max(o.committed, off);
        }
      });
    }
  }

  private void sendCommit(List<Map<String, Object>> offsets) {
    Map<String, Object> req = new LinkedHashMap<>();
    synchronized (lock) {
      req.put("group", group);
      req.put("memberId", memberId);
      req.put("generation", generation);
    }
    req.put("offsets", offsets);
    client.call(Protocol.OFFSET_COMMIT, req);
  }

  private void commitOwned(List<Owned> list) {
    Map<TopicPartition, Long> due = new LinkedHashMap<>();
    synchronized (lock) {
      for (Owned o : list) {
        if (o.position >= 0 && o.position > o.committed) {
          due.put(o.tp, o.position);
        }
      }
    }
    commit(due);
  }

  private void autoCommitLoop() {
    while (pause(cfg.autoCommitIntervalMs())) {
      List<Owned> list;
      synchronized (lock) {
        list = new ArrayList<>(owned.values());
      }
      try {
        commitOwned(list);
      } catch (RuntimeException e) {
        // A stale generation or a lost connection: the next round tries again.
      }
    }
  }

  // --- Ending ------------------------------------------------------------------------------

  /**
   * Commits (with auto-commit), leaves the group so its partitions move at once, and ends every
   * subscription. A static member does not leave: its partitions wait for it until the session
   * times out. A failed final commit is thrown after the member has left.
   */
  @Override
  public void close() {
    RuntimeException commitFailure = null;
    synchronized (lock) {
      if (closing) {
        return;
      }
      closing = true;
    }
    if (cfg.autoCommit()) {
      try {
        commit();
      } catch (RuntimeException e) {
        commitFailure = e;
      }
    }
    synchronized (lock) {
      closed = true;
      lock.notifyAll();
    }
    for (Thread t : loops) {
      try {
        t.join(client.cfg.requestTimeoutMs());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    String id;
    beatLock.lock();
    try {
      dropAll();
      synchronized (lock) {
        id = memberId;
        memberId = "";
      }
    } finally {
      beatLock.unlock();
    }
    if (!id.isEmpty() && (cfg.instanceId() == null || cfg.instanceId().isEmpty())) {
      try {
        client.call(Protocol.GROUP_LEAVE, Map.of("group", group, "memberId", id));
      } catch (RuntimeException e) {
        // Gone already (its session ended): its partitions are free either way.
      }
    }
    client.forget(this);
    if (commitFailure != null) {
      throw commitFailure;
    }
  }
}
