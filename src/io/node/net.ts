// The client side of the seam on Node: TCP on node:net, TLS on node:tls. Connections reuse the
// node:tls adapter of src/io/deno/tls.ts, which speaks only Node's socket API, so a socket behaves
// the same on Node, under TLS or not, and in the broker's TLS listener on Deno.

import * as net from "node:net";
import { ConnectionRefused, TimedOut } from "../errors.ts";
import type { Addr, Conn, ConnectOptions, Listener, ListenOptions, Network } from "../types.ts";
import { AcceptQueue, connectTls, listenTls, mapNodeError, NodeSocketConn } from "../deno/tls.ts";

/** How long `connect` waits for an answer when `timeoutMs` is not given (as on Deno). */
export const CONNECT_TIMEOUT_MS_DEFAULT = 5000;

/** Accepted connections waiting for `accept`; more are dropped (nobody is accepting). */
const ACCEPT_BACKLOG_MAX = 128;

/** A `Network` on Node's TCP stack. */
export class NodeNetwork implements Network {
  listen(addr: Addr, opts: ListenOptions = {}): Promise<Listener> {
    if (opts.tls !== undefined) return listenTls(addr, opts.tls);
    const what = `Cannot listen on ${formatAddr(addr)}`;
    const server = net.createServer({ noDelay: true });
    return new Promise((resolve, reject) => {
      server.once("error", (err: Error) => reject(mapNodeError(err, what)));
      server.listen(addr.port, addr.host, () => resolve(new NodeListener(server)));
    });
  }

  connect(addr: Addr, opts: ConnectOptions = {}): Promise<Conn> {
    const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
    if (opts.tls !== undefined) return connectTls(addr, opts.tls, timeoutMs);
    const what = `Cannot connect to ${formatAddr(addr)}`;
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: addr.host, port: addr.port, noDelay: true });
      // Cleared on connect, so a late timer cannot cut a connection already handed out.
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new TimedOut(`${what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once("error", (err: Error) => {
        clearTimeout(timer);
        const code = (err as { code?: string }).code;
        reject(
          code === "ECONNREFUSED"
            ? new ConnectionRefused(`${what}: connection refused`, { cause: err })
            : mapNodeError(err, what),
        );
      });
      sock.once("connect", () => {
        clearTimeout(timer);
        sock.removeAllListeners("error");
        resolve(new NodeSocketConn(sock, addr));
      });
    });
  }
}

/** A bound TCP listener; connections wait in a bounded queue until `accept` takes them. */
class NodeListener implements Listener {
  readonly #server: net.Server;
  readonly #queue = new AcceptQueue(ACCEPT_BACKLOG_MAX);
  readonly addr: Addr;

  constructor(server: net.Server) {
    this.#server = server;
    const bound = server.address() as net.AddressInfo;
    this.addr = { host: bound.address, port: bound.port };
    server.on("connection", (sock: net.Socket) => {
      this.#queue.offer(new NodeSocketConn(sock, this.addr));
    });
    // A failed accept (EMFILE) must not crash the process; the listener keeps serving.
    server.on("error", () => {});
  }

  accept(): Promise<Conn | null> {
    return this.#queue.accept();
  }

  close(): void {
    if (this.#queue.close()) this.#server.close();
  }
}

function formatAddr(addr: Addr): string {
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
