// `deno task sim` as a user runs it: the report names the seed, the derived options, the outcome and
// the trace hash; a failure prints the one line that reproduces it, and that line does.

import assert from "node:assert/strict";

const SIM = new URL("../cli/sim.ts", import.meta.url).pathname;

async function sim(...args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", SIM, ...args],
  }).output();
  return { code, out: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
}

Deno.test("deno task sim --seed N prints seed, options, outcome and the same trace hash twice", async () => {
  const a = await sim("--seed", "11");
  const b = await sim("--seed", "11");
  assert.equal(a.code, 0, a.out);
  for (const label of ["seed       11", "options    {", "faults     net=", "outcome    PASS"]) {
    assert.ok(a.out.includes(label), `missing "${label}" in:\n${a.out}`);
  }
  const trace = /trace {6}([0-9a-f]{16})/.exec(a.out)?.[1];
  assert.ok(trace);
  assert.equal(/trace {6}([0-9a-f]{16})/.exec(b.out)?.[1], trace);
});

Deno.test("a failing seed prints a reproduction line that reproduces the same failure", async () => {
  const first = await sim("--seed", "3", "--bug", "ack-before-sync");
  assert.equal(first.code, 1, first.out);
  const line = /^reproduce: deno task sim (.*)$/m.exec(first.out)?.[1];
  assert.equal(line, "--scenario register --seed 3 --bug ack-before-sync");
  const again = await sim(...line.split(" "));
  assert.equal(again.code, 1);
  const traceOf = (s: string) => /trace {6}([0-9a-f]{16})/.exec(s)?.[1];
  assert.equal(traceOf(again.out), traceOf(first.out));
  assert.ok(/violation {2}lost write/.test(again.out));
});

Deno.test("deno task sim rejects an unknown option with a clear message and exit code 2", async () => {
  const r = await sim("--seed", "1", "--bogus", "3");
  assert.equal(r.code, 2);
  assert.match(r.out, /Unknown option --bogus for scenario register/);
});
