package dev.gregormq;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * One TCP connection to a broker: a reader thread completes each request's future by correlation
 * id and hands DELIVER pushes to their subscription. When the connection ends, every pending
 * future fails with ConnectionLostException and every subscription on it is told.
 */
final class Connection {
  final String addr;
  private final Socket socket;
  private final OutputStream out;
  private final Object writeLock = new Object();
  private final Map<Long, CompletableFuture<Frame>> pending = new ConcurrentHashMap<>();
  private final Map<Long, Consumer<Map<String, Object>>> subs = new ConcurrentHashMap<>();
  private final Map<Long, Runnable> lostHandlers = new ConcurrentHashMap<>();
  private long nextId = 1;
  private volatile RuntimeException closedBecause;
  volatile int payloadBytesMax = Frame.PAYLOAD_BYTES_MAX_DEFAULT;

  private Connection(String addr, Socket socket) throws IOException {
    this.addr = addr;
    this.socket = socket;
    this.out = new BufferedOutputStream(socket.getOutputStream(), 64 * 1024);
    Thread reader = new Thread(this::readLoop, "gregormq-reader-" + addr);
    reader.setDaemon(true);
    reader.start();
  }

  /** Connects and says HELLO; fails with the broker's error or an IOException's message. */
  static Connection open(String addr, String clientId, byte[] credential, int connectTimeoutMs)
      throws IOException {
    int colon = addr.lastIndexOf(':');
    if (colon < 0) {
      throw new IllegalArgumentException("server " + addr + " is not host:port");
    }
    Socket s = new Socket();
    try {
      s.setTcpNoDelay(true);
      s.connect(new InetSocketAddress(addr.substring(0, colon),
          Integer.parseInt(addr.substring(colon + 1))), connectTimeoutMs);
    } catch (IOException e) {
      s.close();
      throw e;
    }
    Connection c = new Connection(addr, s);
    Map<String, Object> hello = Schema.newMsg();
    hello.put("versionMin", 1L);
    hello.put("versionMax", 1L);
    hello.put("clientId", clientId);
    hello.put("credential", credential);
    try {
      Map<String, Object> resp = c.request(Protocol.HELLO, hello).get(connectTimeoutMs,
          java.util.concurrent.TimeUnit.MILLISECONDS);
      c.payloadBytesMax = (int) Math.min(Integer.MAX_VALUE, (Long) resp.get("payloadBytesMax"));
      return c;
    } catch (Exception e) {
      c.close(new ConnectionLostException("handshake with " + addr + " failed", e));
      Throwable cause = e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e;
      if (cause instanceof GregorException ge) {
        throw ge;
      }
      throw new IOException("handshake with " + addr + " failed: " + cause, cause);
    }
  }

  boolean isClosed() {
    return closedBecause != null;
  }

  /** Sends a request and completes with the decoded response, or the broker's error. */
  CompletableFuture<Map<String, Object>> request(int opcode, Map<String, ?> msg) {
    CompletableFuture<Frame> f = new CompletableFuture<>();
    send(opcode, msg, f);
    return f.thenApply(frame -> {
      Schema s = Protocol.schemaFor(frame.opcode(), frame.flags());
      Map<String, Object> m = Payload.decode(s, frame.payload());
      if ((frame.flags() & Frame.FLAG_ERROR) != 0) {
        throw new GregorException(((Long) m.get("code")).intValue(), (String) m.get("message"));
      }
      return m;
    });
  }

  /** Sends a frame that has no answer (CREDIT, ACK, an acks=0 PRODUCE). */
  void sendOneWay(int opcode, Map<String, ?> msg) {
    send(opcode, msg, null);
  }

  private void send(int opcode, Map<String, ?> msg, CompletableFuture<Frame> answer) {
    byte[] payload;
    try {
      payload = Payload.encode(Protocol.SCHEMAS.get(Protocol.opcodeName(opcode))[0], msg);
    } catch (RuntimeException e) {
      if (answer != null) {
        answer.completeExceptionally(e);
        return;
      }
      throw e;
    }
    synchronized (writeLock) {
      RuntimeException why = closedBecause;
      if (why != null) {
        if (answer != null) {
          answer.completeExceptionally(why);
          return;
        }
        throw why;
      }
      long id = nextId++;
      if (answer != null) {
        pending.put(id, answer);
      }
      try {
        out.write(new Frame(0, opcode, id, payload).encode());
        out.flush();
      } catch (IOException e) {
        close(new ConnectionLostException(addr + ": write failed: " + e.getMessage(), e));
      }
    }
  }

  void addSubscription(long id, Consumer<Map<String, Object>> onDeliver, Runnable onLost) {
    subs.put(id, onDeliver);
    lostHandlers.put(id, onLost);
    if (isClosed()) {
      onLost.run();
    }
  }

  void removeSubscription(long id) {
    subs.remove(id);
    lostHandlers.remove(id);
  }

  private void readLoop() {
    try {
      BufferedInputStream in = new BufferedInputStream(socket.getInputStream(), 64 * 1024);
      while (true) {
        Frame f = Frame.read(in, Math.max(payloadBytesMax, Frame.PAYLOAD_BYTES_MAX_DEFAULT));
        if ((f.flags() & Frame.FLAG_PUSH) != 0) {
          Map<String, Object> m = Payload.decode(Protocol.schemaFor(f.opcode(), 0), f.payload());
          Consumer<Map<String, Object>> sub = subs.get((Long) m.get("subscriptionId"));
          if (sub != null) {
            sub.accept(m);
          }
          continue;
        }
        CompletableFuture<Frame> p = pending.remove(f.correlationId());
        if (p != null) {
          p.complete(f);
        }
      }
    } catch (IOException | RuntimeException e) {
      close(new ConnectionLostException(addr + ": connection lost: " + e.getMessage(), e));
    }
  }

  /** Ends the connection; pending requests and subscriptions learn why. */
  void close(RuntimeException why) {
    synchronized (writeLock) {
      if (closedBecause != null) {
        return;
      }
      closedBecause = why;
    }
    try {
      socket.close();
    } catch (IOException e) {
      // Closing a socket that already failed has nothing left to report.
    }
    List<CompletableFuture<Frame>> waiting = new ArrayList<>(pending.values());
    pending.clear();
    for (CompletableFuture<Frame> p : waiting) {
      p.completeExceptionally(why);
    }
    for (Runnable r : new ArrayList<>(lostHandlers.values())) {
      r.run();
    }
  }
}
