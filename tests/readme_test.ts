// The README's promises, tested: the quick-start snippet is examples/quickstart.ts verbatim, and it
// works as written against a broker started the way `deno task start` starts it (default port).

import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const readme = await Deno.readTextFile(`${root}README.md`);

Deno.test("README shows the two set-up commands, with npx and plain deno", () => {
  for (
    const cmd of [
      "npx -y deno@2.9.6 task start",
      "npx -y deno@2.9.6 task test",
      "deno task start",
      "deno task test",
    ]
  ) {
    assert.ok(readme.includes(cmd), `README lacks "${cmd}"`);
  }
});

Deno.test("README's quick-start snippet is examples/quickstart.ts, verbatim", async () => {
  const m = /<!-- quickstart:begin -->\s*```ts\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(
    readme,
  );
  assert.ok(m, "README has no quickstart block");
  assert.equal(m[1], await Deno.readTextFile(`${root}examples/quickstart.ts`));
});

Deno.test("the quick-start snippet publishes and receives against the default broker", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-readme-" });
  const broker = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/broker.ts", "--data-dir", dataDir],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = broker.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("The broker exited before listening (is port 7070 free?)");
      line += value;
    }
    reader.releaseLock();
    assert.match(line, /"listen":"127\.0\.0\.1:7070"/);
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "examples/quickstart.ts"],
      cwd: root,
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    assert.match(out, /published at offsets \[ 0, 1, 2 \]/);
    assert.match(
      out,
      /received #0: margherita\nreceived #1: quattro formaggi\nreceived #2: diavola/,
    );
  } finally {
    broker.kill("SIGTERM");
    const status = await broker.status;
    await broker.stdout.cancel().catch(() => {});
    await broker.stderr.cancel().catch(() => {});
    assert.equal(status.code, 0, "SIGTERM shuts the broker down cleanly");
    await Deno.remove(dataDir, { recursive: true });
  }
});
