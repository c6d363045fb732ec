package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** A subscription resuming after a lost connection, against a real broker process. */
class SubscriptionResumeTest {
  /** Longest wait for any one call. */
  static final long CALL_TIMEOUT_MS = 30_000;

  /**
   * A resumption that cannot finish within next()'s timeout (the durable name is held by another
   * subscriber meanwhile) returns null and is taken up again by the next call, instead of leaving
   * the subscription waiting for deliveries that never come.
   */
  @Test
  void aResumptionCutShortByTheTimeoutGoesOnInTheNextCall() throws Exception {
    try (BrokerProcess b = BrokerProcess.start();
        CuttingProxy proxy = new CuttingProxy(b.addr, 0, 0);
        Client other = Client.connect(b.addr).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        Client c = Client.connect(proxy.addr()).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
      other.createTopic("java-resume-short", 1, null).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      for (int i = 0; i < 20; i++) {
        other.publish("java-resume-short", Message.of("m" + i)).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      }
      SubscribeConfig sc = SubscribeConfig.defaults().fromEarliest().withDurable("d").withWindowMessages(10);
      Subscription sub = c.subscribe("java-resume-short", sc).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
      assertNotNull(sub.next(CALL_TIMEOUT_MS));
      // Nothing resumes before the next next(): the other subscriber takes the durable name first,
      // once the broker has seen the connection closed.
      proxy.cutAll();
      Subscription held = null;
      long deadline = System.currentTimeMillis() + CALL_TIMEOUT_MS;
      while (held == null) {
        try {
          held = other.subscribe("java-resume-short", sc).join();
        } catch (CompletionException e) {
          GregorException ge = (GregorException) Client.unwrap(e);
          assertEquals(ErrorCode.SUBSCRIPTION_IN_USE, ge.errorCode());
          if (System.currentTimeMillis() > deadline) {
            throw ge;
          }
          Thread.sleep(10);
        }
      }
      // What is queued comes first; then the resumption meets SUBSCRIPTION_IN_USE until the
      // timeout.
      while (sub.next(500) != null) {
        // Drains the queue.
      }
      held.close();
      assertNotNull(sub.next(10_000), "the subscription did not resume once the name was free");
    }
  }
}
