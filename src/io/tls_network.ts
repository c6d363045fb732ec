// A Network that speaks TLS by default: what the node hands to the parts that listen and dial
// (gossip, the Raft transport, the metrics endpoint) so they need not know about certificates.

import type {
  Addr,
  Conn,
  ConnectOptions,
  Listener,
  ListenOptions,
  Network,
  TlsClientOptions,
  TlsServerOptions,
} from "./types.ts";

/** The certificates a `TlsNetwork` serves with and dials with. */
export interface TlsNetworkOptions {
  /** For listeners; omitted: they stay plaintext. */
  server?: TlsServerOptions;
  /** For connections; omitted: they stay plaintext. */
  client?: TlsClientOptions;
}

/** Wraps a Network so its listeners and connections use TLS unless a caller says otherwise. */
export class TlsNetwork implements Network {
  readonly #inner: Network;
  #tls: TlsNetworkOptions;
  readonly #listeners = new Set<Listener>();
  readonly resolve?: (name: string) => Promise<string[]>;

  constructor(inner: Network, tls: TlsNetworkOptions) {
    this.#inner = inner;
    this.#tls = tls;
    if (inner.resolve !== undefined) this.resolve = (name) => inner.resolve!(name);
  }

  async listen(addr: Addr, opts: ListenOptions = {}): Promise<Listener> {
    const tls = opts.tls ?? this.#tls.server;
    const l = await this.#inner.listen(addr, tls === undefined ? opts : { ...opts, tls });
    if (tls === undefined) return l;
    this.#listeners.add(l);
    const close = l.close.bind(l);
    l.close = () => {
      this.#listeners.delete(l);
      close();
    };
    return l;
  }

  connect(addr: Addr, opts: ConnectOptions = {}): Promise<Conn> {
    const tls = opts.tls ?? this.#tls.client;
    return this.#inner.connect(addr, tls === undefined ? opts : { ...opts, tls });
  }

  /**
   * Uses new certificates from now on: for connections dialed later, and on every open TLS
   * listener for connections accepted later. Rejects (keeping the old ones on the listeners
   * not yet switched) if a listener refuses them.
   */
  async reload(tls: TlsNetworkOptions): Promise<void> {
    for (const l of this.#listeners) {
      if (tls.server !== undefined) await l.reloadTls?.(tls.server);
    }
    this.#tls = tls;
  }
}
