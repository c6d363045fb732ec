// `connect()` with the real I/O environment (Deno's or Node's, whichever runs it): the entry point
// applications use. Kept apart from client.ts so the simulator can build clients without pulling
// in real I/O.

import { hostEnv } from "../io/node/host.ts";
import { type Client, connectWith } from "./client.ts";
import type { ConnectOptions } from "./connection.ts";

/**
 * Connects to a GregorMQ broker over TCP and completes the handshake. Runs on Deno and on Node 20+.
 *
 * @param opts Where and how to connect; everything has a default (127.0.0.1:7070).
 * @returns A connected client.
 * @throws {ConnectionError} if no broker answers within `connectTimeoutMs`.
 * @throws {GregorError} if the broker refuses the handshake (UNSUPPORTED_VERSION,
 *   AUTHENTICATION_FAILED).
 *
 * @example Publish and subscribe
 * ```ts
 * import { connect } from "@gregormq/gregormq";
 *
 * const client = await connect({ port: 7070 });
 * const orders = await client.subscribe("orders", { from: "earliest" });
 * const offset = await client.publish("orders", { key: "o-1", value: "one pizza" });
 * for await (const msg of orders) {
 *   console.log(msg.offset, msg.text());
 *   msg.ack();
 *   if (msg.offset === offset) break;
 * }
 * await client.close();
 * ```
 */
export async function connect(opts: ConnectOptions = {}): Promise<Client> {
  return connectWith(await hostEnv(), opts);
}
