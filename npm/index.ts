/**
 * @module
 * GregorMQ's TypeScript client, built for Node 20+: publish with acknowledgements, subscribe with
 * credit-based flow control and acknowledgements, administer topics. The same client as the Deno
 * module; `connect()` finds itself on Node and uses node:net and node:tls.
 *
 * @example
 * ```ts
 * import { connect } from "gregormq";
 * const client = await connect(); // 127.0.0.1:7070
 * await client.publish("greetings", { value: "hello" });
 * await client.close();
 * ```
 */
export * from "../src/client/mod.ts";
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
} from "../src/io/types.ts";
export { nodeEnv } from "../src/io/node/mod.ts";
