// The Python SDK (sdk/python) under `deno task test`: its venv made once by sdk/python/setup_venv.sh,
// then pytest (the golden frames, every conformance scenario against broker processes it starts
// with this Deno, the README's quick start) and mypy in strict mode.

import assert from "node:assert/strict";

const SDK = new URL("../sdk/python/", import.meta.url).pathname;

function hasPython(): boolean {
  try {
    const out = new Deno.Command("python3", {
      args: ["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success;
  } catch {
    return false;
  }
}

const PYTHON = hasPython();
if (!PYTHON) {
  console.log("conformance_python_test: skipped, python3 (3.11 or later) is not on PATH");
}

async function run(command: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(command, {
    args,
    cwd: SDK,
    env: { GREGORMQ_DENO: Deno.execPath() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${command} ${args.join(" ")} failed:\n${text}`);
  return text;
}

Deno.test({
  name: "python SDK: pytest passes, every conformance scenario included, and mypy is clean",
  ignore: !PYTHON,
  async fn() {
    await run("bash", "setup_venv.sh");
    const out = await run(".venv/bin/pytest", "-v", "-rs");
    // The scenarios and the quick start need live brokers: they must have run, not skipped.
    const scenarios = JSON.parse(
      await Deno.readTextFile(new URL("../conformance/scenarios.json", import.meta.url)),
    ).scenarios as { name: string }[];
    for (const s of scenarios) {
      assert.match(out, new RegExp(`test_scenario\\[${s.name}\\] PASSED`), `${s.name}:\n${out}`);
    }
    assert.match(out, /test_readme_quick_start PASSED/, out);
    assert.match(out, /test_golden_frame_reencodes_byte_for_byte\[produce_request\] PASSED/, out);
    assert.doesNotMatch(out, /SKIPPED/, out);
    await run(".venv/bin/mypy");
  },
});
