// Builds the client for Node: dist/index.js (one ES module, dependencies and lz4's WebAssembly
// inlined, so the package has no dependencies), dist/types/ (declarations from tsc), and the Node
// test programs under build/ that tests/client_node_test.ts runs (and the SDK benchmarks' Node side).
// Run from npm/ after `npm ci`.

import { execFileSync } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..");

/**
 * lz4-wasm is built for bundlers that understand `import * as wasm from "x.wasm"`; esbuild and
 * Node 20 do not. This turns such an import into a module that instantiates the embedded bytes
 * synchronously with the importing modules as the WebAssembly imports.
 */
const wasmModules = {
  name: "wasm-modules",
  setup(build) {
    build.onResolve({ filter: /\.wasm$/ }, (args) => ({
      path: join(args.resolveDir, args.path),
      namespace: "wasm-module",
    }));
    build.onLoad({ filter: /.*/, namespace: "wasm-module" }, (args) => {
      const bytes = readFileSync(args.path);
      const module = new WebAssembly.Module(bytes);
      const sources = [...new Set(WebAssembly.Module.imports(module).map((i) => i.module))];
      const lines = sources.map((s, n) => `import * as imported${n} from ${JSON.stringify(s)};`);
      const table = sources.map((s, n) => `${JSON.stringify(s)}: imported${n}`).join(", ");
      lines.push(
        `const bytes = Uint8Array.from(atob(${JSON.stringify(bytes.toString("base64"))}), ` +
          `(c) => c.charCodeAt(0));`,
        `const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { ${table} });`,
      );
      for (const e of WebAssembly.Module.exports(module)) {
        lines.push(`export const ${e.name} = instance.exports.${e.name};`);
      }
      return { contents: lines.join("\n"), resolveDir: dirname(args.path), loader: "js" };
    });
  },
};

/** Bundles `entry` for Node 20 as one ES module at `outfile`. */
async function bundle(entry, outfile) {
  await esbuild.build({
    entryPoints: [join(repo, entry)],
    outfile: join(here, outfile),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // The sources import snappyjs and lz4-wasm by bare name (deno.json maps them); here they come
    // from npm/node_modules, pinned by package-lock.json.
    nodePaths: [join(here, "node_modules")],
    plugins: [wasmModules],
    logLevel: "warning",
  });
}

/** Rewrites the `.ts` specifiers tsc keeps in declarations to the `.js` a consumer resolves. */
function rewriteSpecifiers(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) rewriteSpecifiers(path);
    else if (name.endsWith(".d.ts")) {
      const text = readFileSync(path, "utf8");
      writeFileSync(path, text.replace(/(from\s+["']\.{1,2}\/[^"']*?)\.ts(["'])/g, "$1.js$2"));
    }
  }
}

rmSync(join(here, "dist"), { recursive: true, force: true });
rmSync(join(here, "build"), { recursive: true, force: true });
await bundle("npm/index.ts", "dist/index.js");
await bundle("tests/node/io_contract_node.ts", "build/io_contract.test.mjs");
await bundle("tests/node/conformance_driver.ts", "build/conformance_driver.mjs");
await bundle("bench/node/ts_client_side.ts", "build/ts_client_bench.mjs");
execFileSync(process.execPath, [join(here, "node_modules/typescript/bin/tsc"), "-p", here], {
  stdio: "inherit",
});
rewriteSpecifiers(join(here, "dist/types"));
// The package carries the repository's licence.
copyFileSync(join(repo, "LICENSE"), join(here, "LICENSE"));
