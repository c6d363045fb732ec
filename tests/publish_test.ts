// The package in deno.json is ready for JSR: `deno publish --dry-run` passes (name, version,
// exports, license, and no slow types in the public API).

import assert from "node:assert/strict";

Deno.test("deno publish --dry-run passes for the package", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, out);
  assert.match(out, /Dry run complete/);
});
