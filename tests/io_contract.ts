// The I/O seam's contract as executable tests, run against every implementation (the real one in
// io_contract_deno_test.ts, the simulated one beside it) so the twins cannot drift apart.

import assert from "node:assert/strict";
import {
  AddressInUse,
  AlreadyExists,
  Closed,
  ConnectionRefused,
  Locked,
  NotFound,
  TlsConfigError,
  TlsHandshakeFailed,
} from "../src/io/errors.ts";
import { SeededRandom } from "../src/io/prng.ts";
import type {
  Conn,
  Env,
  File,
  Listener,
  Network,
  TlsFailure,
  TlsHandshakeError,
  TlsServerOptions,
} from "../src/io/types.ts";
import { joinPath, readExactly, readFile, writeAll, writeFileAtomic } from "../src/io/util.ts";

/** What a contract test gets: an Env, a directory it may use freely, and the host to listen on. */
export interface ContractEnv {
  env: Env;
  dir: string;
  host: string;
}

/** A world the contract runs in: it owns setup and teardown (temp dir, or a simulated world). */
export interface ContractWorld {
  name: string;
  run(body: (t: ContractEnv) => Promise<void>): Promise<void>;
  /** Certificates this world's Network accepts for its contract host; omitted: TLS tests skip. */
  certs?: ContractCerts;
}

/** A PEM certificate and its key. */
export interface CertPair {
  cert: string;
  key: string;
}

/** PEM texts for the TLS contract, all for the world's contract host unless said otherwise. */
export interface ContractCerts {
  /** The CA that signs `server`, `expired`, `wrongName` and `client`. */
  ca: string;
  /** A CA nothing here trusts, and a client certificate it signed. */
  otherCa: string;
  otherClient: CertPair;
  server: CertPair;
  /** Expired before the test began. */
  expired: CertPair;
  /** Valid, but for another name only. */
  wrongName: CertPair;
  /** A client certificate whose subject is "CN=alice". */
  client: CertPair;
}

/** Bytes streamed one way in the ordering test. */
const STREAM_BYTES = 1 << 20;
/** Bytes streamed each way in the two-directions test. */
const DUPLEX_BYTES = 256 << 10;
/** Bytes written before the writer closes in the end-of-stream test. */
const EOF_BYTES = 64 << 10;
/** Clients connecting at once in the many-connections test. */
const CLIENTS = 32;
/** Odd sizes so that write and read boundaries never line up by accident. */
const WRITE_SIZES = [1, 5, 17, 255, 999, 4097, 65537, 131071] as const;
const READ_SIZES = [1, 3, 7, 61, 509, 1021, 4093, 16381] as const;
/** Concurrent operations of each kind in the one-handle concurrency test. */
const FILE_OPS = 64;

/** One contract test, as handed to a test runner. */
export interface ContractTest {
  name: string;
  /** The world cannot run it (no certificates for the TLS tests). */
  ignore: boolean;
  fn: () => Promise<void>;
}

/**
 * Registers every contract test as "<world.name>: <behaviour>" with `register`: `Deno.test` by
 * default, Node's test runner for the Node build (tests/node/io_contract_node.ts).
 */
export function defineIoContractTests(
  world: ContractWorld,
  register: (test: ContractTest) => void = (test) => Deno.test(test),
): void {
  const test = (behaviour: string, body: (t: ContractEnv) => Promise<void> | void): void => {
    register({
      name: `${world.name}: ${behaviour}`,
      ignore: false,
      fn: () => world.run(async (t) => await body(t)),
    });
  };

  // --- Network -------------------------------------------------------------------------------

  const tlsTest = (
    behaviour: string,
    body: (t: ContractEnv, c: ContractCerts) => Promise<void>,
  ) => {
    register({
      name: `${world.name}: ${behaviour}`,
      ignore: world.certs === undefined,
      fn: () => world.run(async (t) => await body(t, world.certs!)),
    });
  };

  tlsTest(
    "TLS: bytes flow both ways; mutual TLS gives the server the client's subject",
    async (t, c) => {
      for (const mutual of [false, true]) {
        const listener = await t.env.net.listen({ host: t.host, port: 0 }, {
          tls: { ...serverTls(c, c.server), requireClientCert: mutual },
        });
        try {
          const [client, server] = await Promise.all([
            t.env.net.connect(listener.addr, {
              timeoutMs: 5000,
              tls: {
                caPem: c.ca,
                ...(mutual ? { certPem: c.client.cert, keyPem: c.client.key } : {}),
              },
            }),
            listener.accept(),
          ]);
          assert.ok(server);
          await writeAll(client, new Uint8Array([1, 2, 3]));
          const got = new Uint8Array(3);
          await readExactly(server, got);
          assert.deepEqual(got, new Uint8Array([1, 2, 3]));
          await writeAll(server, new Uint8Array([4]));
          const back = new Uint8Array(1);
          await readExactly(client, back);
          assert.deepEqual(back, new Uint8Array([4]));
          assert.equal(server.tlsPeerSubject, mutual ? "CN=alice" : undefined);
          client.close();
          assert.equal(await server.read(new Uint8Array(1)), null);
          server.close();
        } finally {
          listener.close();
        }
      }
    },
  );

  tlsTest(
    "TLS: a wrong CA, an expired or misnamed certificate fail connect with their reason; the listener serves on",
    async (t, c) => {
      const cases: [CertPair, string, TlsFailure][] = [
        [c.server, c.otherCa, "UNKNOWN_CA"],
        [c.expired, c.ca, "EXPIRED"],
        [c.wrongName, c.ca, "HOSTNAME_MISMATCH"],
      ];
      for (const [pair, ca, reason] of cases) {
        const reports: TlsHandshakeError[] = [];
        const listener = await t.env.net.listen({ host: t.host, port: 0 }, {
          tls: { ...serverTls(c, pair), onHandshakeError: (e) => reports.push(e) },
        });
        try {
          const accepting = listener.accept();
          await assert.rejects(
            t.env.net.connect(listener.addr, { timeoutMs: 5000, tls: { caPem: ca } }),
            (err) => err instanceof TlsHandshakeFailed && err.reason === reason,
          );
          // The listener serves the next client.
          const ok = await t.env.net.connect(listener.addr, {
            timeoutMs: 5000,
            tls: { caPem: ca === c.otherCa ? c.ca : ca },
          }).catch((err) => err);
          if (reason === "UNKNOWN_CA") {
            assert.ok(!(ok instanceof Error), `a good client connects after a refused one: ${ok}`);
            const server = await accepting;
            assert.ok(server);
            server.close();
            ok.close();
          }
          // The server hears of it on its own schedule (the alert crosses the wire). A client that
          // refuses a name may do so after the handshake, which the server then saw succeed.
          if (reason !== "HOSTNAME_MISMATCH") await waitFor(t, () => reports.length >= 1);
        } finally {
          listener.close();
        }
      }
    },
  );

  tlsTest(
    "TLS: under mutual TLS a client without an accepted certificate never reaches accept",
    async (t, c) => {
      const reports: TlsHandshakeError[] = [];
      const listener = await t.env.net.listen({ host: t.host, port: 0 }, {
        tls: {
          ...serverTls(c, c.server),
          requireClientCert: true,
          onHandshakeError: (e) => reports.push(e),
        },
      });
      try {
        const accepting = listener.accept();
        for (const pair of [undefined, c.otherClient]) {
          // The client's own handshake may complete (TLS 1.3 checks its certificate last); the
          // connection then ends before a byte, or fails with the server's alert.
          const conn = await t.env.net.connect(listener.addr, {
            timeoutMs: 5000,
            tls: {
              caPem: c.ca,
              ...(pair === undefined ? {} : { certPem: pair.cert, keyPem: pair.key }),
            },
          }).catch((err) => err);
          if (conn instanceof Error) {
            assert.ok(conn instanceof TlsHandshakeFailed, String(conn));
          } else {
            const end = await conn.read(new Uint8Array(1)).catch((err: unknown) => err);
            assert.ok(end === null || end instanceof TlsHandshakeFailed, `read gave ${end}`);
            conn.close();
          }
        }
        await waitFor(t, () => reports.length >= 2);
        assert.equal(reports[0]!.reason, "CLIENT_CERT_REQUIRED");
        assert.ok(
          reports[1]!.reason === "UNKNOWN_CA" || reports[1]!.reason === "BAD_CERTIFICATE",
          JSON.stringify(reports),
        );
        const good = await t.env.net.connect(listener.addr, {
          timeoutMs: 5000,
          tls: { caPem: c.ca, certPem: c.client.cert, keyPem: c.client.key },
        });
        const server = await accepting;
        assert.equal(server?.tlsPeerSubject, "CN=alice");
        server?.close();
        good.close();
      } finally {
        listener.close();
      }
    },
  );

  tlsTest(
    "TLS: TLS to a plaintext port fails with NOT_TLS; plaintext to a TLS port reads an alert",
    async (t, c) => {
      const plain = await t.env.net.listen({ host: t.host, port: 0 });
      const serving = (async () => {
        const conn = await plain.accept();
        // A plaintext server drops what it cannot parse.
        await conn?.read(new Uint8Array(64)).catch(() => null);
        conn?.close();
      })();
      try {
        await assert.rejects(
          t.env.net.connect(plain.addr, { timeoutMs: 5000, tls: { caPem: c.ca } }),
          (err) => err instanceof TlsHandshakeFailed && err.reason === "NOT_TLS",
        );
      } finally {
        plain.close();
        await serving;
      }
      const reports: TlsHandshakeError[] = [];
      const secure = await t.env.net.listen({ host: t.host, port: 0 }, {
        tls: { ...serverTls(c, c.server), onHandshakeError: (e) => reports.push(e) },
      });
      try {
        const conn = await t.env.net.connect(secure.addr, { timeoutMs: 5000 });
        await writeAll(conn, new TextEncoder().encode("GM plaintext hello, not TLS"));
        const buf = new Uint8Array(16);
        const n = await conn.read(buf);
        assert.ok(
          n !== null && buf[0] === 0x15 && buf[1] === 0x03,
          "a TLS alert record comes back",
        );
        conn.close();
        await waitFor(t, () => reports.length >= 1);
        assert.equal(reports[0]!.reason, "NOT_TLS");
      } finally {
        secure.close();
      }
    },
  );

  tlsTest(
    "TLS: reloadTls serves new connections with the new certificate; a bad one is refused",
    async (t, c) => {
      const listener = await t.env.net.listen({ host: t.host, port: 0 }, {
        tls: serverTls(c, c.wrongName),
      });
      try {
        await assert.rejects(
          t.env.net.connect(listener.addr, { timeoutMs: 5000, tls: { caPem: c.ca } }),
          (err) => err instanceof TlsHandshakeFailed && err.reason === "HOSTNAME_MISMATCH",
        );
        await assert.rejects(
          listener.reloadTls!({ certPem: c.server.cert, keyPem: "not a key" }),
          TlsConfigError,
        );
        await listener.reloadTls!(serverTls(c, c.server));
        const [conn, server] = await Promise.all([
          t.env.net.connect(listener.addr, { timeoutMs: 5000, tls: { caPem: c.ca } }),
          listener.accept(),
        ]);
        conn.close();
        server?.close();
      } finally {
        listener.close();
      }
    },
  );

  tlsTest(
    "Network.listen with an unusable certificate or a key of another rejects with TlsConfigError",
    async (t, c) => {
      for (
        const tls of [
          { certPem: "nope", keyPem: "nope" },
          { certPem: c.server.cert, keyPem: c.client.key },
        ]
      ) {
        await assert.rejects(t.env.net.listen({ host: t.host, port: 0 }, { tls }), TlsConfigError);
      }
    },
  );

  test("Listener.addr reports the bound port and each side sees the other's address", async (t) => {
    await withPair(t, ({ listener, client, server }) => {
      assert.equal(listener.addr.host, t.host);
      assert.ok(listener.addr.port > 0, `port 0 must be replaced, got ${listener.addr.port}`);
      assert.deepEqual(client.remote, listener.addr);
      assert.deepEqual(server.local, listener.addr);
      assert.deepEqual(server.remote, client.local);
    });
  });

  test("Conn keeps bytes in order across arbitrary chunking", async (t) => {
    const data = patternBytes(1, STREAM_BYTES);
    await withPair(t, async ({ client, server }) => {
      const [, received] = await Promise.all([
        writeChunked(client, data, new SeededRandom(2)),
        readChunked(server, data.length, new SeededRandom(3)),
      ]);
      assertSameBytes(received, data, "stream");
    });
  });

  test("Conn carries both directions at once", async (t) => {
    const up = patternBytes(4, DUPLEX_BYTES);
    const down = patternBytes(5, DUPLEX_BYTES);
    await withPair(t, async ({ client, server }) => {
      const [, , gotUp, gotDown] = await Promise.all([
        writeChunked(client, up, new SeededRandom(6)),
        writeChunked(server, down, new SeededRandom(7)),
        readChunked(server, up.length, new SeededRandom(8)),
        readChunked(client, down.length, new SeededRandom(9)),
      ]);
      assertSameBytes(gotUp, up, "client to server");
      assertSameBytes(gotDown, down, "server to client");
    });
  });

  test("Conn.read returns every byte, then null after the peer closes", async (t) => {
    const data = patternBytes(10, EOF_BYTES);
    await withPair(t, async ({ client, server }) => {
      const writing = writeChunked(client, data, new SeededRandom(11)).then(() => client.close());
      const received = await readToEnd(server, new SeededRandom(12), data.length);
      await writing;
      assertSameBytes(received, data, "stream before end");
      assert.equal(await server.read(new Uint8Array(8)), null, "read after end of stream");
    });
  });

  test("Conn.read pending when the local side closes resolves null", async (t) => {
    await withPair(t, async ({ client }) => {
      const pending = client.read(new Uint8Array(64));
      client.close();
      assert.equal(await pending, null);
      assert.equal(await client.read(new Uint8Array(64)), null, "read after close");
      client.close();
    });
  });

  test("Conn.write after the local side closed rejects with Closed", async (t) => {
    await withPair(t, async ({ client }) => {
      client.close();
      await assert.rejects(client.write(new Uint8Array([1, 2, 3])), Closed);
    });
  });

  test("Network.connect to a port nobody listens on rejects with ConnectionRefused", async (t) => {
    const listener = await t.env.net.listen({ host: t.host, port: 0 });
    const addr = listener.addr;
    listener.close();
    await assert.rejects(t.env.net.connect(addr, { timeoutMs: 2000 }), ConnectionRefused);
  });

  test("Listener.accept pending when the listener closes resolves null", async (t) => {
    const listener = await t.env.net.listen({ host: t.host, port: 0 });
    const pending = listener.accept();
    listener.close();
    assert.equal(await pending, null);
    assert.equal(await listener.accept(), null, "accept after close");
    listener.close();
  });

  test("Network.listen on a taken port rejects with AddressInUse", async (t) => {
    const listener = await t.env.net.listen({ host: t.host, port: 0 });
    try {
      await assert.rejects(t.env.net.listen(listener.addr), AddressInUse);
    } finally {
      listener.close();
    }
  });

  test("Listener serves many concurrent connections, each with its own bytes", async (t) => {
    const listener = await t.env.net.listen({ host: t.host, port: 0 });
    try {
      const serve = async (): Promise<void> => {
        const handlers: Promise<void>[] = [];
        for (let i = 0; i < CLIENTS; i++) {
          const conn = await listener.accept();
          assert.ok(conn, "accept resolved null while open");
          handlers.push(echoFramed(conn));
        }
        await Promise.all(handlers);
      };
      const client = async (id: number): Promise<void> => {
        const conn = await t.env.net.connect(listener.addr);
        try {
          const payload = patternBytes(100 + id, 1000 + id * 37);
          const header = new Uint8Array(4);
          new DataView(header.buffer).setUint32(0, payload.length);
          await writeAll(conn, header);
          await writeAll(conn, payload);
          const echo = new Uint8Array(payload.length);
          assert.ok(await readExactly(conn, echo), `client ${id}: no echo`);
          assertSameBytes(echo, payload, `client ${id}`);
        } finally {
          conn.close();
        }
      };
      const clients = Array.from({ length: CLIENTS }, (_, id) => client(id));
      await Promise.all([serve(), ...clients]);
    } finally {
      listener.close();
    }
  });

  // --- Files -----------------------------------------------------------------------------------

  test("Disk.open without create on a missing file rejects with NotFound", async (t) => {
    await assert.rejects(t.env.disk.open(joinPath(t.dir, "missing.log")), NotFound);
    await assert.rejects(t.env.disk.open(joinPath(t.dir, "no", "such", "dir.log")), NotFound);
  });

  test("Disk.open with createNew on an existing file rejects with AlreadyExists", async (t) => {
    const path = joinPath(t.dir, "once.log");
    (await t.env.disk.open(path, { createNew: true })).close();
    await assert.rejects(t.env.disk.open(path, { createNew: true }), AlreadyExists);
    (await t.env.disk.open(path, { create: true })).close();
  });

  test("File.writeAt then readAt round-trips at offsets", async (t) => {
    await withFile(t, "offsets.log", async (file) => {
      const a = patternBytes(20, 100);
      const b = patternBytes(21, 300);
      const c = patternBytes(22, 10);
      assert.equal(await file.writeAt(0, a), a.length);
      assert.equal(await file.writeAt(4096, b), b.length);
      assert.equal(await file.writeAt(50, c), c.length);
      const expectA = a.slice();
      expectA.set(c, 50);
      assertSameBytes(await readAt(file, 0, 100), expectA, "overwritten head");
      assertSameBytes(await readAt(file, 4096, 300), b, "far block");
      assertSameBytes(await readAt(file, 4000, 96), new Uint8Array(96), "gap");
    });
  });

  test("File.readAt is short at end of file and returns 0 at or past it", async (t) => {
    await withFile(t, "eof.log", async (file) => {
      const data = patternBytes(23, 100);
      await file.writeAt(0, data);
      const buf = new Uint8Array(20);
      assert.equal(await file.readAt(90, buf), 10);
      assertSameBytes(buf.subarray(0, 10), data.subarray(90), "tail");
      assert.equal(await file.readAt(100, new Uint8Array(5)), 0, "at end");
      assert.equal(await file.readAt(500, new Uint8Array(5)), 0, "past end");
      assert.equal(await file.readAt(0, new Uint8Array(0)), 0, "empty buffer");
    });
  });

  test("File.writeAt past the end zero-fills the gap", async (t) => {
    await withFile(t, "sparse.log", async (file) => {
      await file.writeAt(0, patternBytes(24, 10));
      assert.equal(await file.writeAt(1000, new Uint8Array([1, 2, 3])), 3);
      assert.equal(await file.size(), 1003);
      assertSameBytes(await readAt(file, 10, 990), new Uint8Array(990), "gap");
      assertSameBytes(await readAt(file, 1000, 3), new Uint8Array([1, 2, 3]), "written");
    });
  });

  test("File.size reports the bytes readers see", async (t) => {
    await withFile(t, "size.log", async (file) => {
      assert.equal(await file.size(), 0, "new file");
      await file.writeAt(0, new Uint8Array(100));
      assert.equal(await file.size(), 100);
      await file.writeAt(50, new Uint8Array(10));
      assert.equal(await file.size(), 100, "overwrite inside");
      await file.writeAt(200, new Uint8Array(1));
      assert.equal(await file.size(), 201, "write past end");
    });
  });

  test("File.truncate shrinks, then extends with zeros", async (t) => {
    await withFile(t, "truncate.log", async (file) => {
      const data = patternBytes(25, 100);
      await file.writeAt(0, data);
      await file.truncate(40);
      assert.equal(await file.size(), 40);
      assert.equal(await file.readAt(0, new Uint8Array(100)), 40);
      await file.truncate(80);
      assert.equal(await file.size(), 80);
      assertSameBytes(await readAt(file, 0, 40), data.subarray(0, 40), "kept prefix");
      assertSameBytes(await readAt(file, 40, 40), new Uint8Array(40), "extension");
    });
  });

  test("File contents survive sync, close and reopen", async (t) => {
    const path = joinPath(t.dir, "durable.log");
    const data = patternBytes(26, 10_000);
    const file = await t.env.disk.open(path, { createNew: true });
    try {
      await file.writeAt(0, data);
      await file.sync();
    } finally {
      file.close();
    }
    const again = await t.env.disk.open(path);
    try {
      assert.equal(await again.size(), data.length);
      assertSameBytes(await readAt(again, 0, data.length), data, "reopened");
    } finally {
      again.close();
    }
  });

  test("File.readAt and writeAt issued concurrently on one handle do not interfere", async (t) => {
    await withFile(t, "concurrent.log", async (file) => {
      const head = patternBytes(27, 64 << 10);
      await file.writeAt(0, head);
      const rng = new SeededRandom(28);
      const chunks = Array.from({ length: FILE_OPS }, (_, i) => patternBytes(200 + i, 1000));
      const ops: Promise<void>[] = [];
      for (let i = 0; i < FILE_OPS; i++) {
        const chunk = chunks[i] as Uint8Array;
        ops.push(file.writeAt(head.length + i * 1000, chunk).then((n) => assert.equal(n, 1000)));
        const pos = rng.int(0, head.length - 1);
        const len = rng.int(1, Math.min(4096, head.length - pos) + 1);
        ops.push(
          readAt(file, pos, len).then((got) => {
            assertSameBytes(got, head.subarray(pos, pos + len), `read at ${pos}`);
          }),
        );
      }
      await Promise.all(ops);
      for (let i = 0; i < FILE_OPS; i++) {
        const got = await readAt(file, head.length + i * 1000, 1000);
        assertSameBytes(got, chunks[i] as Uint8Array, `chunk ${i}`);
      }
    });
  });

  test("File.close is idempotent and later operations reject with Closed", async (t) => {
    const file = await t.env.disk.open(joinPath(t.dir, "closed.log"), { create: true });
    file.close();
    file.close();
    await assert.rejects(file.readAt(0, new Uint8Array(1)), Closed);
    await assert.rejects(file.writeAt(0, new Uint8Array(1)), Closed);
    await assert.rejects(file.sync(), Closed);
    await assert.rejects(file.size(), Closed);
    await assert.rejects(file.truncate(0), Closed);
  });

  test("Disk.list returns sorted names and rejects a missing directory with NotFound", async (t) => {
    for (const name of ["b", "c2", "a", "c10"]) {
      (await t.env.disk.open(joinPath(t.dir, name), { create: true })).close();
    }
    await t.env.disk.mkdir(joinPath(t.dir, "d"));
    assert.deepEqual(await t.env.disk.list(t.dir), ["a", "b", "c10", "c2", "d"]);
    assert.deepEqual(await t.env.disk.list(joinPath(t.dir, "d")), []);
    await assert.rejects(t.env.disk.list(joinPath(t.dir, "missing")), NotFound);
  });

  test("Disk.mkdir creates missing parents and accepts an existing directory", async (t) => {
    const deep = joinPath(t.dir, "x", "y", "z");
    await t.env.disk.mkdir(deep);
    await t.env.disk.mkdir(deep);
    await t.env.disk.mkdir(joinPath(t.dir, "x"));
    assert.deepEqual(await t.env.disk.list(joinPath(t.dir, "x")), ["y"]);
    assert.deepEqual(await t.env.disk.list(deep), []);
  });

  test("Disk.rename replaces the target and rejects a missing source with NotFound", async (t) => {
    const from = joinPath(t.dir, "next.json");
    const to = joinPath(t.dir, "current.json");
    await writeWhole(t, from, new TextEncoder().encode("new"));
    await writeWhole(t, to, new TextEncoder().encode("old and longer"));
    await t.env.disk.rename(from, to);
    assert.deepEqual(await t.env.disk.list(t.dir), ["current.json"]);
    assertSameBytes(await readFile(t.env.disk, to), new TextEncoder().encode("new"), "target");
    await assert.rejects(t.env.disk.rename(from, joinPath(t.dir, "other")), NotFound);
  });

  test("Disk.remove deletes a file or an empty directory; a missing path is NotFound", async (t) => {
    const file = joinPath(t.dir, "doomed.log");
    const dir = joinPath(t.dir, "empty");
    (await t.env.disk.open(file, { create: true })).close();
    await t.env.disk.mkdir(dir);
    await t.env.disk.remove(file);
    await t.env.disk.remove(dir);
    assert.deepEqual(await t.env.disk.list(t.dir), []);
    await assert.rejects(t.env.disk.remove(file), NotFound);
  });

  test("Disk.syncDir resolves on a directory with fresh entries", async (t) => {
    const sub = joinPath(t.dir, "segments");
    await t.env.disk.mkdir(sub);
    (await t.env.disk.open(joinPath(sub, "0.log"), { create: true })).close();
    await t.env.disk.syncDir(sub);
    await t.env.disk.syncDir(t.dir);
  });

  test("Disk.lock is exclusive, names its holder to the refused, and frees on release", async (t) => {
    const path = joinPath(t.dir, ".lock");
    const held = await t.env.disk.lock(path);
    const holder = (await readFile(t.env.disk, path)).length;
    assert.ok(holder > 0, "the holder writes a line naming itself into the lock file");
    const refused = await t.env.disk.lock(path).then(() => null, (err) => err);
    assert.ok(refused instanceof Locked, `a second lock must reject with Locked, got ${refused}`);
    assert.equal(
      `${refused.holder}\n`,
      new TextDecoder().decode(await readFile(t.env.disk, path)),
      "the refusal names the holder the file records",
    );
    held.release();
    held.release();
    const again = await t.env.disk.lock(path);
    again.release();
  });

  test("writeFileAtomic and readFile round-trip and leave no temporary file", async (t) => {
    const path = joinPath(t.dir, "meta.json");
    const first = patternBytes(29, 5000);
    await writeFileAtomic(t.env.disk, path, first);
    assertSameBytes(await readFile(t.env.disk, path), first, "first version");
    const second = new TextEncoder().encode("{}");
    await writeFileAtomic(t.env.disk, path, second);
    assertSameBytes(await readFile(t.env.disk, path), second, "shorter replacement");
    assert.deepEqual(await t.env.disk.list(t.dir), ["meta.json"]);
  });

  // --- Clock -----------------------------------------------------------------------------------

  test("Clock.now never decreases and sleep advances it by at least the delay", async (t) => {
    const { clock } = t.env;
    assert.ok(Number.isFinite(clock.wallMs()), "wallMs is a number");
    let last = clock.now();
    for (const ms of [0, 1, 5, 20]) {
      const before = clock.now();
      assert.ok(before >= last, `now went back from ${last} to ${before}`);
      await clock.sleep(ms);
      const after = clock.now();
      // Float rounding only: a sleep must never end early by a whole tick.
      assert.ok(after - before >= ms - 0.01, `sleep(${ms}) advanced now by ${after - before}`);
      last = after;
    }
  });

  test("Clock.sleep with a zero or negative delay resolves", async (t) => {
    await t.env.clock.sleep(0);
    await t.env.clock.sleep(-5);
  });

  test("Clock.sleep with an already aborted signal rejects with AbortError", async (t) => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(t.env.clock.sleep(10, controller.signal), { name: "AbortError" });
    await assert.rejects(t.env.clock.sleep(0, controller.signal), { name: "AbortError" });
  });

  test("Clock.sleep rejects with AbortError when its signal aborts later", async (t) => {
    const controller = new AbortController();
    const sleeping = t.env.clock.sleep(5_000, controller.signal);
    await t.env.clock.sleep(5);
    controller.abort();
    await assert.rejects(sleeping, { name: "AbortError" });
  });

  // --- Random ----------------------------------------------------------------------------------

  test("Random.int stays in [lo, hi) and reaches every value", (t) => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const n = t.env.random.int(-3, 7);
      assert.ok(Number.isInteger(n) && n >= -3 && n < 7, `int(-3, 7) gave ${n}`);
      seen.add(n);
    }
    assert.equal(seen.size, 10);
    assert.equal(t.env.random.int(5, 6), 5);
  });

  test("Random.float stays in [0, 1) and u32 in [0, 2^32)", (t) => {
    for (let i = 0; i < 2000; i++) {
      const f = t.env.random.float();
      assert.ok(f >= 0 && f < 1, `float gave ${f}`);
      const u = t.env.random.u32();
      assert.ok(Number.isInteger(u) && u >= 0 && u < 2 ** 32, `u32 gave ${u}`);
    }
  });

  test("Random.fork gives a stream unlike its parent's and its siblings'", (t) => {
    const parent = t.env.random;
    const a = parent.fork("net");
    const b = parent.fork("disk");
    const draw = (r: typeof parent): number[] => Array.from({ length: 8 }, () => r.u32());
    const [fromParent, fromA, fromB] = [draw(parent), draw(a), draw(b)];
    assert.notDeepEqual(fromA, fromParent);
    assert.notDeepEqual(fromB, fromParent);
    assert.notDeepEqual(fromA, fromB);
  });

  test("Random.secureBytes gives the bytes asked for, fresh on every call", (t) => {
    const r = t.env.random;
    assert.equal(r.secureBytes(0).length, 0);
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const b = r.secureBytes(32);
      assert.ok(b instanceof Uint8Array && b.length === 32);
      seen.add(Array.from(b).join(","));
    }
    assert.equal(seen.size, 100);
    assert.equal(r.secureBytes(65_536).length, 65_536);
    for (const n of [-1, 1.5, 65_537, NaN]) {
      assert.throws(() => r.secureBytes(n), RangeError, `secureBytes(${n})`);
    }
  });

  // --- Crypto ----------------------------------------------------------------------------------

  test("Crypto.hmacSha256 gives RFC 4231's answers", async (t) => {
    const hex = (b: Uint8Array): string =>
      Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    const text = (s: string): Uint8Array => new TextEncoder().encode(s);
    // RFC 4231 test cases 2 (a short key) and 6 (a key longer than a block, hashed first).
    assert.equal(
      hex(await t.env.crypto.hmacSha256(text("Jefe"), text("what do ya want for nothing?"))),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    );
    assert.equal(
      hex(
        await t.env.crypto.hmacSha256(
          new Uint8Array(131).fill(0xaa),
          text("Test Using Larger Than Block-Size Key - Hash Key First"),
        ),
      ),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    );
  });

  test("Crypto.sha256 and Crypto.pbkdf2Sha256 give the published answers", async (t) => {
    const hex = (b: Uint8Array): string =>
      Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    const text = (s: string): Uint8Array => new TextEncoder().encode(s);
    // FIPS 180-4's "abc", and the PBKDF2-HMAC-SHA-256 vector for "password", "salt", 1 round.
    assert.equal(
      hex(await t.env.crypto.sha256(text("abc"))),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert.equal(
      hex(await t.env.crypto.pbkdf2Sha256(text("password"), text("salt"), 1, 32)),
      "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
    );
  });

  test("Random.fork depends on the label only, not on values drawn before", (t) => {
    const parent = t.env.random;
    const early = parent.fork("workload");
    for (let i = 0; i < 100; i++) parent.u32();
    const late = parent.fork("workload");
    for (let i = 0; i < 8; i++) assert.equal(early.u32(), late.u32(), `draw ${i}`);
  });
}

// --- Helpers ---------------------------------------------------------------------------------

interface Pair {
  listener: Listener;
  client: Conn;
  server: Conn;
}

/** Runs `body` on a fresh connection and closes everything afterwards, whatever happened. */
async function withPair(
  t: ContractEnv,
  body: (pair: Pair) => Promise<void> | void,
): Promise<void> {
  const listener = await t.env.net.listen({ host: t.host, port: 0 });
  let client: Conn | undefined;
  let server: Conn | null | undefined;
  try {
    [client, server] = await Promise.all([connect(t.env.net, listener), listener.accept()]);
    assert.ok(server, "accept resolved null while open");
    await body({ listener, client, server });
  } finally {
    client?.close();
    server?.close();
    listener.close();
  }
}

function serverTls(c: ContractCerts, pair: CertPair): TlsServerOptions {
  return { certPem: pair.cert, keyPem: pair.key, caPem: c.ca };
}

/** Polls `done` (for reports that come on the server's own schedule), failing after a while. */
async function waitFor(t: ContractEnv, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await t.env.clock.sleep(10);
  assert.ok(done(), "waited 2 s in vain");
}

function connect(net: Network, listener: Listener): Promise<Conn> {
  return net.connect(listener.addr, { timeoutMs: 2000 });
}

/** Runs `body` on a new file `name` in the test directory and closes it afterwards. */
async function withFile(
  t: ContractEnv,
  name: string,
  body: (file: File) => Promise<void>,
): Promise<void> {
  const file = await t.env.disk.open(joinPath(t.dir, name), { createNew: true });
  try {
    await body(file);
  } finally {
    file.close();
  }
}

async function writeWhole(t: ContractEnv, path: string, bytes: Uint8Array): Promise<void> {
  const file = await t.env.disk.open(path, { create: true });
  try {
    await file.writeAt(0, bytes);
  } finally {
    file.close();
  }
}

/** Reads `len` bytes at `pos`, asserting that the file holds them all. */
async function readAt(file: File, pos: number, len: number): Promise<Uint8Array> {
  const buf = new Uint8Array(len);
  assert.equal(await file.readAt(pos, buf), len, `short read of ${len} at ${pos}`);
  return buf;
}

/** Bytes from a seeded stream, so a reordering or a shifted chunk shows up as a mismatch. */
function patternBytes(seed: number, length: number): Uint8Array {
  const rng = new SeededRandom(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.u32() & 0xff;
  return out;
}

/** Writes `data` as a run of odd-sized `writeAll` calls. */
async function writeChunked(conn: Conn, data: Uint8Array, rng: SeededRandom): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const end = Math.min(data.length, off + rng.pick(WRITE_SIZES));
    await writeAll(conn, data.subarray(off, end));
    off = end;
  }
}

/** Reads exactly `length` bytes through odd-sized buffers; fails if the stream ends first. */
async function readChunked(conn: Conn, length: number, rng: SeededRandom): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const scratch = new Uint8Array(Math.max(...READ_SIZES));
  let off = 0;
  while (off < length) {
    const want = Math.min(rng.pick(READ_SIZES), length - off);
    const n = await conn.read(scratch.subarray(0, want));
    if (n === null) assert.fail(`stream ended after ${off} of ${length} bytes`);
    assert.ok(n > 0 && n <= want, `read(${want}) returned ${n}`);
    out.set(scratch.subarray(0, n), off);
    off += n;
  }
  return out;
}

/** Reads until end of stream through odd-sized buffers; fails past `lengthMax` bytes. */
async function readToEnd(conn: Conn, rng: SeededRandom, lengthMax: number): Promise<Uint8Array> {
  const out = new Uint8Array(lengthMax);
  const scratch = new Uint8Array(Math.max(...READ_SIZES));
  let off = 0;
  for (;;) {
    const n = await conn.read(scratch.subarray(0, rng.pick(READ_SIZES)));
    if (n === null) return out.subarray(0, off);
    assert.ok(off + n <= lengthMax, `stream longer than the ${lengthMax} bytes written`);
    out.set(scratch.subarray(0, n), off);
    off += n;
  }
}

/** Serves one length-prefixed message: reads it, writes it back, waits for the peer to close. */
async function echoFramed(conn: Conn): Promise<void> {
  try {
    const header = new Uint8Array(4);
    assert.ok(await readExactly(conn, header), "client sent nothing");
    const payload = new Uint8Array(new DataView(header.buffer).getUint32(0));
    assert.ok(await readExactly(conn, payload), "client sent no payload");
    await writeAll(conn, payload);
    assert.equal(await conn.read(new Uint8Array(1)), null, "client sent more than one message");
  } finally {
    conn.close();
  }
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) {
    assert.fail(`${what}: got ${actual.length} bytes, expected ${expected.length}`);
  }
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${what}: first difference at byte ${i}: got ${actual[i]}, expected ${expected[i]}`,
      );
    }
  }
}
