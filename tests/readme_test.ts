// The README's promises, tested: the quick-start snippet is examples/quickstart.ts verbatim, and
// the README's own commands (the Node-only `npx -y deno@2.9.6 …` forms and the plain `deno …`
// ones) run exactly as written, through a shell, against a broker they start the way the README
// starts it, and print what the README shows.

import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const readme = await Deno.readTextFile(`${root}README.md`);
const NPX = "npx -y deno@2.9.6";
/** A broker that has not said it listens by then has failed (npx may unpack Deno first). */
const STARTUP_MS_MAX = 60_000;

/** The commands of a ```sh block, without comments; the block is the first that has `marker`. */
function shBlock(marker: string): string[] {
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
    .find((b) => b.includes(marker));
  assert.ok(block !== undefined, `README has no sh block with "${marker}"`);
  return block.split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l !== "");
}

/** The plain block of output right after the ```sh block that has `marker`. */
function outputAfter(marker: string): string {
  const m = new RegExp("```sh\\n[^`]*" + marker + "[^`]*```\\s*```\\n([\\s\\S]*?)```").exec(readme);
  assert.ok(m, `README shows no output after the block with "${marker}"`);
  return m[1]!;
}

/** The backticked command in the README that matches `pattern`, as written. */
function inlineCommand(pattern: RegExp): string {
  const found = [...readme.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!).find((c) => pattern.test(c));
  assert.ok(found !== undefined, `README has no command matching ${pattern}`);
  return found;
}

Deno.test("README shows the set-up commands, with npx and plain deno, and what -q does", () => {
  assert.deepEqual(shBlock("task start"), [`${NPX} task start`, `${NPX} task test`]);
  for (const cmd of ["deno task start", "deno task test", `alias deno="${NPX}"`]) {
    assert.ok(readme.includes(cmd), `README lacks "${cmd}"`);
  }
  assert.match(readme, /`deno task -q …` leaves out the\s+`Task …` line/);
});

Deno.test("README's quick-start snippet is examples/quickstart.ts, verbatim", async () => {
  const m = /<!-- quickstart:begin -->\s*```ts\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(
    readme,
  );
  assert.ok(m, "README has no quickstart block");
  assert.equal(m[1], await Deno.readTextFile(`${root}examples/quickstart.ts`));
});

Deno.test("the README's data directories are ignored by git", async () => {
  const dirs = ["./data", ...[...readme.matchAll(/--data-dir (\S+)/g)].map((m) => m[1]!)];
  assert.ok(dirs.length >= 2, "the cluster example names its own data directory");
  for (const dir of dirs) {
    const r = await new Deno.Command("git", {
      args: ["check-ignore", "-q", `${dir}/topics/orders/0/00000000000000000000.log`],
      cwd: root,
    }).output();
    assert.equal(r.code, 0, `git does not ignore ${dir}/`);
  }
});

Deno.test("the tarball the README's On Node build writes in npm/ is ignored by git", async () => {
  const tarball = /npm pack +# writes (\S+)\n/.exec(readme)?.[1];
  assert.ok(tarball !== undefined, "README names the tarball npm pack writes");
  const r = await new Deno.Command("git", {
    args: ["check-ignore", "-q", `npm/${tarball}`],
    cwd: root,
  }).output();
  assert.equal(r.code, 0, `git does not ignore npm/${tarball}`);
});

interface Shell {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` through `sh -c` in the repository, as a user would type it. */
async function sh(command: string): Promise<Shell> {
  const r = await new Deno.Command("sh", { args: ["-c", command], cwd: root, stdin: "null" })
    .output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/**
 * Starts the broker with the README's command (its data in a fresh directory, through
 * GREGOR_DATA_DIR so the command stays as written) in a process group of its own: npx does not
 * pass SIGTERM on, so the test stops the whole group, as Ctrl-C in a terminal does.
 */
async function startBroker(command: string, dataDir: string) {
  const child = new Deno.Command("setsid", {
    args: ["sh", "-c", command],
    cwd: root,
    env: { GREGOR_DATA_DIR: dataDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => Deno.kill(-child.pid, "SIGKILL"), STARTUP_MS_MAX);
  try {
    while (!text.includes('"listen"') || !text.slice(text.indexOf('"listen"')).includes("\n")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(
          `\`${command}\` exited before listening (is port 7070 free?): ${await stderr}`,
        );
      }
      text += value;
    }
  } finally {
    clearTimeout(timer);
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* keep the pipe from filling up */ }
  })();
  return {
    listen: text,
    async stop(): Promise<void> {
      Deno.kill(-child.pid, "SIGINT");
      await child.status;
      await drained;
      await stderr;
    },
  };
}

/** The README's first run in one form: start a broker, run the quick start, then gregorctl. */
function firstRun(form: "npx" | "deno") {
  return async () => {
    const start = form === "npx" ? `${NPX} task start` : "deno task start";
    const quickstart = inlineCommand(
      form === "npx"
        ? /^npx -y deno@2\.9\.6 run -A examples\/quickstart\.ts$/
        : /^deno run -A examples\/quickstart\.ts$/,
    );
    const ctl = shBlock("gregorctl topic create");
    assert.ok(ctl.every((c) => c.startsWith(`${NPX} task -q gregorctl `)), ctl.join("\n"));
    if (form === "deno") {
      const plain = ctl[0]!.replace(NPX, "deno");
      assert.ok(readme.includes(`\`${plain}\`, and so on`), `README lacks "${plain}"`);
    }
    const commands = form === "npx" ? ctl : ctl.map((c) => c.replace(NPX, "deno"));
    const dataDir = await Deno.makeTempDir({ prefix: "gregormq-readme-" });
    const broker = await startBroker(start, dataDir);
    try {
      assert.match(broker.listen, /"listen":"127\.0\.0\.1:7070"/);
      const run = await sh(quickstart);
      assert.equal(run.code, 0, run.stderr);
      const shown = /<!-- quickstart:end -->\s*```\n([\s\S]*?)```/.exec(readme);
      assert.ok(shown, "README shows no output for the quick start");
      assert.equal(run.stdout, shown[1]);
      let out = "";
      for (const c of commands) {
        const r = await sh(c);
        assert.equal(r.code, 0, `${c}: ${r.stderr}`);
        assert.doesNotMatch(r.stdout + r.stderr, /Task /, `${c} printed the Task line`);
        out += r.stdout;
      }
      assert.equal(out, outputAfter("gregorctl topic create"));
    } finally {
      await broker.stop();
      await Deno.remove(dataDir, { recursive: true });
    }
  };
}

Deno.test("the README's first run works as written with only Node and npm (npx)", firstRun("npx"));
Deno.test("the README's first run works as written with Deno installed", firstRun("deno"));

Deno.test("the README's simulator commands run as written and print what it says", async () => {
  const commands = shBlock("task sim --seed 42");
  assert.equal(commands.length, 4, commands.join("\n"));
  for (const c of commands) {
    const r = await sh(c);
    if (c.includes("--bug")) {
      // A planted bug is caught, with the one line that reproduces it.
      assert.equal(r.code, 1, `${c}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /^violation {2}/m);
      const again = /^reproduce: (deno task sim .*)$/m.exec(r.stdout);
      assert.ok(again, `${c} printed no reproduction line`);
    } else if (c.includes("--seeds")) {
      const [, from, to] = /--seeds (\d+)\.\.(\d+)/.exec(c)!;
      const n = Number(to) - Number(from) + 1;
      assert.equal(r.code, 0, `${c}: ${r.stderr}`);
      assert.equal(r.stdout.split("\n").filter((l) => /^seed \d+ pass trace /.test(l)).length, n);
      assert.match(r.stdout, new RegExp(`^${n} passed, 0 failed`, "m"));
    } else {
      assert.equal(r.code, 0, `${c}: ${r.stderr}`);
      assert.match(r.stdout, /^trace {6}[0-9a-f]{16}$/m);
      assert.match(r.stdout, /^outcome {4}PASS$/m);
    }
  }
});

/** How long the README's two nodes get to find each other by gossip, ms. */
const GOSSIP_MS_MAX = 20_000;

Deno.test({
  name: "the README's cluster example runs as written: two nodes, two names, one cluster",
  // The second node's data directory is the README's ./data-b: one a user left there is theirs.
  ignore: await Deno.stat(`${root}data-b`).then(() => true, () => false),
  async fn() {
    const [first, second, members, ...rest] = shBlock("--cluster-port 7072");
    assert.deepEqual(rest, []);
    assert.match(first!, /^deno task start /);
    assert.match(second!, /^deno task start .*--data-dir \.\/data-b /);
    const dataDir = await Deno.makeTempDir({ prefix: "gregormq-readme-cluster-" });
    const nodes: Awaited<ReturnType<typeof startBroker>>[] = [];
    try {
      nodes.push(await startBroker(first!, dataDir));
      nodes.push(await startBroker(second!, dataDir));
      const ids = nodes.map((n) =>
        JSON.parse(n.listen.split("\n").find((l) => l.includes('"listen"'))!).brokerId
      );
      assert.notEqual(ids[0], ids[1], "each node goes by its own name");
      assert.ok(!ids.includes("gregormq-0"), ids.join());
      const end = Date.now() + GOSSIP_MS_MAX;
      let out = "";
      for (;;) {
        const r = await sh(members!);
        assert.equal(r.code, 0, `${members}: ${r.stderr}`);
        out = r.stdout;
        if (ids.every((id) => new RegExp(`^${id}\\s.*\\salive\\s`, "m").test(out))) break;
        assert.ok(Date.now() < end, `the two nodes did not find each other:\n${out}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      for (const n of nodes.reverse()) await n.stop();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(`${root}data-b`, { recursive: true }).catch(() => {});
    }
  },
});

/** Whether `tool --version` runs here. */
async function has(tool: string): Promise<boolean> {
  try {
    return (await new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

const NODE = (await has("node")) && (await has("npm"));
if (!NODE) {
  console.log("readme_test: the On Node steps skip: `node` or `npm` is missing (CI has both)");
}

Deno.test({
  name: "the README's On Node steps build the tarball it names, which a project installs and runs",
  ignore: !NODE,
  async fn() {
    const [build, install, ...rest] = shBlock("cd npm && npm ci");
    assert.deepEqual(rest, []);
    const tarball = /npm pack +# writes (\S+)\n/.exec(readme)?.[1];
    assert.ok(tarball !== undefined, "README names the tarball npm pack writes");
    const snippet = /```sh\ncd npm [^`]*```\s*```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(snippet !== undefined, "README shows the Node snippet after the build");
    // A copy of the repository, so this `npm ci` does not race client_node_test's in npm/.
    const copy = await Deno.makeTempDir({ prefix: "gregormq-readme-npm-" });
    const app = await Deno.makeTempDir({ prefix: "gregormq-readme-app-" });
    const dataDir = await Deno.makeTempDir({ prefix: "gregormq-readme-node-" });
    try {
      const files = await sh(`git ls-files -z | xargs -0 cp --parents -t '${copy}'`);
      assert.equal(files.code, 0, files.stderr);
      const built = await new Deno.Command("sh", { args: ["-c", build!], cwd: copy }).output();
      assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
      await Deno.stat(`${copy}/npm/${tarball}`);
      // The install line with its two placeholders filled in: the project and this copy.
      assert.match(install!, /^cd ~\/my-service && npm install \/path\/to\/gregormq\/npm\/\S+$/);
      await Deno.writeTextFile(`${app}/package.json`, '{ "name": "my-service", "type": "module" }');
      const installed = await sh(
        install!.replace("~/my-service", app).replace("/path/to/gregormq", copy) +
          " --no-audit --no-fund --offline",
      );
      assert.equal(installed.code, 0, installed.stderr);
      // The snippet is plain JavaScript as well: Node runs it against the README's broker.
      await Deno.writeTextFile(`${app}/main.js`, snippet);
      const broker = await startBroker("deno task start", dataDir);
      try {
        const ran = await new Deno.Command("node", { args: ["main.js"], cwd: app }).output();
        assert.equal(ran.code, 0, new TextDecoder().decode(ran.stderr));
        const r = await sh("deno task -q gregorctl consume greetings --from earliest");
        assert.equal(r.stdout, "0\t\thello from Node\n", r.stderr);
      } finally {
        await broker.stop();
      }
    } finally {
      for (const dir of [copy, app, dataDir]) await Deno.remove(dir, { recursive: true });
    }
  },
});
