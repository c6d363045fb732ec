package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Runs every scenario of conformance/scenarios.json against real broker processes: one shared
 * broker, plus fresh ones for scenarios that ask for several.
 */
class ConformanceTest {
  /** Longest wait for one message of a receive step. */
  static final long RECEIVE_TIMEOUT_MS = 10_000;
  /** Longest wait for any other step. */
  static final long STEP_TIMEOUT_MS = 60_000;
  /** Longest wait of an awaitAssignment step for the group to settle, and how often it looks. */
  static final long ASSIGNMENT_TIMEOUT_MS = 10_000;
  static final long ASSIGNMENT_POLL_MS = 20;
  /**
   * Longest wait of an awaitCluster step for the nodes and a controller, of an awaitLeaders step
   * for the partitions' leaders, and how often they (and a createTopic with retryMs) ask again.
   */
  static final long CLUSTER_TIMEOUT_MS = 30_000;
  static final long LEADERS_TIMEOUT_MS = 10_000;
  static final long SETTLE_POLL_MS = 100;

  private static BrokerProcess shared;

  @AfterAll
  static void stopShared() throws Exception {
    if (shared != null) {
      shared.close();
    }
  }

  @TestFactory
  Stream<DynamicTest> scenarios() throws Exception {
    JsonNode doc = GoldenTest.load("scenarios.json");
    List<JsonNode> list = new ArrayList<>();
    doc.get("scenarios").forEach(list::add);
    assertTrue(list.size() >= 10, "scenarios.json has " + list.size() + " scenarios");
    return list.stream().map(s -> DynamicTest.dynamicTest(s.get("name").asText(), () -> run(s)));
  }

  private static void run(JsonNode s) throws Exception {
    int n = s.has("brokers") ? s.get("brokers").asInt() : 1;
    List<BrokerProcess> brokers = new ArrayList<>();
    List<BrokerProcess> fresh = new ArrayList<>();
    if (s.path("cluster").asBoolean()) {
      fresh.addAll(BrokerProcess.startCluster(n));
      brokers.addAll(fresh);
    } else if (n > 1) {
      for (int i = 0; i < n; i++) {
        BrokerProcess b = BrokerProcess.start();
        fresh.add(b);
        brokers.add(b);
      }
    } else {
      synchronized (ConformanceTest.class) {
        if (shared == null) {
          shared = BrokerProcess.start();
        }
      }
      brokers.add(shared);
    }
    Driver d = new Driver(brokers);
    try {
      d.client = d.open(List.of(brokers.get(0).addr));
      int i = 0;
      for (JsonNode st : s.get("steps")) {
        String where = "step " + i++ + " (" + st.get("op").asText() + ")";
        Throwable err = null;
        try {
          d.step(st);
        } catch (Throwable e) {
          err = Client.unwrap(e);
        }
        if (st.has("expectError")) {
          String want = st.get("expectError").asText();
          if (!(err instanceof GregorException ge) || !ge.codeName().equals(want)) {
            throw new AssertionError(where + ": expected " + want + ", got " + err, err);
          }
          assertEquals(ErrorCode.valueOf(want).code(), ((GregorException) err).code());
        } else if (err != null) {
          throw new AssertionError(where + " failed: " + err, err);
        }
      }
    } finally {
      d.close();
      for (BrokerProcess b : fresh) {
        b.close();
      }
    }
  }

  private static final class Driver {
    final List<BrokerProcess> brokers;
    final List<Client> clients = new ArrayList<>();
    final List<CuttingProxy> proxies = new ArrayList<>();
    final Map<String, Subscription> subs = new HashMap<>();
    /** What each subscription reads. */
    final Map<String, TopicPartition> subPartitions = new HashMap<>();
    /** Group members by step name, each on its own client. */
    final Map<String, GroupConsumer> members = new HashMap<>();
    Client client;

    Driver(List<BrokerProcess> brokers) {
      this.brokers = brokers;
    }

    Client open(List<String> servers) throws Exception {
      Client c = Client.connect(ClientConfig.of(servers).withRequestTimeoutMs(10_000))
          .get(STEP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      clients.add(c);
      return c;
    }

    void close() throws Exception {
      for (Client c : clients) {
        c.close();
      }
      for (CuttingProxy p : proxies) {
        p.close();
      }
    }

    static <T> T await(CompletableFuture<T> f) throws Exception {
      return f.get(STEP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }

    static String refusedAddress() throws Exception {
      try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
        return "127.0.0.1:" + s.getLocalPort();
      }
    }

    static byte[] utf8(JsonNode v) {
      return v == null || v.isNull() ? null : v.asText().getBytes(StandardCharsets.UTF_8);
    }

    static Map<String, String> strings(JsonNode obj) {
      Map<String, String> out = new TreeMap<>();
      if (obj != null) {
        Iterator<Map.Entry<String, JsonNode>> it = obj.fields();
        while (it.hasNext()) {
          Map.Entry<String, JsonNode> e = it.next();
          out.put(e.getKey(), e.getValue().asText());
        }
      }
      return out;
    }

    ReceivedMessage next(String sub) throws Exception {
      ReceivedMessage m = subs.get(sub).next(RECEIVE_TIMEOUT_MS);
      if (m == null) {
        fail(sub + ": nothing received in " + RECEIVE_TIMEOUT_MS + " ms");
      }
      return m;
    }

    void step(JsonNode st) throws Exception {
      String topic = st.path("topic").asText();
      switch (st.get("op").asText()) {
        case "connect" -> {
          List<String> servers = new ArrayList<>();
          for (JsonNode x : st.get("servers")) {
            servers.add(x.isTextual() && x.asText().equals("refused") ? refusedAddress()
                : brokers.get(x.asInt()).addr);
          }
          if (st.has("cuttingProxy")) {
            JsonNode pc = st.get("cuttingProxy");
            CuttingProxy p = new CuttingProxy(servers.get(0), pc.get("cuts").asInt(),
                pc.get("afterBytes").asLong());
            proxies.add(p);
            servers = List.of(p.addr());
          }
          client = open(servers);
        }
        case "stopBroker" -> {
          BrokerProcess b = st.has("leaderOf") ? leaderOf(st.get("leaderOf").asText())
              : brokers.get(st.get("broker").asInt());
          b.process.destroyForcibly();
          b.process.waitFor(10, TimeUnit.SECONDS);
        }
        case "createTopic" -> createTopic(st);
        case "awaitCluster" -> awaitCluster(st);
        case "awaitLeaders" -> awaitLeaders(st);
        case "deleteTopic" -> await(client.deleteTopic(topic));
        case "listTopics" -> {
          Map<String, Integer> byName = new HashMap<>();
          for (Client.TopicSummary t : await(client.listTopics())) {
            byName.put(t.name(), t.partitions());
          }
          for (JsonNode w : st.path("expectIncludes")) {
            assertEquals(w.get("partitions").asInt(), byName.get(w.get("name").asText()),
                "topic " + w + " as listed");
          }
          for (JsonNode name : st.path("expectExcludes")) {
            assertTrue(!byName.containsKey(name.asText()), name.asText() + " is still listed");
          }
        }
        case "describeTopic" -> {
          Client.TopicDescription d = await(client.describeTopic(topic));
          if (st.has("expectPartitions")) {
            assertEquals(st.get("expectPartitions").asInt(), d.partitions().size(), "partitions");
          }
          if (st.has("expectHighWatermarks")) {
            List<Long> want = new ArrayList<>();
            st.get("expectHighWatermarks").forEach(x -> want.add(x.asLong()));
            assertEquals(want, d.partitions().stream().map(Client.PartitionInfo::highWatermark).toList());
          }
          for (Map.Entry<String, String> e : strings(st.get("expectConfigsInclude")).entrySet()) {
            assertEquals(e.getValue(), d.configs().get(e.getKey()), "config " + e.getKey());
          }
        }
        case "publish" -> publish(st);
        case "publishMany" -> {
          ProducerConfig pc = ProducerConfig.defaults();
          if (st.has("batchRecordsMax")) {
            pc = pc.withBatchRecordsMax(st.get("batchRecordsMax").asInt());
          }
          Producer p = client.producer(pc);
          List<CompletableFuture<Producer.Result>> all = new ArrayList<>();
          for (int n = 0; n < st.get("count").asInt(); n++) {
            all.add(p.send(topic, Message.of(st.get("valuePrefix").asText() + n)));
          }
          p.close();
          for (CompletableFuture<Producer.Result> f : all) {
            await(f);
          }
        }
        case "expectProxyCuts" -> {
          int cut = proxies.stream().mapToInt(p -> p.cut.get()).sum();
          assertTrue(cut >= st.get("atLeast").asInt(), "the proxy cut " + cut + " connections");
        }
        case "publishEach" -> {
          for (int n = 0; n < st.get("count").asInt(); n++) {
            await(client.publish(topic, Message.of(st.get("valuePrefix").asText() + n)));
          }
        }
        case "subscribe" -> {
          Client c = st.path("newClient").asBoolean() ? open(List.of(brokers.get(0).addr)) : client;
          int partition = st.path("partition").asInt();
          if (st.has("awayFrom")) {
            String away = brokers.get(st.get("awayFrom").asInt()).nodeId;
            partition = await(client.describeTopic(topic)).partitions().stream()
                .filter(p -> !p.replicas().contains(away)).mapToInt(Client.PartitionInfo::partition)
                .findFirst().orElseThrow(() -> new AssertionError(
                    "every partition of " + topic + " has a replica on " + away));
          }
          SubscribeConfig sc = SubscribeConfig.defaults().withPartition(partition)
              .withDurable(st.path("durable").asText("")).withNoAcks(st.path("noAcks").asBoolean());
          if (st.has("ackTimeoutMs")) {
            sc = sc.withAckTimeoutMs(st.get("ackTimeoutMs").asInt());
          }
          if (st.has("windowMessages")) {
            sc = sc.withWindowMessages(st.get("windowMessages").asInt());
          }
          JsonNode from = st.get("from");
          if (from.isTextual()) {
            sc = from.asText().equals("earliest") ? sc.fromEarliest() : sc.fromLatest();
          } else if (from.has("offset")) {
            sc = sc.fromOffset(from.get("offset").asLong());
          } else {
            sc = sc.fromTimestamp(from.get("timestamp").asLong());
          }
          Subscription sub = await(c.subscribe(topic, sc));
          subs.put(st.get("sub").asText(), sub);
          subPartitions.put(st.get("sub").asText(), new TopicPartition(topic, partition));
          if (st.has("expectStartOffset")) {
            assertEquals(st.get("expectStartOffset").asLong(), sub.startOffset, "start offset");
          }
        }
        case "receive" -> {
          for (JsonNode w : st.get("expect")) {
            ReceivedMessage m = next(st.get("sub").asText());
            assertEquals(w.get("offset").asLong(), m.offset(), "offset");
            if (w.has("key")) {
              assertTrue(Arrays.equals(utf8(w.get("key")), m.key()), "offset " + m.offset() + " key");
            }
            if (w.has("value")) {
              assertEquals(w.get("value").asText(), new String(m.value(), StandardCharsets.UTF_8));
            }
            if (w.has("timestamp")) {
              assertEquals(w.get("timestamp").asLong(), m.timestampMs(), "timestamp");
            }
            if (w.has("redelivered")) {
              assertEquals(w.get("redelivered").asBoolean(), m.redelivered(), "offset " + m.offset() + " redelivered");
            }
          }
        }
        case "receiveCount" -> {
          long first = st.get("firstOffset").asLong();
          for (int n = 0; n < st.get("count").asInt(); n++) {
            ReceivedMessage m = next(st.get("sub").asText());
            assertEquals(first + n, m.offset(), "offset");
            if (st.has("valuePrefix")) {
              assertEquals(st.get("valuePrefix").asText() + n, new String(m.value(), StandardCharsets.UTF_8));
            }
          }
        }
        case "expectNone" -> {
          ReceivedMessage m = subs.get(st.get("sub").asText()).next(st.get("ms").asLong());
          if (m != null) {
            fail("received offset " + m.offset() + " but expected nothing");
          }
        }
        case "ack" -> subs.get(st.get("sub").asText()).ack(st.get("offset").asLong());
        case "unsubscribe" -> subs.remove(st.get("sub").asText()).close();
        case "joinGroup" -> {
          List<String> topics = new ArrayList<>();
          st.get("topics").forEach(t -> topics.add(t.asText()));
          GroupConfig gc = GroupConfig.defaults().withAutoCommit(st.path("autoCommit").asBoolean(false));
          gc = st.path("reset").asText("latest").equals("earliest") ? gc.fromEarliest() : gc.fromLatest();
          Client c = open(List.of(brokers.get(0).addr));
          members.put(st.get("member").asText(), await(c.joinGroup(st.get("group").asText(), topics, gc)));
        }
        case "awaitAssignment" -> awaitAssignment(st);
        case "groupReceive" -> groupReceive(st);
        case "groupExpectNone" -> {
          for (JsonNode name : st.get("members")) {
            ReceivedMessage m = members.get(name.asText()).next(st.get("ms").asLong());
            if (m != null) {
              fail(name.asText() + " received " + m.topic() + "/" + m.partition() + "@" + m.offset()
                  + " but expected nothing");
            }
          }
        }
        case "groupCommit" -> {
          GroupConsumer g = members.get(st.get("member").asText());
          if (!st.has("partitionOf")) {
            g.commit();
            return;
          }
          List<Integer> theirs = owned(st.get("partitionOf").asText(), topic);
          assertTrue(!theirs.isEmpty(), st.get("partitionOf") + " owns no partition of " + topic);
          g.commit(Map.of(new TopicPartition(topic, theirs.get(0)), st.get("offset").asLong()));
        }
        case "leaveGroup" -> members.remove(st.get("member").asText()).close();
        default -> fail("unknown step op " + st.get("op"));
      }
    }

    /** The broker leading the partition a subscription reads, now. */
    BrokerProcess leaderOf(String sub) throws Exception {
      TopicPartition tp = subPartitions.get(sub);
      String leader = await(client.describeTopic(tp.topic())).partitions().get(tp.partition()).leader();
      return brokers.stream().filter(b -> b.nodeId.equals(leader)).findFirst()
          .orElseThrow(() -> new AssertionError("the leader " + leader + " of " + tp + " is no broker"));
    }

    void createTopic(JsonNode st) throws Exception {
      long deadline = System.currentTimeMillis() + st.path("retryMs").asLong(0);
      for (boolean failed = false; ; failed = true) {
        try {
          await(client.createTopic(st.get("topic").asText(), st.get("partitions").asInt(),
              strings(st.get("configs"))));
          return;
        } catch (Exception e) {
          RuntimeException cause = Client.unwrap(e);
          if (!(cause instanceof GregorException ge)) {
            throw cause;
          }
          // An attempt that failed (a TIMEOUT, say) may have created the topic.
          if (failed && ge.errorCode() == ErrorCode.TOPIC_EXISTS) {
            return;
          }
          if (!ge.retriable() || System.currentTimeMillis() >= deadline) {
            throw ge;
          }
        }
        Thread.sleep(SETTLE_POLL_MS);
      }
    }

    @SuppressWarnings("unchecked")
    void awaitCluster(JsonNode st) throws Exception {
      long deadline = System.currentTimeMillis() + CLUSTER_TIMEOUT_MS;
      while (true) {
        Object got;
        try {
          Map<String, Object> m = client.call(Protocol.METADATA, Map.of("topics", List.of(), "autoCreate", 0L));
          if (((List<Object>) m.get("nodes")).size() == st.get("nodes").asInt()
              && !((String) m.get("controller")).isEmpty()) {
            return;
          }
          got = m;
        } catch (RuntimeException e) {
          got = e;
        }
        if (System.currentTimeMillis() >= deadline) {
          fail("the cluster did not form in " + CLUSTER_TIMEOUT_MS + " ms: " + got);
        }
        Thread.sleep(SETTLE_POLL_MS);
      }
    }

    void awaitLeaders(JsonNode st) throws Exception {
      long deadline = System.currentTimeMillis() + LEADERS_TIMEOUT_MS;
      int replicas = st.get("replicas").asInt();
      while (true) {
        Client.TopicDescription d = await(client.describeTopic(st.get("topic").asText()));
        List<String> leaders = d.partitions().stream().map(Client.PartitionInfo::leader).toList();
        boolean settled = leaders.stream().noneMatch(String::isEmpty)
            && leaders.stream().distinct().count() == leaders.size()
            && d.partitions().stream().allMatch(p ->
                p.replicas().size() == replicas && p.replicas().contains(p.leader()) && !p.moving());
        if (settled) {
          return;
        }
        if (System.currentTimeMillis() >= deadline) {
          fail(d.name() + "'s partitions did not each get a leader of their own in "
              + LEADERS_TIMEOUT_MS + " ms: " + d.partitions());
        }
        Thread.sleep(SETTLE_POLL_MS);
      }
    }

    /** The partitions of topic the member owns now, sorted. */
    List<Integer> owned(String member, String topic) {
      return members.get(member).assignment().stream().filter(tp -> tp.topic().equals(topic))
          .map(TopicPartition::partition).sorted().toList();
    }

    void awaitAssignment(JsonNode st) throws Exception {
      String topic = st.get("topic").asText();
      long deadline = System.currentTimeMillis() + ASSIGNMENT_TIMEOUT_MS;
      while (true) {
        Map<String, List<Integer>> got = new TreeMap<>();
        List<Integer> all = new ArrayList<>();
        boolean settled = true;
        Iterator<Map.Entry<String, JsonNode>> it = st.get("members").fields();
        while (it.hasNext()) {
          Map.Entry<String, JsonNode> e = it.next();
          List<Integer> mine = owned(e.getKey(), topic);
          got.put(e.getKey(), mine);
          all.addAll(mine);
          settled &= mine.size() == e.getValue().asInt();
        }
        all.sort(null);
        for (int i = 0; i < all.size(); i++) {
          settled &= all.get(i) == i;
        }
        if (settled && all.size() == st.get("partitions").asInt()) {
          return;
        }
        if (System.currentTimeMillis() > deadline) {
          fail("the group did not settle on " + st.get("members") + " in " + ASSIGNMENT_TIMEOUT_MS
              + " ms: " + got);
        }
        Thread.sleep(ASSIGNMENT_POLL_MS);
      }
    }

    void groupReceive(JsonNode st) throws Exception {
      String topic = st.get("topic").asText();
      List<JsonNode> expected = new ArrayList<>();
      st.get("expect").forEach(expected::add);
      boolean[] matched = new boolean[expected.size()];
      for (JsonNode x : st.get("members")) {
        String name = x.asText();
        List<Integer> mine = owned(name, topic);
        long want = expected.stream().filter(e -> mine.contains(e.get("partition").asInt())).count();
        for (long n = 0; n < want; n++) {
          ReceivedMessage m = members.get(name).next(RECEIVE_TIMEOUT_MS);
          if (m == null) {
            fail(name + ": nothing received in " + RECEIVE_TIMEOUT_MS + " ms");
          }
          String at = name + " received " + m.topic() + "/" + m.partition() + "@" + m.offset();
          assertTrue(mine.contains(m.partition()), at + ", a partition it does not own");
          int i = 0;
          while (i < expected.size() && (matched[i] || expected.get(i).get("partition").asInt() != m.partition()
              || expected.get(i).get("offset").asLong() != m.offset())) {
            i++;
          }
          assertTrue(i < expected.size(), at + ", which is not expected here or came twice");
          matched[i] = true;
          if (expected.get(i).has("value")) {
            assertEquals(expected.get(i).get("value").asText(), new String(m.value(), StandardCharsets.UTF_8), at);
          }
        }
      }
      for (int i = 0; i < matched.length; i++) {
        assertTrue(matched[i], "no member owning its partition received " + expected.get(i));
      }
    }

    void publish(JsonNode st) throws Exception {
      ProducerConfig pc = ProducerConfig.defaults();
      if (st.has("codec")) {
        pc = pc.withCodec(Codec.byName(st.get("codec").asText()));
      }
      Producer p = client.producer(pc);
      List<CompletableFuture<Producer.Result>> all = new ArrayList<>();
      for (JsonNode m : st.get("messages")) {
        Integer partition = st.has("partition") ? st.get("partition").asInt() : null;
        all.add(p.send(st.get("topic").asText(), new Message(utf8(m.get("key")), utf8(m.get("value")),
            List.of(), m.path("timestamp").asLong(0), partition)));
      }
      List<Long> offsets = new ArrayList<>();
      List<Long> partitions = new ArrayList<>();
      try {
        for (CompletableFuture<Producer.Result> f : all) {
          Producer.Result r = await(f);
          offsets.add(r.offset());
          partitions.add((long) r.partition());
        }
      } finally {
        p.close();
      }
      for (String field : List.of("expectOffsets", "expectPartitions")) {
        if (st.has(field)) {
          List<Long> want = new ArrayList<>();
          st.get(field).forEach(x -> want.add(x.asLong()));
          assertEquals(want, field.equals("expectOffsets") ? offsets : partitions, field);
        }
      }
    }
  }
}
