// Connections to the other nodes of a cluster, opened when a partition's leader lives there: the
// client's first connection bootstraps, and requests that must reach a leader go to the leader's
// own node instead of being forwarded by the first one.

import { ClientConnection } from "./connection.ts";

/** How long a pooled connection tries to reach its node, ms. */
export const POOL_CONNECT_TIMEOUT_MS = 2_000;
/** Other nodes a client keeps connections to, at most. */
export const POOL_CONNECTIONS_MAX = 64;

/** A node's client address, as METADATA names it. */
export interface NodeAddr {
  host: string;
  clientPort: number;
}

/** Connections by node address, sharing the bootstrap connection's options. */
export class ConnectionPool {
  readonly main: ClientConnection;
  readonly #others = new Map<string, ClientConnection>();

  constructor(main: ClientConnection) {
    this.main = main;
  }

  /**
   * The connection to `addr`: the bootstrap one if it is that node (or `addr` is unknown), else a
   * pooled one, opened on first use (it connects when its first request is sent).
   */
  to(addr: NodeAddr | null): ClientConnection {
    if (addr === null || addr.host === "" || addr.clientPort === 0) return this.main;
    const o = this.main.opts;
    if (addr.host === o.host && addr.clientPort === o.port) return this.main;
    const key = `${addr.host}:${addr.clientPort}`;
    let c = this.#others.get(key);
    if (c !== undefined && !c.closed) return c;
    if (this.#others.size >= POOL_CONNECTIONS_MAX) {
      const [oldest, conn] = this.#others.entries().next().value as [string, ClientConnection];
      conn.close();
      this.#others.delete(oldest);
    }
    // A leader's node that is gone must fail fast: the retry then goes through the bootstrap node.
    c = new ClientConnection({
      ...o,
      host: addr.host,
      port: addr.clientPort,
      servers: [], // this one node, not the bootstrap list
      connectTimeoutMs: Math.min(o.connectTimeoutMs, POOL_CONNECT_TIMEOUT_MS),
      refusalEndsDial: true,
      // The application hears about its bootstrap connection, not each leader's.
      onStateChange: () => {},
    });
    this.#others.set(key, c);
    return c;
  }

  /** Closes every pooled connection (not the bootstrap one). */
  close(): void {
    for (const c of this.#others.values()) c.close();
    this.#others.clear();
  }
}
