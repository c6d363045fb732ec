// `--version` on both command-line tools, run as real processes: each prints its name and the
// package version from deno.json, and exits 0 without starting anything.

import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };

for (const [tool, name] of [["broker.ts", "gregormq"], ["gregorctl.ts", "gregorctl"]] as const) {
  Deno.test(`cli/${tool} --version prints ${name} and the version from deno.json`, async () => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(`../cli/${tool}`, import.meta.url).pathname, "--version"],
      stdin: "null",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.equal(out, `${name} ${denoJson.version} (deno ${Deno.version.deno})\n`);
  });
}
