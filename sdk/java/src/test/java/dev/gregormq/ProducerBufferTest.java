package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

/** The producer's bound on the bytes of messages waiting for an answer, on a real broker. */
class ProducerBufferTest {
  static final long CALL_TIMEOUT_MS = 30_000;

  private static void signal(BrokerProcess b, String sig) throws Exception {
    Process kill = new ProcessBuilder("kill", "-" + sig, Long.toString(b.process.pid())).start();
    assertEquals(0, kill.waitFor());
  }

  /**
   * With the broker stopped (SIGSTOP), send takes messages until bufferBytesMax bytes wait for an
   * answer; the next waits maxBlockMs and its future fails with a TimeoutException. Once the
   * broker runs again every queued message is stored and sends go on.
   */
  @Test
  void sendWaitsForRoomWhileTheBufferIsFull() throws Exception {
    try (BrokerProcess b = BrokerProcess.start();
        Client c = Client.connect(b.addr).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
      String topic = "java-buffer";
      c.createTopic(topic, 1, null).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      int bufferBytes = 64 * 1024;
      Producer p = c.producer(ProducerConfig.defaults().withLingerMs(0)
          .withBufferBytesMax(bufferBytes).withMaxBlockMs(300));
      p.send(topic, Message.of("first")).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      signal(b, "STOP");
      List<CompletableFuture<Producer.Result>> queued = new ArrayList<>();
      try {
        byte[] value = new byte[1000]; // counted as 1016 bytes
        while (true) {
          CompletableFuture<Producer.Result> f =
              p.send(topic, new Message(null, value, List.of(), 0, null));
          if (f.isCompletedExceptionally()) {
            ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(
                ExecutionException.class, f::get);
            assertInstanceOf(TimeoutException.class, e.getCause());
            break;
          }
          queued.add(f);
          assertTrue(queued.size() <= 10 * bufferBytes / 1016, "send took far more than fits");
        }
        assertEquals(bufferBytes / 1016, queued.size());
      } finally {
        signal(b, "CONT");
      }
      Set<Long> offsets = new HashSet<>();
      for (CompletableFuture<Producer.Result> f : queued) {
        offsets.add(f.get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS).offset());
      }
      assertEquals(queued.size(), offsets.size());
      p.send(topic, Message.of("after")).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }
  }
}
