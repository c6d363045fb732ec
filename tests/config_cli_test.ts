// cli/broker.ts reads its settings from a --config file, GREGOR_* variables and flags (flags win),
// refuses a bad one with status 2 and one line; docs/operations.md lists every key of the schema.

import assert from "node:assert/strict";
import { CONFIG_SCHEMA, envName, flagName } from "../src/config/mod.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
const DOCS = new URL("../docs/operations.md", import.meta.url);

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("cli/broker.ts: a flag beats GREGOR_* env, which beats the --config file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-config-" });
  const config = `${dir}/gregor.yaml`;
  await Deno.writeTextFile(config, "port: 1\nbrokerId: from-file\nmetrics:\n  port: 0\n");
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BROKER, "--config", config, "--port", String(port)],
    env: { GREGOR_PORT: "2", GREGOR_DATA_DIR: `${dir}/data` },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("The broker exited before listening");
      text += value;
    }
    reader.releaseLock();
    const line = JSON.parse(text.split("\n")[0]!);
    assert.equal(line.listen, `127.0.0.1:${port}`, "the flag's port wins");
    assert.equal(line.dataDir, `${dir}/data`, "the variable's data dir wins over the default");
    assert.equal(line.brokerId, "from-file", "the file's broker id wins over the default");
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await child.stdout.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
    assert.equal(
      status.code,
      0,
      `SIGTERM shuts the broker down cleanly: ${JSON.stringify(status)}`,
    );
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli/broker.ts: a bad setting exits 2 with one line naming key, value and source", async () => {
  const cases: [Record<string, string>, string[], RegExp][] = [
    [
      { GREGOR_PORT: "70a0" },
      [],
      /^Invalid config: port = "70a0" \(from GREGOR_PORT\): expected a whole number from 0 to 65535$/,
    ],
    [{}, ["--fsync", "sometimes"], /^Invalid config: defaultFsync = "sometimes" \(from --fsync\)/],
    [{}, ["--prot", "7070"], /^Invalid config: unknown flag --prot; did you mean --port\?/],
    [{}, ["--config", "/nonexistent/gregor.yaml"], /^Invalid config: cannot read --config/],
  ];
  for (const [env, args, message] of cases) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BROKER, ...args],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
    assert.match(stderr.trimEnd(), message);
  }
});

Deno.test("docs/operations.md lists every configuration key with its flag and variable", async () => {
  const docs = await Deno.readTextFile(DOCS);
  for (const spec of CONFIG_SCHEMA) {
    const flag = `--${spec.kind === "bool" ? "[no-]" : ""}${flagName(spec.key)}`;
    for (const text of [`\`${spec.key}\``, flag, envName(spec.key)]) {
      assert.ok(docs.includes(text), `docs/operations.md does not mention ${text}`);
    }
  }
});
