/**
 * @module
 * GregorMQ's TypeScript client for Deno: publish with acknowledgements, subscribe with credit-based
 * flow control and acknowledgements, administer topics. The I/O seam's types are exported too, so
 * code can run the client inside GregorMQ's deterministic simulator.
 *
 * @example
 * ```ts
 * import { connect } from "@gregormq/gregormq";
 * const client = await connect(); // 127.0.0.1:7070
 * await client.publish("greetings", { value: "hello" });
 * await client.close();
 * ```
 */
export * from "./src/client/mod.ts";
export type {
  Addr,
  Clock,
  Conn,
  Disk,
  Env,
  File,
  Listener,
  Network,
  Random,
} from "./src/io/types.ts";
export { denoEnv } from "./src/io/deno/mod.ts";
