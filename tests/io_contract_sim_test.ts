// The I/O contract suite run against the simulator's twins, on a network that splits, merges and
// shortens reads and writes, and a disk with realistic latencies.

import { runOnNode } from "../sim/harness.ts";
import { Simulation } from "../sim/simulation.ts";
import { simCertPem, simKeyPem } from "../sim/tls.ts";
import { type ContractCerts, defineIoContractTests } from "./io_contract.ts";

/** Simulated certificates for the contract host, valid for the whole (virtual) run unless expired. */
function simCerts(host: string): ContractCerts {
  const forever = Number.MAX_SAFE_INTEGER;
  const pair = (subject: string, issuer: string, names: string[], notAfterMs = forever) => ({
    cert: simCertPem({ subject, issuer, names, notAfterMs }),
    key: simKeyPem(subject),
  });
  const ca = (subject: string) =>
    simCertPem({ subject, issuer: subject, names: [], notAfterMs: forever });
  return {
    ca: ca("CN=Test CA"),
    otherCa: ca("CN=Other CA"),
    otherClient: pair("CN=mallory", "CN=Other CA", ["mallory"]),
    server: pair(`CN=${host}`, "CN=Test CA", [host]),
    expired: pair(`CN=${host}`, "CN=Test CA", [host], -1),
    wrongName: pair(`CN=${host}`, "CN=Test CA", ["other.example"]),
    client: pair("CN=alice", "CN=Test CA", ["alice"]),
  };
}

defineIoContractTests({
  name: "sim",
  certs: simCerts("contract"),
  async run(body) {
    const sim = new Simulation(20261127, {
      net: { latencyMs: 0.5, jitterMs: 1, splitProb: 0.3, shortWriteProb: 0.3, shortReadProb: 0.3 },
    });
    await runOnNode(sim, "contract", async (env) => {
      await env.disk.mkdir("work");
      await body({ env, dir: "work", host: "contract" });
    });
  },
});
