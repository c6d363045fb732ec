package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Consumer groups against a live broker: auto-commit and the rebalance listener, committing by
 * hand inside onRevoked, and a static member fenced by its replacement.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class GroupConsumerTest {
  /** Longest wait for a group to settle or for one message. */
  static final long WAIT_MS = 10_000;

  private BrokerProcess broker;
  private final List<Client> clients = new ArrayList<>();

  @BeforeEach
  void start() throws Exception {
    broker = BrokerProcess.start();
  }

  @AfterEach
  void stop() throws Exception {
    for (Client c : clients) {
      c.close();
    }
    broker.close();
  }

  private Client client() throws Exception {
    Client c = Client.connect(ClientConfig.of(List.of(broker.addr)).withRequestTimeoutMs(10_000))
        .get(WAIT_MS, TimeUnit.MILLISECONDS);
    clients.add(c);
    return c;
  }

  private static void waitFor(String what, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.currentTimeMillis() + WAIT_MS;
    while (!cond.getAsBoolean()) {
      if (System.currentTimeMillis() > deadline) {
        fail(what + ": not within " + WAIT_MS + " ms");
      }
      Thread.sleep(20);
    }
  }

  /** Publishes n messages "p<partition>-<i>" to each of the topic's partitions. */
  private static void publish(Client c, String topic, int partitions, int n) {
    for (int p = 0; p < partitions; p++) {
      for (int i = 0; i < n; i++) {
        c.publish(topic, new Message(null, ("p" + p + "-" + i).getBytes(StandardCharsets.UTF_8), List.of(), 0, p))
            .join();
      }
    }
  }

  /** Records what the listener was told, in order: "+p" assigned, "-p" revoked. */
  private static final class Recorder implements RebalanceListener {
    final List<String> events = Collections.synchronizedList(new ArrayList<>());

    @Override
    public void onAssigned(List<TopicPartition> partitions) {
      partitions.forEach(tp -> events.add("+" + tp.partition()));
    }

    @Override
    public void onRevoked(List<TopicPartition> partitions) {
      partitions.forEach(tp -> events.add("-" + tp.partition()));
    }
  }

  /** Reads from the members in turn until want messages came; returns who got each value. */
  private static Map<String, GroupConsumer> consumeAll(int want, GroupConsumer... members) throws Exception {
    Map<String, GroupConsumer> by = new HashMap<>();
    long deadline = System.currentTimeMillis() + WAIT_MS;
    while (by.size() < want) {
      assertTrue(System.currentTimeMillis() < deadline, "received " + by.size() + " of " + want);
      for (GroupConsumer g : members) {
        ReceivedMessage m = g.next(20);
        if (m == null) {
          continue;
        }
        String v = new String(m.value(), StandardCharsets.UTF_8);
        assertNull(by.put(v, g), v + " was consumed twice");
        assertTrue(g.assignment().contains(new TopicPartition(m.topic(), m.partition())),
            v + " came to a member that does not own its partition");
      }
    }
    return by;
  }

  @Test
  void autoCommitAndTheRebalanceListener() throws Exception {
    Client admin = client();
    String topic = "g-auto";
    String group = "g-auto-members";
    admin.createTopic(topic, 4, null).join();
    Recorder ra = new Recorder();
    GroupConfig gc = GroupConfig.defaults().fromEarliest().withAutoCommitIntervalMs(100);
    GroupConsumer a = client().joinGroup(group, List.of(topic), gc.withListener(ra)).join();
    waitFor("a owns every partition", () -> a.assignment().size() == 4);
    GroupConsumer b = client().joinGroup(group, List.of(topic), gc).join();
    waitFor("two partitions each", () -> a.assignment().size() == 2 && b.assignment().size() == 2);
    assertEquals(List.of("+0", "+1", "+2", "+3"), ra.events.subList(0, 4));
    assertEquals(6, ra.events.size(), "a's listener: " + ra.events);
    assertNotEquals(a.memberId(), b.memberId());

    publish(admin, topic, 4, 5);
    consumeAll(20, a, b);
    // Auto-commit stores what was processed: all but the last message each member was handed,
    // which counts as processed once it asks for the next.
    waitFor("auto-commit reaches all but the last message of each member", () -> {
      List<Client.GroupOffset> offs = admin.committedOffsets(group, List.of()).join();
      long sum = offs.stream().mapToLong(Client.GroupOffset::offset).sum();
      return offs.size() == 4 && offs.stream().allMatch(o -> o.offset() >= 4) && sum >= 18;
    });

    // b leaves (committing on close): a takes b's partitions from there and is told so.
    List<TopicPartition> bOwned = b.assignment();
    b.close();
    waitFor("a owns every partition again", () -> a.assignment().size() == 4);
    assertEquals(List.of("+" + bOwned.get(0).partition(), "+" + bOwned.get(1).partition()),
        ra.events.subList(6, ra.events.size()));
    Client.GroupDescription d = admin.describeGroup(group).join();
    assertEquals(1, d.members().size(), d.toString());
    assertEquals(a.memberId(), d.members().get(0).memberId());
    assertEquals(4, d.members().get(0).assigned().size());

    publish(admin, topic, 4, 1);
    for (int i = 0; i < 4; i++) {
      ReceivedMessage m = a.next(WAIT_MS);
      assertNotNull(m, "a received nothing after b left");
      assertEquals(5, m.offset(), "a read " + m.partition() + "@" + m.offset() + ", not the first uncommitted");
    }
    a.close();
    for (Client.GroupOffset o : admin.committedOffsets(group, List.of()).join()) {
      assertEquals(6, o.offset(), "after close: " + o);
      assertEquals(6, o.highWatermark(), "after close: " + o);
    }
    assertThrows(IllegalStateException.class, () -> a.next(10));
    // An empty group's offsets may move back; a dry run only says where.
    for (boolean dry : new boolean[] {true, false}) {
      List<Client.GroupOffset> set = admin.resetOffsets(group, topic, List.of(1), SubscribeConfig.OFFSET, 2, dry).join();
      assertEquals(List.of(new Client.GroupOffset(new TopicPartition(topic, 1), 2, 6)), set);
      long now = admin.committedOffsets(group, List.of(new TopicPartition(topic, 1))).join().get(0).offset();
      assertEquals(dry ? 6 : 2, now, "after resetOffsets, dryRun " + dry);
    }
    List<Client.GroupSummary> groups = admin.listGroups().join();
    assertEquals(List.of(new Client.GroupSummary(group, "empty", 0, groups.get(0).generation())), groups);
  }

  @Test
  void aManualCommitInsideOnRevokedIsWhereTheNextOwnerStarts() throws Exception {
    Client admin = client();
    String topic = "g-manual";
    String group = "g-manual-members";
    admin.createTopic(topic, 2, null).join();
    publish(admin, topic, 2, 3);
    AtomicReference<GroupConsumer> self = new AtomicReference<>();
    AtomicReference<Throwable> revokeResult = new AtomicReference<>();
    RebalanceListener commitOnRevoke = new RebalanceListener() {
      @Override
      public void onRevoked(List<TopicPartition> partitions) {
        try {
          self.get().commit();
          revokeResult.set(new Throwable("committed"));
        } catch (RuntimeException e) {
          revokeResult.set(e);
        }
      }
    };
    GroupConfig manual = GroupConfig.defaults().fromEarliest().withAutoCommit(false);
    GroupConsumer a = client().joinGroup(group, List.of(topic), manual.withListener(commitOnRevoke)).join();
    self.set(a);
    consumeAll(6, a);
    // Asking for the next marks the last one processed, so a commit covers all six.
    assertNull(a.next(50));
    // Without a commit nothing is committed: auto-commit is off.
    Thread.sleep(300);
    assertEquals(List.of(), admin.committedOffsets(group, List.of()).join());

    GroupConsumer b = client().joinGroup(group, List.of(topic), manual).join();
    waitFor("one partition each", () -> b.assignment().size() == 1 && a.assignment().size() == 1);
    assertEquals("committed", revokeResult.get().getMessage(), "commit inside onRevoked");
    TopicPartition moved = b.assignment().get(0);
    GregorException stale = assertThrows(GregorException.class, () -> a.commit(Map.of(moved, 3L)));
    assertEquals(ErrorCode.STALE_GENERATION, stale.errorCode());

    publish(admin, topic, 2, 4);
    ReceivedMessage m = b.next(WAIT_MS);
    assertNotNull(m, "the new owner received nothing");
    assertEquals(moved.partition(), m.partition());
    assertEquals(3, m.offset(), "the new owner starts after a's commit in onRevoked");
  }

  @Test
  void aStaticMemberIsFencedByItsReplacement() throws Exception {
    Client admin = client();
    String topic = "g-static";
    String group = "g-static-members";
    admin.createTopic(topic, 2, null).join();
    GroupConfig gc = GroupConfig.defaults().withInstanceId("worker-1");
    GroupConsumer old = client().joinGroup(group, List.of(topic), gc).join();
    waitFor("the old process owns both partitions", () -> old.assignment().size() == 2);
    CompletionException busy = assertThrows(CompletionException.class,
        () -> admin.resetOffsets(group, topic, List.of(), SubscribeConfig.EARLIEST, 0, false).join());
    assertEquals(ErrorCode.GROUP_NOT_EMPTY, ((GregorException) Client.unwrap(busy)).errorCode());
    GroupConsumer replacement = client().joinGroup(group, List.of(topic), gc).join();
    waitFor("the replacement owns both partitions", () -> replacement.assignment().size() == 2);
    GregorException fenced = assertThrows(GregorException.class, () -> old.next(WAIT_MS));
    assertEquals(ErrorCode.FENCED_INSTANCE, fenced.errorCode());
    assertEquals(List.of(), old.assignment());
    // A static member does not leave on close: its partitions wait for it.
    replacement.close();
    Client.GroupDescription d = admin.describeGroup(group).join();
    assertEquals(1, d.members().size(), d.toString());
    assertEquals("worker-1", d.members().get(0).instanceId());
  }
}
