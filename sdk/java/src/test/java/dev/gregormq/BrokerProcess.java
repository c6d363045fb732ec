package dev.gregormq;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real broker process (cli/broker.ts under Deno) on a loopback port with a temp data dir;
 * its first stdout line is JSON whose listen field is host:port.
 */
final class BrokerProcess implements AutoCloseable {
  /** How long a broker may take to print its listen line on a loaded 2-core machine. */
  static final long START_TIMEOUT_MS = 60_000;

  final Process process;
  final String addr;
  /** Its cluster address, for a broker started with a cluster port; else "". */
  final String cluster;
  /** Its node id; "" outside a cluster. */
  final String nodeId;
  private final Path dataDir;

  private BrokerProcess(Process process, String addr, String cluster, String nodeId, Path dataDir) {
    this.process = process;
    this.addr = addr;
    this.cluster = cluster;
    this.nodeId = nodeId;
    this.dataDir = dataDir;
  }

  static String deno() {
    String d = System.getenv("GREGORMQ_DENO");
    return d == null || d.isEmpty() ? "deno" : d;
  }

  /**
   * Brokers that form one replicating cluster, as conformance/README.md says: the first founds it,
   * the others join it through its cluster address.
   */
  static List<BrokerProcess> startCluster(int n) throws Exception {
    List<String> flags = List.of("--cluster-port", "0", "--cluster-replicate",
        "--cluster-bootstrap-expect", String.valueOf(n));
    List<BrokerProcess> out = new ArrayList<>();
    try {
      out.add(start(flags.toArray(String[]::new)));
      for (int i = 1; i < n; i++) {
        List<String> join = new ArrayList<>(flags);
        join.addAll(List.of("--seeds", out.get(0).cluster));
        out.add(start(join.toArray(String[]::new)));
      }
    } catch (Exception e) {
      for (BrokerProcess b : out) {
        b.close();
      }
      throw e;
    }
    return out;
  }

  static BrokerProcess start(String... extra) throws Exception {
    Path repo = Path.of(System.getProperty("gregormq.repo", "../..")).toAbsolutePath().normalize();
    Path dir = Files.createTempDirectory("gregormq-java-broker");
    List<String> command = new ArrayList<>(List.of(deno(), "run", "-A",
        repo.resolve("cli/broker.ts").toString(), "--port", "0", "--data-dir", dir.toString(),
        "--no-metrics-enabled", "--fsync", "never"));
    command.addAll(List.of(extra));
    ProcessBuilder pb = new ProcessBuilder(command);
    pb.redirectError(ProcessBuilder.Redirect.INHERIT);
    Process p = pb.start();
    BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    CompletableFuture<String> first = CompletableFuture.supplyAsync(() -> {
      try {
        String line = r.readLine();
        Thread drain = new Thread(() -> {
          try {
            while (r.readLine() != null) {
              // Keeps the pipe drained so the broker never blocks on a full stdout.
            }
          } catch (IOException e) {
            // The broker exited.
          }
        }, "broker-stdout");
        drain.setDaemon(true);
        drain.start();
        return line;
      } catch (IOException e) {
        return null;
      }
    });
    String line;
    try {
      line = first.get(START_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    } catch (Exception e) {
      p.destroyForcibly();
      throw new IllegalStateException("the broker did not listen within " + START_TIMEOUT_MS + " ms", e);
    }
    if (line == null) {
      throw new IllegalStateException("the broker exited before listening");
    }
    JsonNode said = GoldenTest.JSON.readTree(line);
    JsonNode listen = said.get("listen");
    if (listen == null) {
      p.destroyForcibly();
      throw new IllegalStateException("the broker's first line is not its listen address: " + line);
    }
    return new BrokerProcess(p, listen.asText(), said.path("cluster").asText(""),
        said.path("nodeId").asText(""), dir);
  }

  /** Kills the broker and removes its data dir. */
  @Override
  public void close() throws Exception {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
    try (Stream<Path> all = Files.walk(dataDir)) {
      List<Path> paths = all.sorted(Comparator.reverseOrder()).toList();
      for (Path x : paths) {
        Files.deleteIfExists(x);
      }
    }
  }
}
