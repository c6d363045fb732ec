// The package in deno.json is ready for JSR: `deno publish --dry-run` passes (name, version,
// exports, license, and no slow types in the public API) without a warning, and ships only the
// client's sources. It runs offline: the dry run checks and lists, it uploads nothing.

import assert from "node:assert/strict";
import { killAll, spawnBroker } from "./_broker_process.ts";

/** What the package may hold: the public face, the sources it imports, and its papers. */
const PUBLISHED = /^(mod\.ts|deno\.json|README\.md|LICENSE|src\/.+\.ts)$/;

Deno.test("deno publish --dry-run passes without warnings and ships only the client", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, out);
  assert.match(out, /Dry run complete/);
  // A warning (an unanalyzable dynamic import, say) still exits 0, but breaks users of the package.
  assert.doesNotMatch(out, /^(warning|error)\b/m, out);
  const files = [...out.matchAll(/^\s+file:\/\/(\S+) \(/gm)].map((m) => m[1]!.slice(root.length));
  assert.ok(files.includes("mod.ts"), out);
  for (const file of files) {
    assert.match(file, PUBLISHED, `the package would ship ${file}`);
    assert.doesNotMatch(file, /_test\.ts$/, `the package would ship the test ${file}`);
  }
});

Deno.test("a project outside the repository uses the client through the README's links", async () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const readme = await Deno.readTextFile(`${root}/README.md`);
  const block = /<!-- links:begin -->\s*```json\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, "README has no links:begin block");
  const config = JSON.parse(block[1]!);
  assert.deepEqual(config.links, ["../gregormq"], "the README links a clone beside the project");
  // The clone beside the project is this checkout.
  config.links = [root];
  const app = await Deno.makeTempDir({ prefix: "gregormq_outside_" });
  const broker = await spawnBroker(["--port", "0", "--data-dir", `${app}/data`]);
  try {
    await Deno.writeTextFile(`${app}/deno.json`, JSON.stringify(config));
    // A compressed batch loads the codecs, whose npm imports only resolve through the link.
    await Deno.writeTextFile(
      `${app}/main.ts`,
      `import { connect } from "@gregormq/gregormq";
const client = await connect({ servers: [Deno.args[0]!] });
const producer = client.producer({ compression: "lz4" });
console.log(await producer.send("outside", { value: "x".repeat(4096) }));
await producer.close();
await client.close();
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "main.ts", broker.listen.listen],
      cwd: app,
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    assert.equal(out.code, 0, dec.decode(out.stderr));
    assert.equal(dec.decode(out.stdout), "0\n");
  } finally {
    await killAll([broker]);
    await Deno.remove(app, { recursive: true });
  }
});
