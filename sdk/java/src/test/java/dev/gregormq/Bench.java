package dev.gregormq;

import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The Java side of bench/java_sdk.ts: produce of {@code size}-byte messages, then
 * produce→consume, each with at most {@code window} unconfirmed messages on a memory topic; one
 * JSON line per scenario. Arguments: server topicPrefix count size window lingerMs.
 */
public final class Bench {
  private Bench() {}

  public static void main(String[] args) throws Exception {
    String server = args[0];
    String prefix = args[1];
    int count = Integer.parseInt(args[2]);
    int size = Integer.parseInt(args[3]);
    int window = Integer.parseInt(args[4]);
    int linger = Integer.parseInt(args[5]);
    byte[] value = new byte[size];
    for (int i = 0; i < size; i++) {
      value[i] = (byte) ('a' + i % 26);
    }
    try (Client client = Client.connect(server).get(30, TimeUnit.SECONDS)) {
      for (String scenario : new String[] {"produce", "produce-consume"}) {
        String topic = prefix + "-" + scenario;
        client.createTopic(topic, 1, Map.of("persistence", "memory")).get(30, TimeUnit.SECONDS);
        double seconds = run(client, topic, scenario.equals("produce-consume"), value, count, window, linger);
        System.out.printf("{\"client\":\"java\",\"scenario\":\"%s\",\"messages\":%d,\"bytes\":%d,"
            + "\"seconds\":%.4f,\"msgsPerSec\":%.1f}%n", scenario, count, size, seconds, count / seconds);
      }
    }
  }

  private static double run(Client client, String topic, boolean consume, byte[] value, int count,
      int window, int linger) throws Exception {
    Semaphore slots = new Semaphore(window);
    AtomicReference<Throwable> failed = new AtomicReference<>();
    Subscription sub = consume ? client.subscribe(topic, SubscribeConfig.defaults().fromEarliest()
        .withNoAcks(true).withWindowMessages(window)).get(30, TimeUnit.SECONDS) : null;
    Producer p = client.producer(ProducerConfig.defaults().withLingerMs(linger));
    long start = System.nanoTime();
    Thread reader = null;
    if (consume) {
      reader = new Thread(() -> {
        try {
          for (int n = 0; n < count; n++) {
            if (sub.next(30_000) == null) {
              throw new IllegalStateException("no message in 30 s after " + n);
            }
            slots.release();
          }
        } catch (Throwable e) {
          failed.set(e);
        }
      });
      reader.start();
    }
    Message m = new Message(null, value, java.util.List.of(), 0, null);
    for (int n = 0; n < count; n++) {
      if (!slots.tryAcquire(30, TimeUnit.SECONDS)) {
        throw new IllegalStateException("no confirmation in 30 s", failed.get());
      }
      p.send(topic, m).whenComplete((r, e) -> {
        if (e != null) {
          failed.set(e);
        }
        if (!consume) {
          slots.release();
        }
      });
    }
    p.flush().get(60, TimeUnit.SECONDS);
    if (reader != null) {
      reader.join(60_000);
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    if (failed.get() != null) {
      throw new IllegalStateException("the run failed", failed.get());
    }
    p.close();
    if (sub != null) {
      sub.close();
    }
    return seconds;
  }
}
