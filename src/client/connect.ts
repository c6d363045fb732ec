// `connect()` with the real I/O environment: the entry point applications use. Kept apart from
// client.ts so the simulator can build clients without pulling in Deno's I/O.

import { denoEnv } from "../io/deno/mod.ts";
import { type Client, connectWith } from "./client.ts";
import type { ConnectOptions } from "./connection.ts";

/**
 * Connects to a GregorMQ broker over TCP and completes the handshake.
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
export function connect(opts: ConnectOptions = {}): Promise<Client> {
  return connectWith(denoEnv(), opts);
}
