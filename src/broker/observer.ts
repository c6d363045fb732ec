// What the broker tells whoever watches it (metrics): requests served, records in and out, fsyncs.
// The broker knows nothing of Prometheus; src/metrics/ implements this interface.

/** Events the broker reports as it works. Every method must be cheap and must not throw. */
export interface BrokerObserver {
  /** A request was answered: `op` its opcode name, `code` "OK" or the error code's name. */
  request(op: string, code: string): void;
  /** A produce was stored (and acknowledged as its topic's fsync policy says) after `seconds`. */
  produced(topic: string, records: number, bytes: number, seconds: number): void;
  /** Records were pushed to a subscriber. */
  delivered(topic: string, records: number, bytes: number): void;
  /** A partition's fsync took `seconds` and made `batches` batches durable. */
  synced(seconds: number, batches: number): void;
}

/** An observer that ignores everything: the default. */
export const NO_OBSERVER: BrokerObserver = Object.freeze({
  request: () => {},
  produced: () => {},
  delivered: () => {},
  synced: () => {},
});
