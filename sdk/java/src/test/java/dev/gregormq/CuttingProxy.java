package dev.gregormq;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy on loopback that cuts each of its first {@code cuts} connections after
 * {@code afterBytes} bytes of the broker's answers, to prove reconnects and idempotent resends.
 */
final class CuttingProxy implements AutoCloseable {
  final ServerSocket server;
  final AtomicInteger cut = new AtomicInteger();
  private final AtomicInteger cutsLeft;
  private final String target;
  private final long afterBytes;
  private final List<Socket> open = new ArrayList<>();

  CuttingProxy(String target, int cuts, long afterBytes) throws IOException {
    this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    this.target = target;
    this.afterBytes = afterBytes;
    this.cutsLeft = new AtomicInteger(cuts);
    Thread t = new Thread(this::accept, "cutting-proxy");
    t.setDaemon(true);
    t.start();
  }

  String addr() {
    return "127.0.0.1:" + server.getLocalPort();
  }

  private void accept() {
    while (true) {
      Socket c;
      try {
        c = server.accept();
      } catch (IOException e) {
        return;
      }
      Socket b = new Socket();
      try {
        int colon = target.lastIndexOf(':');
        b.connect(new InetSocketAddress(target.substring(0, colon),
            Integer.parseInt(target.substring(colon + 1))));
      } catch (IOException e) {
        closeQuietly(c);
        continue;
      }
      synchronized (open) {
        open.add(c);
        open.add(b);
      }
      boolean cutThis = cutsLeft.getAndDecrement() > 0;
      pump(c, b, -1);
      pump(b, c, cutThis ? afterBytes : -1);
    }
  }

  private void pump(Socket from, Socket to, long limit) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[8192];
      long sent = 0;
      try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
        while (limit < 0 || sent < limit) {
          int n = in.read(buf, 0, (int) (limit < 0 ? buf.length : Math.min(buf.length, limit - sent)));
          if (n < 0) {
            break;
          }
          out.write(buf, 0, n);
          out.flush();
          sent += n;
        }
        if (limit >= 0 && sent >= limit) {
          cut.incrementAndGet();
        }
      } catch (IOException e) {
        // Either side closing ends this direction.
      } finally {
        closeQuietly(from);
        closeQuietly(to);
      }
    }, "cutting-proxy-pump");
    t.setDaemon(true);
    t.start();
  }

  /** Closes every connection accepted so far. */
  void cutAll() {
    synchronized (open) {
      for (Socket s : open) {
        closeQuietly(s);
      }
      open.clear();
    }
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException e) {
      // Already closed.
    }
  }

  @Override
  public void close() throws IOException {
    server.close();
  }
}
