// Runs the I/O seam's contract suite against the real implementations: loopback TCP and a
// temporary directory per test.

import { denoEnv } from "../src/io/deno/mod.ts";
import { type ContractCerts, type ContractWorld, defineIoContractTests } from "./io_contract.ts";
import { haveOpenssl, makeTestCerts } from "./_tls_certs.ts";

/** Real certificates from openssl, read into memory; the TLS tests skip without openssl. */
async function opensslCerts(): Promise<ContractCerts | undefined> {
  if (!await haveOpenssl()) {
    console.log("io_contract_deno_test: TLS tests skipped, openssl is not installed");
    return undefined;
  }
  const files = await makeTestCerts();
  const read = (path: string): string => Deno.readTextFileSync(path);
  const pair = (p: { cert: string; key: string }) => ({ cert: read(p.cert), key: read(p.key) });
  const certs = {
    ca: read(files.ca),
    otherCa: read(files.otherCa),
    otherClient: pair(files.otherClient),
    server: pair(files.server),
    expired: pair(files.expired),
    wrongName: pair(files.wrongName),
    client: pair(files.client),
  };
  await Deno.remove(files.dir, { recursive: true });
  return certs;
}

const denoWorld: ContractWorld = {
  name: "deno",
  certs: await opensslCerts(),
  async run(body) {
    const dir = await Deno.makeTempDir({ prefix: "gregormq_contract_" });
    try {
      await body({ env: denoEnv(), dir, host: "127.0.0.1" });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
};

defineIoContractTests(denoWorld);
