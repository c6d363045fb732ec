package dev.gregormq;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A GregorMQ client: one connection at a time to one of the bootstrap servers, re-established
 * on the next request after it drops. Every operation returns a CompletableFuture; failures are
 * GregorException (with the broker's code) or ConnectionLostException.
 */
public final class Client implements AutoCloseable {
  final ClientConfig cfg;
  final ExecutorService executor = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "gregormq-client");
    t.setDaemon(true);
    return t;
  });
  private final Object dialLock = new Object();
  private volatile Connection current;
  /** Connections to other nodes of a cluster, by address, for subscriptions to what they lead. */
  private final Map<String, Connection> leaders = new ConcurrentHashMap<>();
  private int nextServer;
  private volatile boolean closed;
  private final Map<String, Integer> partitionCounts = new ConcurrentHashMap<>();
  final AtomicLong nextSubscriptionId = new AtomicLong();
  private final List<AutoCloseable> owned = new ArrayList<>();

  private Client(ClientConfig cfg) {
    this.cfg = cfg;
  }

  /** Connects to the first bootstrap server that answers HELLO. */
  public static CompletableFuture<Client> connect(ClientConfig cfg) {
    if (cfg.servers() == null || cfg.servers().isEmpty()) {
      return CompletableFuture.failedFuture(new IllegalArgumentException(
          "ClientConfig.servers is empty: give at least one host:port"));
    }
    Client c = new Client(cfg);
    return CompletableFuture.supplyAsync(() -> {
      c.connection();
      return c;
    }, c.executor);
  }

  /** Connects with default settings. */
  public static CompletableFuture<Client> connect(String... servers) {
    return connect(ClientConfig.of(List.of(servers)));
  }

  /** The address of the broker connected to, or null while disconnected. */
  public String connectedTo() {
    Connection c = current;
    return c == null || c.isClosed() ? null : c.addr;
  }

  /** The live connection, dialing the servers in turn (blocking) if there is none. */
  Connection connection() {
    Connection c = current;
    if (c != null && !c.isClosed()) {
      return c;
    }
    synchronized (dialLock) {
      List<String> errors = new ArrayList<>();
      long deadline = System.currentTimeMillis() + cfg.requestTimeoutMs();
      while (true) {
        if (closed) {
          throw new IllegalStateException("the client is closed");
        }
        c = current;
        if (c != null && !c.isClosed()) {
          return c;
        }
        for (int i = 0; i < cfg.servers().size(); i++) {
          String addr = cfg.servers().get((nextServer + i) % cfg.servers().size());
          try {
            current = Connection.open(addr, cfg.clientId(), cfg.credential(), cfg.connectTimeoutMs());
            nextServer = (nextServer + i) % cfg.servers().size();
            return current;
          } catch (GregorException e) {
            if (e.errorCode() == ErrorCode.AUTHENTICATION_FAILED) {
              throw e;
            }
            errors.add(addr + ": " + e.getMessage());
          } catch (IOException | RuntimeException e) {
            errors.add(addr + ": " + e.getMessage());
          }
        }
        nextServer = (nextServer + 1) % cfg.servers().size();
        if (System.currentTimeMillis() >= deadline) {
          throw new ConnectionLostException("cannot connect to any of " + cfg.servers() + ": "
              + errors.subList(Math.max(0, errors.size() - cfg.servers().size()), errors.size()), null);
        }
        sleep(cfg.reconnectBackoffMs());
      }
    }
  }

  static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new CompletionException(e);
    }
  }

  /** Unwraps the cause of a future's failure so callers see GregorException itself. */
  static RuntimeException unwrap(Throwable e) {
    while ((e instanceof CompletionException || e instanceof ExecutionException) && e.getCause() != null) {
      e = e.getCause();
    }
    return e instanceof RuntimeException r ? r : new CompletionException(e);
  }

  /** Sends a request and waits (blocking) for its answer, resending after a lost connection. */
  Map<String, Object> call(int opcode, Map<String, ?> msg) {
    for (int attempt = 0; ; attempt++) {
      Connection c = connection();
      try {
        return c.request(opcode, msg).get(cfg.requestTimeoutMs(), TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        throw new GregorException(ErrorCode.TIMEOUT, Protocol.opcodeName(opcode)
            + " got no answer from " + c.addr + " in " + cfg.requestTimeoutMs() + " ms");
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new CompletionException(e);
      } catch (ExecutionException e) {
        RuntimeException cause = unwrap(e);
        if (cause instanceof ConnectionLostException && attempt < 3) {
          continue;
        }
        throw cause;
      }
    }
  }

  CompletableFuture<Map<String, Object>> callAsync(int opcode, Map<String, ?> msg) {
    return CompletableFuture.supplyAsync(() -> call(opcode, msg), executor);
  }

  /** Round trip to the broker. */
  public CompletableFuture<Void> ping() {
    return callAsync(Protocol.PING, Map.of()).thenApply(m -> null);
  }

  /** Creates a topic; TOPIC_EXISTS if it exists. */
  public CompletableFuture<Void> createTopic(String name, int partitions, Map<String, String> configs) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("name", name);
    m.put("partitions", (long) partitions);
    m.put("configs", configs == null ? Map.of() : configs);
    return callAsync(Protocol.CREATE_TOPIC, m).thenApply(r -> {
      partitionCounts.put(name, partitions);
      return null;
    });
  }

  /** Deletes a topic; UNKNOWN_TOPIC if there is none. */
  public CompletableFuture<Void> deleteTopic(String name) {
    partitionCounts.remove(name);
    return callAsync(Protocol.DELETE_TOPIC, Map.of("name", name)).thenApply(r -> null);
  }

  /** A topic's name and partition count. */
  public record TopicSummary(String name, int partitions) {}

  /**
   * One partition as DESCRIBE_TOPIC reports it: {@code leader} is "" if none is known (and outside
   * a cluster), {@code isr} is empty unless the node asked leads the partition, and {@code moving}
   * is true while its replicas move to {@code replicas}.
   */
  public record PartitionInfo(int partition, long logStartOffset, long highWatermark, long sizeBytes,
      int subscribers, long damagedFromOffset, String leader, List<String> replicas, List<String> isr,
      boolean moving) {}

  /** A topic's effective configs and partitions. */
  public record TopicDescription(String name, Map<String, String> configs, List<PartitionInfo> partitions) {}

  /** Every topic. */
  @SuppressWarnings("unchecked")
  public CompletableFuture<List<TopicSummary>> listTopics() {
    return callAsync(Protocol.LIST_TOPICS, Map.of()).thenApply(r -> {
      List<TopicSummary> out = new ArrayList<>();
      for (Map<String, Object> t : (List<Map<String, Object>>) r.get("topics")) {
        out.add(new TopicSummary((String) t.get("name"), ((Long) t.get("partitions")).intValue()));
      }
      return out;
    });
  }

  /** A topic's configs and partitions; UNKNOWN_TOPIC if there is none. */
  @SuppressWarnings("unchecked")
  public CompletableFuture<TopicDescription> describeTopic(String name) {
    return callAsync(Protocol.DESCRIBE_TOPIC, Map.of("name", name)).thenApply(r -> describe(r));
  }

  @SuppressWarnings("unchecked")
  private TopicDescription describe(Map<String, Object> r) {
    List<PartitionInfo> parts = new ArrayList<>();
    for (Map<String, Object> p : (List<Map<String, Object>>) r.get("partitions")) {
      parts.add(new PartitionInfo(((Long) p.get("partition")).intValue(), (Long) p.get("logStartOffset"),
          (Long) p.get("highWatermark"), (Long) p.get("sizeBytes"),
          ((Long) p.get("subscribers")).intValue(), (Long) p.get("damagedFromOffset"),
          (String) p.get("leader"), nodeIds(p.get("replicas")), nodeIds(p.get("isr")),
          (Long) p.get("moving") == 1));
    }
    String name = (String) r.get("name");
    partitionCounts.put(name, parts.size());
    return new TopicDescription(name, (Map<String, String>) r.get("configs"), parts);
  }

  @SuppressWarnings("unchecked")
  private static List<String> nodeIds(Object list) {
    return ((List<Map<String, Object>>) list).stream().map(n -> (String) n.get("id")).toList();
  }

  /**
   * A connection to the node that leads the partition as the cluster's metadata names it now
   * (blocking): the client's own if that is the node, else one opened for subscriptions and kept.
   * Null when no leader is known (none elected yet, a single node, or one that cannot be reached
   * now).
   */
  @SuppressWarnings("unchecked")
  Connection leaderConnection(String topic, int partition) {
    Map<String, Object> resp;
    try {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("topics", List.of(Map.of("name", topic)));
      m.put("autoCreate", 0L);
      resp = call(Protocol.METADATA, m);
    } catch (RuntimeException e) {
      return null;
    }
    String leader = "";
    for (Map<String, Object> t : (List<Map<String, Object>>) resp.get("topics")) {
      for (Map<String, Object> p : (List<Map<String, Object>>) t.get("partitions")) {
        if (topic.equals(t.get("name")) && (Long) p.get("partition") == partition) {
          leader = (String) p.get("leader");
        }
      }
    }
    String addr = null;
    for (Map<String, Object> n : (List<Map<String, Object>>) resp.get("nodes")) {
      if (!leader.isEmpty() && leader.equals(n.get("id"))) {
        addr = n.get("host") + ":" + n.get("clientPort");
      }
    }
    if (addr == null || closed) {
      return null;
    }
    for (Connection c : new Connection[] {current, leaders.get(addr)}) {
      if (c != null && c.addr.equals(addr) && !c.isClosed()) {
        return c;
      }
    }
    Connection c;
    try {
      c = Connection.open(addr, cfg.clientId(), cfg.credential(), cfg.connectTimeoutMs());
    } catch (IOException | RuntimeException e) {
      return null;
    }
    synchronized (leaders) {
      Connection old = leaders.get(addr);
      if (closed || old != null && !old.isClosed()) {
        // Closed meanwhile, or another subscription opened one first: use that one.
        c.close(new ConnectionLostException("not needed: " + addr + " has a connection", null));
        return closed ? null : old;
      }
      leaders.put(addr, c);
      return c;
    }
  }

  /** The topic's partition count, asked once and remembered (blocking). */
  int partitions(String topic) {
    Integer n = partitionCounts.get(topic);
    if (n != null) {
      return n;
    }
    return describe(call(Protocol.DESCRIBE_TOPIC, Map.of("name", topic))).partitions().size();
  }

  /** A producer that batches per partition; idempotent unless its config says otherwise. */
  public Producer producer(ProducerConfig pc) {
    Producer p = new Producer(this, pc);
    synchronized (owned) {
      owned.add(p);
    }
    return p;
  }

  /** A producer with the default settings. */
  public Producer producer() {
    return producer(ProducerConfig.defaults());
  }

  /** Subscribes to one partition; messages arrive through {@link Subscription#next()}. */
  public CompletableFuture<Subscription> subscribe(String topic, SubscribeConfig sc) {
    return CompletableFuture.supplyAsync(() -> {
      Subscription s = new Subscription(this, topic, sc);
      synchronized (owned) {
        owned.add(s);
      }
      return s;
    }, executor);
  }

  /** Sends one message and waits for its offset, through a producer shared by these calls. */
  public CompletableFuture<Producer.Result> publish(String topic, Message m) {
    Producer p;
    synchronized (owned) {
      if (defaultProducer == null) {
        defaultProducer = producer(ProducerConfig.defaults().withLingerMs(0));
      }
      p = defaultProducer;
    }
    return p.send(topic, m);
  }

  private Producer defaultProducer;

  /**
   * Joins a consumer group as a new member subscribed to topics; completes once the coordinator
   * answered the first heartbeat. The group's members share the topics' partitions, each consumed
   * by one member at a time. Fails with GregorException INVALID_REQUEST (a bad group name or
   * config) or LIMIT_EXCEEDED.
   */
  public CompletableFuture<GroupConsumer> joinGroup(String group, List<String> topics, GroupConfig gc) {
    return CompletableFuture.supplyAsync(() -> {
      GroupConsumer g = new GroupConsumer(this, group, topics, gc);
      g.start();
      synchronized (owned) {
        owned.add(g);
      }
      return g;
    }, executor);
  }

  /** Stops tracking something closed on its own (a group member, its subscriptions). */
  void forget(AutoCloseable a) {
    synchronized (owned) {
      owned.remove(a);
    }
  }

  /** A group as LIST_GROUPS reports it: state "empty", "stable" or "reconciling". */
  public record GroupSummary(String group, String state, int members, long generation) {}

  /** A group member and the partitions it owns now. */
  public record GroupMember(String memberId, String instanceId, String clientId, long generation,
      List<TopicPartition> assigned) {}

  /**
   * A group's committed offset of a partition (-1 if none) and the partition's high watermark (-1
   * if it no longer exists): the lag is highWatermark - offset.
   */
  public record GroupOffset(TopicPartition partition, long offset, long highWatermark) {}

  /** A group's members and committed offsets. */
  public record GroupDescription(String group, String state, long generation, String assignor,
      List<GroupMember> members, List<GroupOffset> offsets) {}

  /** Every group with live members or committed offsets, sorted by name. */
  @SuppressWarnings("unchecked")
  public CompletableFuture<List<GroupSummary>> listGroups() {
    return callAsync(Protocol.LIST_GROUPS, Map.of()).thenApply(r -> {
      List<GroupSummary> out = new ArrayList<>();
      for (Map<String, Object> g : (List<Map<String, Object>>) r.get("groups")) {
        out.add(new GroupSummary((String) g.get("group"), (String) g.get("state"),
            ((Long) g.get("members")).intValue(), (Long) g.get("generation")));
      }
      return out;
    });
  }

  /** A group's members, what each owns, and its offsets; INVALID_REQUEST for an unknown group. */
  @SuppressWarnings("unchecked")
  public CompletableFuture<GroupDescription> describeGroup(String group) {
    return callAsync(Protocol.DESCRIBE_GROUP, Map.of("group", group)).thenApply(r -> {
      List<GroupMember> members = new ArrayList<>();
      for (Map<String, Object> m : (List<Map<String, Object>>) r.get("members")) {
        members.add(new GroupMember((String) m.get("memberId"), (String) m.get("instanceId"),
            (String) m.get("clientId"), (Long) m.get("generation"),
            topicPartitions((List<Map<String, Object>>) m.get("assigned"))));
      }
      return new GroupDescription((String) r.get("group"), (String) r.get("state"),
          (Long) r.get("generation"), (String) r.get("assignor"), members,
          groupOffsets((List<Map<String, Object>>) r.get("offsets")));
    });
  }

  /** The group's committed offsets of these partitions (empty: every partition it committed). */
  @SuppressWarnings("unchecked")
  public CompletableFuture<List<GroupOffset>> committedOffsets(String group, List<TopicPartition> partitions) {
    List<Map<String, Object>> list = new ArrayList<>();
    for (TopicPartition tp : partitions) {
      list.add(Map.of("topic", tp.topic(), "partition", (long) tp.partition()));
    }
    return callAsync(Protocol.OFFSET_FETCH, Map.of("group", group, "partitions", list))
        .thenApply(r -> groupOffsets((List<Map<String, Object>>) r.get("offsets")));
  }

  /**
   * Moves an empty group's committed offsets of a topic's partitions (empty: all of them) to
   * {@code to} (SubscribeConfig.EARLIEST, LATEST, OFFSET: {@code value} clipped to each
   * partition's range, or TIMESTAMP: {@code value} in ms); unlike a commit it may move them
   * backwards. With dryRun nothing changes and the answer says what would be set. Fails with
   * GROUP_NOT_EMPTY while the group has live members.
   */
  @SuppressWarnings("unchecked")
  public CompletableFuture<List<GroupOffset>> resetOffsets(String group, String topic,
      List<Integer> partitions, int to, long value, boolean dryRun) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("group", group);
    m.put("topic", topic);
    m.put("partitions", partitions.stream().map(p -> Map.of("partition", (long) p)).toList());
    m.put("to", (long) to);
    m.put("value", value);
    m.put("dryRun", dryRun ? 1L : 0L);
    return callAsync(Protocol.RESET_OFFSETS, m)
        .thenApply(r -> groupOffsets((List<Map<String, Object>>) r.get("offsets")));
  }

  private static List<TopicPartition> topicPartitions(List<Map<String, Object>> list) {
    List<TopicPartition> out = new ArrayList<>();
    for (Map<String, Object> tp : list) {
      out.add(new TopicPartition((String) tp.get("topic"), ((Long) tp.get("partition")).intValue()));
    }
    return out;
  }

  private static List<GroupOffset> groupOffsets(List<Map<String, Object>> list) {
    List<GroupOffset> out = new ArrayList<>();
    for (Map<String, Object> o : list) {
      out.add(new GroupOffset(new TopicPartition((String) o.get("topic"),
          ((Long) o.get("partition")).intValue()), (Long) o.get("offset"), (Long) o.get("highWatermark")));
    }
    return out;
  }

  /**
   * Closes group members (they commit and leave their groups), flushes producers, closes
   * subscriptions and the connection.
   */
  @Override
  public void close() {
    List<AutoCloseable> all;
    synchronized (owned) {
      all = new ArrayList<>(owned);
      owned.clear();
    }
    // Members first: their last commit and leave need the connection and their subscriptions.
    all.sort((a, b) -> Boolean.compare(!(a instanceof GroupConsumer), !(b instanceof GroupConsumer)));
    for (AutoCloseable a : all) {
      try {
        a.close();
      } catch (Exception e) {
        // Closing goes on for the rest: one producer's failure must not leak the others.
      }
    }
    Connection c = current;
    synchronized (leaders) {
      closed = true;
      for (Connection lc : leaders.values()) {
        lc.close(new ConnectionLostException("the client was closed", null));
      }
      leaders.clear();
    }
    if (c != null) {
      c.close(new ConnectionLostException("the client was closed", null));
    }
    executor.shutdownNow();
  }
}
