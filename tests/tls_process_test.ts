// TLS over real broker processes with real certificates made by openssl: a good certificate works;
// a wrong CA, an expired certificate, a hostname mismatch, a missing or foreign client certificate
// under mutual TLS, and plaintext against TLS each fail at once with their reason, while a good
// client publishes throughout. Certificates rotate on SIGHUP. A public host without TLS refuses to
// start. Three nodes form a cluster over mutual TLS on the cluster port.

import assert from "node:assert/strict";
import { connect, type ConnectOptions, TlsHandshakeFailed } from "../src/client/mod.ts";
import type { TlsFailure } from "../src/io/types.ts";
import {
  clusterFormed,
  createTopicRetrying,
  freePort,
  killAll,
  retry,
  sleep,
  spawnBroker,
  startClusterNode,
} from "./_broker_process.ts";
import { haveOpenssl, makeTestCerts, type TestCerts } from "./_tls_certs.ts";

const OPENSSL = await haveOpenssl();
if (!OPENSSL) console.log("tls_process_test: skipped, openssl is not installed");

/** How long a rogue node gets to try to join (its gossip rounds are 200 ms apart), ms. */
const ROGUE_WAIT_MS = 3_000;

/** A refused handshake must be reported this fast: no retrying until connectTimeoutMs. */
const REFUSAL_MS_MAX = 5_000;

function tlsTest(name: string, fn: (certs: TestCerts) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !OPENSSL,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const certs = await makeTestCerts();
      try {
        await fn(certs);
      } finally {
        await Deno.remove(certs.dir, { recursive: true });
      }
    },
  });
}

const read = (path: string): string => Deno.readTextFileSync(path);

/** Connects with `opts` and expects a TlsHandshakeFailed for `reason`, quickly; returns it. */
async function refused(
  port: number,
  opts: Partial<ConnectOptions>,
  reason: TlsFailure,
): Promise<TlsHandshakeFailed> {
  const started = Date.now();
  let caught: unknown = null;
  try {
    const c = await connect({ port, connectTimeoutMs: 20_000, ...opts });
    await c.close();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof TlsHandshakeFailed, `expected TlsHandshakeFailed, got ${caught}`);
  assert.equal(caught.reason, reason, caught.message);
  const tookMs = Date.now() - started;
  assert.ok(tookMs < REFUSAL_MS_MAX, `refused after ${tookMs} ms: ${caught.message}`);
  console.log(`  ${reason}: ${caught.message}`);
  return caught;
}

/** Waits until the broker logged `text` (it logs the outcome of a SIGHUP reload). */
async function logged(lines: string[], text: string, after: number): Promise<void> {
  await retry(`the broker logs "${text}"`, () => {
    if (lines.slice(after).some((l) => l.includes(text))) return Promise.resolve();
    return Promise.reject(new Error(`not yet; last lines:\n${lines.slice(-5).join("\n")}`));
  });
}

tlsTest(
  "TLS broker: good certificates work; each bad one fails with its reason while a good client publishes; SIGHUP rotates",
  async (certs) => {
    const live = { cert: `${certs.dir}/live.pem`, key: `${certs.dir}/live.key` };
    await Deno.copyFile(certs.server.cert, live.cert);
    await Deno.copyFile(certs.server.key, live.key);
    const port = freePort();
    const broker = await spawnBroker([
      "--port",
      String(port),
      "--data-dir",
      `${certs.dir}/data`,
      "--no-metrics-enabled",
      "--tls-cert",
      live.cert,
      "--tls-key",
      live.key,
      "--tls-ca",
      certs.ca,
      "--tls-client-cert-required",
    ]);
    const good = {
      ca: read(certs.ca),
      cert: read(certs.client.cert),
      key: read(certs.client.key),
    };
    const publisher = await connect({ port, tls: good });
    let stop = false;
    let publishing = Promise.resolve();
    try {
      await publisher.admin.createTopic("steady", { partitions: 1 });
      let published = 0;
      let failed: unknown = null;
      publishing = (async () => {
        try {
          while (!stop) {
            await publisher.publish("steady", { value: `m${published}` });
            published++;
            await sleep(5);
          }
        } catch (err) {
          failed = err;
        }
      })();

      await refused(port, { tls: { ...good, ca: read(certs.otherCa) } }, "UNKNOWN_CA");
      await refused(port, { tls: { ca: good.ca } }, "CLIENT_CERT_REQUIRED");
      const foreign = await refused(port, {
        tls: { ca: good.ca, cert: read(certs.otherClient.cert), key: read(certs.otherClient.key) },
      }, "BAD_CERTIFICATE");
      assert.match(foreign.message, /it refused this client's certificate/);
      await refused(port, { tls: { ...good, serverName: "other.example" } }, "HOSTNAME_MISMATCH");
      const plain = await refused(port, {}, "NOT_TLS");
      assert.match(plain.message, /speaks TLS on this port and this client does not/);

      // gregorctl takes the same certificates from flags, and says what is wrong without them.
      const ctl = async (...args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "cli/gregorctl.ts", "--broker", `127.0.0.1:${port}`, ...args],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        return { code: out.code, text };
      };
      const listed = await ctl(
        "--tls-ca",
        certs.ca,
        "--tls-cert",
        certs.client.cert,
        "--tls-key",
        certs.client.key,
        "topic",
        "list",
      );
      assert.equal(listed.code, 0, listed.text);
      assert.match(listed.text, /steady/);
      const bare = await ctl("topic", "list");
      assert.equal(bare.code, 3, bare.text);
      assert.match(bare.text, /error: TLS NOT_TLS: .*speaks TLS on this port/);
      console.log(`  gregorctl without --tls-ca: ${bare.text.trim()}`);

      // Rotation: each SIGHUP re-reads the files; connections made after it get the new one.
      for (
        const [cert, reason] of [
          [certs.wrongName.cert, "HOSTNAME_MISMATCH"],
          [certs.expired.cert, "EXPIRED"],
        ] as const
      ) {
        await Deno.copyFile(cert, live.cert);
        const mark = broker.lines.length;
        broker.child.kill("SIGHUP");
        await logged(broker.lines, "TLS certificates reloaded", mark);
        await refused(port, { tls: good }, reason);
      }
      await Deno.copyFile(certs.server.cert, live.cert);
      const mark = broker.lines.length;
      broker.child.kill("SIGHUP");
      await logged(broker.lines, "TLS certificates reloaded", mark);
      // A key that is not a key is refused; the certificate in use stays.
      await Deno.writeTextFile(live.key, "not a key\n");
      broker.child.kill("SIGHUP");
      await logged(broker.lines, "TLS certificates not reloaded, the old ones stay", mark);

      const late = await connect({ port, tls: good });
      try {
        const sub = await late.subscribe("steady", { from: "earliest" });
        stop = true;
        await publishing;
        assert.equal(failed, null, "the good client publishes throughout");
        assert.ok(published > 10, `the good client published ${published} messages throughout`);
        let seen = 0;
        for await (const m of sub) {
          assert.equal(m.text(), `m${m.offset}`);
          m.ack();
          if (++seen === published) break;
        }
        assert.equal(seen, published);
      } finally {
        await late.close();
      }
      // The broker logged the handshakes it refused, with their reason.
      for (const reason of ["CLIENT_CERT_REQUIRED", "UNKNOWN_CA"]) {
        assert.ok(broker.lines.some((l) => l.includes(reason)), broker.lines.join("\n"));
      }
    } finally {
      stop = true;
      await publishing;
      await publisher.close();
      await killAll([broker]);
    }
  },
);

tlsTest(
  "a public host without TLS refuses to start in one line; a TLS client to a plaintext port is told",
  async (certs) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli/broker.ts",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--data-dir",
        certs.dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr).trimEnd();
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(stderr, /^Refusing to start: host 0\.0\.0\.0 .*--allow-insecure-public/);

    const port = freePort();
    const broker = await spawnBroker([
      "--port",
      String(port),
      "--data-dir",
      `${certs.dir}/data`,
      "--no-metrics-enabled",
    ]);
    try {
      await refused(port, { tls: { ca: read(certs.ca) } }, "NOT_TLS");
      // The broker still serves plaintext clients.
      const c = await connect({ port });
      await c.admin.createTopic("after", { partitions: 1 });
      await c.close();
    } finally {
      await killAll([broker]);
    }
  },
);

tlsTest("three nodes form a cluster over mutual TLS on the cluster port", async (certs) => {
  const tls = [
    "--cluster-tls-cert",
    certs.server.cert,
    "--cluster-tls-key",
    certs.server.key,
    "--cluster-tls-ca",
    certs.ca,
  ];
  const ports = [0, 1, 2].map(() => ({ client: freePort(), cluster: freePort() }));
  const seeds = [`127.0.0.1:${ports[0]!.cluster}`];
  const procs = [];
  const clients = [];
  try {
    for (let i = 0; i < 3; i++) {
      procs.push(
        await startClusterNode(`${certs.dir}/n${i}`, ports[i]!, i === 0 ? [] : seeds, tls),
      );
    }
    for (const p of procs) clients.push(await connect({ port: p.clientPort }));
    const controller = clients[await clusterFormed(procs, clients)]!;
    await createTopicRetrying(controller, "r", { partitions: 1 });
    const p = clients[0]!.producer({ acks: "quorum" });
    await retry("a quorum produce", () => p.send("r", { value: "over TLS" }));
    const described = await controller.admin.describeTopic("r");
    assert.equal(described.partitions[0]!.replicas.length, 3);
    // A node with the seeds but without a cluster certificate is turned away at the handshake:
    // it never becomes a member.
    const rogue = await startClusterNode(`${certs.dir}/rogue`, {
      client: freePort(),
      cluster: freePort(),
    }, seeds);
    procs.push(rogue);
    await sleep(ROGUE_WAIT_MS);
    const members = (await controller.admin.metadata([])).nodes.map((n) => n.id);
    assert.equal(members.length, 3, `members: ${members.join(", ")}`);
    assert.ok(!members.includes(rogue.nodeId), "the rogue node is not a member");
    assert.ok(
      procs[0]!.lines.some((l) => l.includes("Cluster port:") && l.includes("NOT_TLS")),
      `the seed logs the refused handshake:\n${procs[0]!.lines.join("\n")}`,
    );
  } finally {
    for (const c of clients) await c.close();
    await killAll(procs);
  }
});
