// Tests for the gregormq lint plugin: what the I/O seam forbids, where, and what it must not flag.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import plugin from "./io_seam_plugin.ts";

const CHECKED = ["src/broker/x.ts", "sim/x.ts"];
const EXEMPT = [
  "src/io/deno/x.ts",
  "src/io/node/x.ts",
  "cli/x.ts",
  "tests/x.ts",
  "bench/x.ts",
  "lint/x.ts",
];

function lint(fileName: string, source: string): Deno.lint.Diagnostic[] {
  return Deno.lint.runPlugin(plugin, fileName, source);
}

/** Asserts that each file reports exactly one io-seam error, for `what`, and nothing else. */
function assertReports(source: string, what: string, fileNames: string[] = CHECKED): void {
  for (const fileName of fileNames) {
    const diagnostics = lint(fileName, source);
    assert.deepEqual(
      diagnostics.map((d) => [d.id, d.message.slice(0, d.message.indexOf(" is not allowed"))]),
      [["gregormq/io-seam", what]],
      `${fileName}: ${source}`,
    );
  }
}

function assertClean(source: string, fileNames: string[]): void {
  for (const fileName of fileNames) {
    assert.deepEqual(lint(fileName, source), [], `${fileName}: ${source}`);
  }
}

/** One forbidden use: a label for the test name, the source, and what the message names. */
interface Case {
  label: string;
  source: string;
  what: string;
}

const CASES: Case[] = [
  { label: "Deno.open()", source: `await Deno.open("f");`, what: "Deno" },
  { label: "Deno.env", source: `Deno.env.get("HOME");`, what: "Deno" },
  { label: "an alias of Deno", source: `const d = Deno;`, what: "Deno" },
  { label: "globalThis.Deno", source: `globalThis.Deno.exit(1);`, what: "globalThis.Deno" },
  { label: "a Deno type", source: `let c: Deno.Conn | undefined;`, what: "Deno" },
  { label: "setTimeout()", source: `setTimeout(() => {}, 10);`, what: "setTimeout" },
  { label: "setInterval()", source: `setInterval(() => {}, 10);`, what: "setInterval" },
  {
    label: "globalThis.setTimeout()",
    source: `globalThis.setTimeout(() => {}, 1);`,
    what: "globalThis.setTimeout",
  },
  {
    label: "setTimeout imported from node:timers",
    source: `import { setTimeout } from "node:timers";`,
    what: `setTimeout from "node:timers"`,
  },
  {
    label: "setInterval imported from node:timers/promises",
    source: `import { setInterval as every } from "node:timers/promises";`,
    what: `setInterval from "node:timers/promises"`,
  },
  {
    label: "re-exporting setTimeout from node:timers",
    source: `export { setTimeout } from "node:timers";`,
    what: `setTimeout from "node:timers"`,
  },
  {
    label: "a namespace import of node:timers",
    source: `import * as timers from "node:timers";`,
    what: `Importing all of "node:timers"`,
  },
  {
    label: "AbortSignal.timeout()",
    source: `AbortSignal.timeout(100);`,
    what: "AbortSignal.timeout",
  },
  { label: "new Date()", source: `const d = new Date();`, what: "Date" },
  { label: "Date.now()", source: `const t = Date.now();`, what: "Date" },
  { label: "performance.now()", source: `const t = performance.now();`, what: "performance" },
  {
    label: "node:perf_hooks",
    source: `import { performance as p } from "node:perf_hooks";`,
    what: `Importing "node:perf_hooks"`,
  },
  {
    label: "node:fs",
    source: `import { readFileSync } from "node:fs";`,
    what: `Importing "node:fs"`,
  },
  {
    label: "node:net",
    source: `import * as net from "node:net";`,
    what: `Importing "node:net"`,
  },
  {
    label: "node:child_process",
    source: `import { spawn } from "node:child_process";`,
    what: `Importing "node:child_process"`,
  },
  { label: "process.env", source: `const e = process.env;`, what: "process" },
  { label: "Math.random()", source: `const r = Math.random();`, what: "Math.random" },
  {
    label: "globalThis.Math.random()",
    source: `const r = globalThis.Math.random();`,
    what: "Math.random",
  },
  {
    label: "random destructured from Math",
    source: `const { random } = Math;`,
    what: "Math.random",
  },
  {
    label: "crypto.getRandomValues()",
    source: `crypto.getRandomValues(new Uint8Array(4));`,
    what: "crypto",
  },
  { label: "crypto.randomUUID()", source: `const id = crypto.randomUUID();`, what: "crypto" },
  {
    label: "randomBytes imported from node:crypto",
    source: `import { randomBytes } from "node:crypto";`,
    what: `Importing "node:crypto"`,
  },
  {
    label: "a dynamic import of node:crypto",
    source: `const c = await import("node:crypto");`,
    what: `Importing "node:crypto"`,
  },
  { label: "WeakRef", source: `const w = new WeakRef({});`, what: "WeakRef" },
  {
    label: "FinalizationRegistry",
    source: `const r = new FinalizationRegistry(() => {});`,
    what: "FinalizationRegistry",
  },
];

for (const c of CASES) {
  Deno.test(`io-seam plugin reports ${c.label} under src/ and sim/`, () => {
    assertReports(c.source, c.what);
  });
  Deno.test(`io-seam plugin allows ${c.label} under src/io/deno/, src/io/node/, cli/, tests/, bench/, lint/`, () => {
    assertClean(c.source, EXEMPT);
  });
}

Deno.test("io-seam plugin message says what is forbidden, where, and what to use instead", () => {
  const [diagnostic, ...rest] = lint("src/broker/x.ts", "const t = Date.now();");
  assert.deepEqual(rest, []);
  assert.equal(
    diagnostic?.message,
    "Date is not allowed under src/ (outside src/io/deno/ and src/io/node/) or sim/: " +
      "read time through env.clock so the simulator controls it.",
  );
  assert.deepEqual(diagnostic?.range, [10, 14]);
});

Deno.test("io-seam plugin reports each forbidden use once, at its own position", () => {
  const source = `const a = Date.now();\nconst b = Math.random();\nsetTimeout(f, 1);\n`;
  const diagnostics = lint("sim/x.ts", source);
  assert.deepEqual(
    diagnostics.map((d) => source.slice(d.range[0], d.range[1])),
    ["Date", "Math.random", "setTimeout"],
  );
});

Deno.test("io-seam plugin reports globalThis.Date.now() once", () => {
  assertReports(`globalThis.Date.now();`, "globalThis.Date");
});

Deno.test("io-seam plugin reports Date destructured from globalThis", () => {
  assertReports(`const { Date: D } = globalThis;`, "globalThis.Date");
});

Deno.test("io-seam plugin reports a shorthand { Date } that reads the global", () => {
  assertReports(`const o = { Date };`, "Date");
});

Deno.test("io-seam plugin reports the global when a same-named local lives in another scope", () => {
  assertReports(`function f() { const Date = 1; return Date; }\nDate.now();`, "Date");
});

Deno.test("io-seam plugin allows setImmediate imported from node:timers under sim/", () => {
  assertClean(`import { setImmediate } from "node:timers";\nsetImmediate(() => {});`, CHECKED);
  assertClean(`import { setImmediate } from "node:timers/promises";`, CHECKED);
});

Deno.test("io-seam plugin forbids crypto.subtle too: its promises settle outside the simulation", () => {
  assertReports(`await crypto.subtle.digest("SHA-256", new Uint8Array(1));`, "crypto");
  assertReports(`crypto.getRandomValues(new Uint8Array(4));`, "crypto");
});

Deno.test("io-seam plugin does not flag member properties with forbidden names", () => {
  assertClean(
    `x.Deno; x.setTimeout(f, 1); x.Date.now(); x.performance.now(); x.crypto.randomUUID();
     x.WeakRef; env.clock.now(); env.random.float(); x.Math.random(); Math.floor(1.5);
     this.Date; x?.setInterval;`,
    CHECKED,
  );
});

Deno.test("io-seam plugin does not flag object keys, class members or type members", () => {
  assertClean(
    `const o = { Date: 1, Deno: 2, "crypto": 3, setTimeout() {}, get performance() { return 1; } };
     const { Date: d, crypto: c } = o;
     class A { Date = 1; static setTimeout = 2; performance(): void {} #crypto = 3; }
     interface I { Date: number; setTimeout(ms: number): void }
     type T = { WeakRef: string };
     enum E { Date, Deno }
     type U = E.Date;`,
    CHECKED,
  );
});

Deno.test("io-seam plugin does not flag locally declared names that shadow the globals", () => {
  assertClean(
    `const performance = { now: () => 1 };
     performance.now();
     const Math = { random: () => 4 };
     Math.random();
     function f(Date: { now(): number }, { crypto }: { crypto: number }) {
       return Date.now() + crypto;
     }
     function g() {
       if (true) { var setTimeout = 1; }
       return setTimeout;
     }
     try { f(o, o); } catch (WeakRef) { WeakRef; }
     for (const Deno of [1]) Deno;
     class Date2 { static x = class Date { now() { return Date; } }; }
     function h<Date>(d: Date): Date { return d; }
     const arrow = (setInterval: number) => setInterval;
     type Mapped<K extends string> = { [Date in K]: Date };
     type Fn = (Deno: number) => typeof Deno;`,
    CHECKED,
  );
});

Deno.test("io-seam plugin does not flag an imported binding named like a global", () => {
  assertClean(`import { clock as Date } from "./clock.ts";\nDate.now();`, CHECKED);
});

Deno.test("io-seam plugin does not flag a clean file", () => {
  assertClean(
    `// Retries a send with backoff drawn from the env.
     import type { Env } from "../io/mod.ts";
     export async function retry(env: Env, send: () => Promise<void>): Promise<void> {
       const deadlineMs = env.clock.now() + 1000;
       while (env.clock.now() < deadlineMs) {
         try { return await send(); } catch { await env.clock.sleep(env.random.int(1, 50)); }
       }
       throw new Error("send did not succeed within 1000 ms");
     }`,
    [...CHECKED, ...EXEMPT],
  );
});

Deno.test("io-seam plugin checks absolute and Windows paths by their src/ and sim/ segments", () => {
  const root = fileURLToPath(new URL("../", import.meta.url));
  assertReports("Date.now();", "Date", [
    `${root}src/broker/x.ts`,
    `${root}sim/x.ts`,
    "/elsewhere/src/broker/x.ts",
    "C:\\repo\\src\\broker\\x.ts",
    "C:\\repo\\sim\\x.ts",
  ]);
  assertClean("Date.now();", [
    `${root}src/io/deno/x.ts`,
    `${root}cli/x.ts`,
    "C:\\repo\\src\\io\\deno\\x.ts",
    "C:\\repo\\cli\\x.ts",
  ]);
});

Deno.test("io-seam plugin applies to test files under src/ by the same path rule", () => {
  assertReports("Date.now();", "Date", ["src/broker/topic_test.ts", "sim/runner_test.ts"]);
  assertClean("Date.now();", ["src/io/deno/clock_test.ts"]);
});

Deno.test("io-seam plugin allows Deno.test and Deno.TestContext in _test.ts files", () => {
  assertClean(
    `Deno.test("a", () => {});
     Deno.test.ignore("b", () => {});
     Deno.test({ name: "c", fn: async (t: Deno.TestContext) => { await t.step("d", () => {}); } });`,
    ["src/broker/topic_test.ts", "sim/runner_test.ts"],
  );
});

Deno.test("io-seam plugin reports other Deno APIs in _test.ts files", () => {
  assertReports(
    `Deno.test("a", async () => { await Deno.makeTempDir(); });`,
    "Deno",
    ["src/broker/topic_test.ts", "sim/runner_test.ts"],
  );
});

Deno.test("io-seam plugin reports Deno.test outside _test.ts files", () => {
  assertReports(`Deno.test("a", () => {});`, "Deno", ["src/broker/topic.ts", "sim/runner.ts"]);
});

const DEFAULT_EXPORT_ID = "gregormq/named-exports-only";

Deno.test("named-exports-only reports export default under src/, src/io/deno/ and sim/", () => {
  for (const fileName of [...CHECKED, "src/io/deno/x.ts"]) {
    for (const source of ["export default function f() {}", "const x = 1;\nexport default x;"]) {
      const diagnostics = lint(fileName, source);
      assert.deepEqual(diagnostics.map((d) => d.id), [DEFAULT_EXPORT_ID], `${fileName}: ${source}`);
      assert.match(diagnostics[0]?.message ?? "", /^export default is not allowed .*named export/);
    }
  }
});

Deno.test("named-exports-only reports exporting a name as default", () => {
  for (
    const source of ["const x = 1;\nexport { x as default };", `export { default } from "./y.ts";`]
  ) {
    assert.deepEqual(lint("src/broker/x.ts", source).map((d) => d.id), [DEFAULT_EXPORT_ID]);
  }
});

Deno.test("named-exports-only allows export default outside src/ and sim/", () => {
  assertClean("export default function f() {}", ["cli/x.ts", "tests/x.ts", "lint/x.ts"]);
});

Deno.test("named-exports-only allows named exports", () => {
  assertClean(
    `export function f() {}\nconst x = 1;\nexport { x, x as y };\nexport * from "./z.ts";`,
    [...CHECKED, "src/io/deno/x.ts"],
  );
});
