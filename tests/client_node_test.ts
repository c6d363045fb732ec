// The TypeScript client on Node 20+: builds it (npm/, pinned by npm/package-lock.json), then runs
// under Node the I/O seam's contract against the Node environment, the npm package installed from
// its `npm pack` tarball into a fresh project, and the conformance suite. Skips with a reason when
// node or npm is missing; CI has both.

import assert from "node:assert/strict";
import { haveOpenssl, makeTestCerts } from "./_tls_certs.ts";
import { type BrokerProcess, killAll, spawnBroker } from "./_broker_process.ts";
import { SCENARIOS, startBrokers, stopBrokers } from "./_conformance.ts";

const NPM_DIR = new URL("../npm/", import.meta.url).pathname;
const SCENARIOS_PATH = new URL("../conformance/scenarios.json", import.meta.url).pathname;
/** Network tests of the contract that must run on Node, TLS aside (the disk ones are skipped). */
const CONTRACT_NET_TESTS_MIN = 18;
/** TLS tests of the contract, run when openssl makes certificates. */
const CONTRACT_TLS_TESTS = 6;

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...opts })
    .output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

/** Runs `cmd`, failing with its output unless it exits 0; resolves its stdout. */
async function ok(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    assert.fail(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.out}\n${r.err}`);
  }
  return r.out;
}

async function has(cmd: string): Promise<boolean> {
  try {
    return (await run(cmd, ["--version"])).code === 0;
  } catch {
    return false;
  }
}

const NODE = await has("node") && await has("npm");
if (!NODE) console.log("client_node_test: skipped, `node` or `npm` is not on PATH (CI has both)");

/** Builds once for every test here: npm ci, then npm/build.mjs (bundles, declarations). */
let built: Promise<void> | null = null;
function build(): Promise<void> {
  built ??= (async () => {
    await ok("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: NPM_DIR });
    await ok("node", ["build.mjs"], { cwd: NPM_DIR });
  })();
  return built;
}

Deno.test({
  name: "client on Node: the I/O seam's contract holds for the Node environment, TLS included",
  ignore: !NODE,
  async fn() {
    await build();
    const env: Record<string, string> = {};
    let tls = 0;
    if (await haveOpenssl()) {
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
      env.GREGOR_CONTRACT_CERTS = `${files.dir}/certs.json`;
      await Deno.writeTextFile(env.GREGOR_CONTRACT_CERTS, JSON.stringify(certs));
      tls = CONTRACT_TLS_TESTS;
    } else {
      console.log("client_node_test: the TLS contract tests skip, openssl is not installed");
    }
    try {
      const out = await ok("node", ["--test", "build/io_contract.test.mjs"], {
        cwd: NPM_DIR,
        env,
      });
      const count = (what: string): number =>
        Number(new RegExp(`^# ${what} (\\d+)$`, "m").exec(out)?.[1] ?? NaN);
      assert.equal(count("fail"), 0, out);
      assert.ok(
        count("pass") >= CONTRACT_NET_TESTS_MIN + tls,
        `only ${count("pass")} contract tests passed on Node:\n${out}`,
      );
    } finally {
      if (env.GREGOR_CONTRACT_CERTS !== undefined) {
        await Deno.remove(env.GREGOR_CONTRACT_CERTS.replace(/\/certs\.json$/, ""), {
          recursive: true,
        });
      }
    }
  },
});

Deno.test({
  name: "client on Node: a fresh project installs the npm pack tarball, type-checks and uses it",
  ignore: !NODE,
  async fn() {
    await build();
    const dir = await Deno.makeTempDir({ prefix: "gregormq-npm-" });
    let broker: BrokerProcess | undefined;
    try {
      const packed = JSON.parse(
        await ok("npm", ["pack", "--json", "--pack-destination", dir], { cwd: NPM_DIR }),
      );
      const tarball = `${dir}/${packed[0].filename}`;
      const files = (packed[0].files as { path: string }[]).map((f) => f.path);
      assert.ok(files.includes("dist/index.js"), files.join(" "));
      assert.ok(files.includes("dist/types/npm/index.d.ts"), files.join(" "));
      assert.ok(!files.some((f) => f.startsWith("node_modules/")), files.join(" "));

      const app = `${dir}/app`;
      await Deno.mkdir(app);
      await Deno.writeTextFile(
        `${app}/package.json`,
        JSON.stringify({ name: "app", private: true, type: "module" }),
      );
      await ok("npm", ["install", "--no-audit", "--no-fund", "--offline", tarball], { cwd: app });
      // The quick start of README.md's "On Node", with the broker's port.
      broker = await spawnBroker(["--port", "0", "--data-dir", `${dir}/data`, "--fsync", "never"]);
      const port = Number(broker.listen.listen.split(":").at(-1));
      await Deno.writeTextFile(
        `${app}/main.ts`,
        `import { connect, type ReceivedMessage } from "gregormq";

const client = await connect({ port: ${port} });
await client.admin.createTopic("greetings", { partitions: 1 });
const offset: number = await client.publish("greetings", { key: "k", value: "hello from Node" });
const sub = await client.subscribe("greetings", { from: "earliest" });
const msg: ReceivedMessage | null = await sub.next();
msg?.ack();
console.log(JSON.stringify({ offset, got: msg?.text(), node: process.versions.node }));
await client.close();
`,
      );
      // The declarations type-check (strictly) as a consumer sees them; then the code runs as JS.
      await ok("node", [
        `${NPM_DIR}node_modules/typescript/bin/tsc`,
        "--strict",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--target",
        "es2022",
        "--types",
        "node",
        "--typeRoots",
        `${NPM_DIR}node_modules/@types`,
        "main.ts",
      ], { cwd: app });
      const out = JSON.parse(await ok("node", ["main.js"], { cwd: app }));
      assert.deepEqual({ offset: out.offset, got: out.got }, { offset: 0, got: "hello from Node" });
      assert.match(out.node, /^\d+\./);
    } finally {
      if (broker !== undefined) await killAll([broker]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "client on Node: every conformance scenario passes with the client built for Node",
  ignore: !NODE,
  async fn(t) {
    await build();
    assert.ok(SCENARIOS.length >= 10);
    const driver = `${NPM_DIR}build/conformance_driver.mjs`;
    const shared = await startBrokers(1);
    try {
      for (const s of SCENARIOS) {
        await t.step(s.name, async () => {
          const own = (s.brokers ?? 1) === 1
            ? null
            : await startBrokers(s.brokers!, s.cluster === true);
          const procs = own?.procs ?? shared.procs;
          try {
            const brokers = procs.map((p) => ({
              listen: p.listen.listen,
              pid: p.child.pid,
              nodeId: p.listen.nodeId ?? "",
            }));
            const r = await run("node", [driver, SCENARIOS_PATH, s.name, JSON.stringify(brokers)]);
            assert.equal(r.code, 0, `${s.name} failed on Node:\n${r.out}\n${r.err}`);
            assert.equal(JSON.parse(r.out).ok, true);
          } finally {
            if (own !== null) await stopBrokers(own);
          }
        });
      }
    } finally {
      await stopBrokers(shared);
    }
  },
});
