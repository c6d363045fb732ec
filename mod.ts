// GregorMQ's public module. Until the client lands (issue [B]) it exports the I/O seam, the
// foundation every other part is built on: the interfaces, their errors and helpers, the seedable
// PRNG and the real (Deno) environment.

export * from "./src/io/mod.ts";
export { SeededRandom } from "./src/io/prng.ts";
export { denoEnv } from "./src/io/deno/mod.ts";
