// The I/O seam's contract (tests/io_contract.ts) against the Node environment, under Node's own
// test runner: npm/build.mjs compiles this file and tests/client_node_test.ts runs it with
// `node --test`. The disk tests are skipped: the Node environment serves the client, which has no
// disk. GREGOR_CONTRACT_CERTS names a JSON file of ContractCerts for the TLS tests (the Deno side
// makes them with openssl); without it they are skipped.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { TlsHandshakeFailed } from "../../src/io/errors.ts";
import { nodeEnv } from "../../src/io/node/mod.ts";
import { type ContractCerts, defineIoContractTests } from "../io_contract.ts";

/** Behaviours of the contract that exercise the disk, which the Node environment does not have. */
const DISK_BEHAVIOUR = /^node: (Disk|File|writeFileAtomic)\b/;
/**
 * A server-side behaviour Node's TLS library does not have: OpenSSL answers a record that is not
 * TLS by closing, without an alert (rustls under Deno sends one). The broker's listener runs on
 * Deno; the client half of this test (TLS to a plaintext port) is checked below on its own.
 */
const TLS_ALERT_BEHAVIOUR = "node: TLS: TLS to a plaintext port fails with NOT_TLS; " +
  "plaintext to a TLS port reads an alert";

const certsPath = process.env.GREGOR_CONTRACT_CERTS;
const certs: ContractCerts | undefined = certsPath === undefined
  ? undefined
  : JSON.parse(await readFile(certsPath, "utf8"));

defineIoContractTests(
  {
    name: "node",
    ...(certs === undefined ? {} : { certs }),
    async run(body) {
      const dir = await mkdtemp(join(tmpdir(), "gregormq_contract_node_"));
      try {
        await body({ env: nodeEnv(), dir, host: "127.0.0.1" });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  },
  (t) => {
    const skip = DISK_BEHAVIOUR.test(t.name)
      ? "the Node environment has no disk (client only)"
      : t.name === TLS_ALERT_BEHAVIOUR
      ? "OpenSSL sends no alert to a plaintext client; the broker's TLS listener runs on Deno"
      : t.ignore
      ? "no certificates (GREGOR_CONTRACT_CERTS unset)"
      : false;
    test(t.name, { skip }, t.fn);
  },
);

test(
  "node: TLS to a plaintext port fails with NOT_TLS",
  { skip: certs === undefined },
  async () => {
    const net = nodeEnv().net;
    const plain = await net.listen({ host: "127.0.0.1", port: 0 });
    const serving = (async () => {
      const conn = await plain.accept();
      // A plaintext server drops what it cannot parse.
      await conn?.read(new Uint8Array(64)).catch(() => null);
      conn?.close();
    })();
    try {
      await assert.rejects(
        net.connect(plain.addr, { timeoutMs: 5000, tls: { caPem: certs!.ca } }),
        (err) => err instanceof TlsHandshakeFailed && err.reason === "NOT_TLS",
      );
    } finally {
      plain.close();
      await serving;
    }
  },
);
