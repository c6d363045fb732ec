// The broker's tunables with their defaults. Every queue and buffer the broker keeps has a named
// limit here; docs/operations.md lists them.

/** Broker options; all have defaults (`DEFAULT_BROKER_OPTIONS`). */
export interface BrokerOptions {
  /** This broker's name in handshakes. */
  brokerId: string;
  /** Create a topic on its first publish (or subscribe). */
  autoCreateTopics: boolean;
  /** Partitions of an auto-created topic. */
  defaultPartitions: number;
  /** Bytes a memory partition keeps before dropping its oldest batches. */
  retentionBytes: number;
  /** Largest frame payload accepted, in bytes (told to clients in the handshake). */
  payloadBytesMax: number;
  /** Largest record batch a producer may send, in bytes as sent (compressed). */
  batchBytesMax: number;
  /** Largest records section of a batch once decompressed, in bytes. */
  recordsBytesMax: number;
  /** Topics at most. */
  topicsMax: number;
  /** Partitions per topic at most. */
  partitionsMax: number;
  /** Partitions of all topics together at most; a create or grow past it gets LIMIT_EXCEEDED. */
  partitionsTotalMax: number;
  /**
   * Open file handles the broker's storage keeps at most (segments, and directories while synced);
   * idle segment files past it are closed and opened again when next used.
   */
  fileHandlesMax: number;
  /** Client connections at most; more are refused with LIMIT_EXCEEDED. */
  connectionsMax: number;
  /**
   * Connections that have not completed HELLO at most; past it the oldest of them is closed to
   * make room, so a flood of silent connections cannot lock real clients out.
   */
  handshakingConnectionsMax: number;
  /** Time from accepting a connection to its completed HELLO, ms; then it is closed. */
  handshakeTimeoutMs: number;
  /** Largest frame payload accepted before the handshake completes, in bytes. */
  handshakeBytesMax: number;
  /** Subscriptions per connection at most. */
  subscriptionsPerConnectionMax: number;
  /** Requests one connection may have in progress before the broker stops reading from it. */
  requestsInFlightMax: number;
  /** Bytes queued for one connection before the broker stops reading its requests. */
  outboundBytesMax: number;
  /** Largest DELIVER frame's records, in bytes (one bigger batch still goes alone). */
  deliverBytesMax: number;
  /** Credit a subscription may hold at most, in messages and bytes; grants above are clipped. */
  creditMessagesMax: number;
  creditBytesMax: number;
  /** Largest ack timeout a subscriber may ask for, ms. */
  ackTimeoutMsMax: number;
  /** How often unacknowledged deliveries are checked for redelivery, ms. */
  redeliveryTickMs: number;
  /** Credentials accepted in HELLO; empty: no authentication. */
  credentials: readonly string[];
  /** "scram": clients authenticate with SCRAM-SHA-256 after HELLO, and the ACLs apply. */
  auth: "none" | "scram";
  /** Users every ACL check lets through, who alone may manage users and ACLs. */
  superUsers: readonly string[];
  /** Where persistent topics and durable subscription offsets live. */
  dataDir: string;
  /** Persistence of topics created without a "persistence" config: "disk" or "memory". */
  defaultPersistence: "disk" | "memory";
  /** Fsync policy of disk topics without an "fsync" config: always, never or interval:<ms>. */
  defaultFsync: string;
  /** Segment size of disk topics without "segment.bytes". */
  segmentBytes: number;
  /** Segment age of disk topics without "segment.ms". */
  segmentMs: number;
  /** Bytes between offset index entries. */
  indexIntervalBytes: number;
  /** Retention by age of disk topics without "retention.ms" (ms; -1: keep forever). */
  retentionMs: number;
  /** Retention by size of disk topics without "retention.bytes" (-1: no limit). */
  diskRetentionBytes: number;
  /** How often retention is enforced, ms. */
  retentionCheckMs: number;
  /** How often changed durable subscription offsets are written, ms. */
  offsetsFlushMs: number;
  /** A connection silent this long is closed (clients ping every 5 s when the broker is quiet), ms. */
  idleTimeoutMs: number;
  /** How often consumer-group sessions are checked for expiry, ms. */
  groupsTickMs: number;
}

/** The defaults: a zero-config single node. */
export const DEFAULT_BROKER_OPTIONS: Readonly<BrokerOptions> = Object.freeze({
  brokerId: "gregormq-0",
  autoCreateTopics: true,
  defaultPartitions: 1,
  retentionBytes: 256 * 1024 * 1024,
  payloadBytesMax: 16 * 1024 * 1024,
  batchBytesMax: 8 * 1024 * 1024,
  recordsBytesMax: 32 * 1024 * 1024,
  topicsMax: 10_000,
  partitionsMax: 1024,
  partitionsTotalMax: 10_000,
  fileHandlesMax: 1024,
  connectionsMax: 10_000,
  handshakingConnectionsMax: 1_000,
  handshakeTimeoutMs: 10_000,
  handshakeBytesMax: 4 * 1024,
  subscriptionsPerConnectionMax: 1_000,
  requestsInFlightMax: 1_024,
  outboundBytesMax: 32 * 1024 * 1024,
  deliverBytesMax: 1024 * 1024,
  creditMessagesMax: 1_000_000,
  creditBytesMax: 64 * 1024 * 1024,
  ackTimeoutMsMax: 60 * 60 * 1000,
  redeliveryTickMs: 100,
  credentials: [],
  auth: "none",
  superUsers: [],
  dataDir: "./data",
  defaultPersistence: "disk",
  defaultFsync: "always",
  segmentBytes: 64 * 1024 * 1024,
  segmentMs: 7 * 24 * 60 * 60 * 1000,
  indexIntervalBytes: 4096,
  retentionMs: 7 * 24 * 60 * 60 * 1000,
  diskRetentionBytes: -1,
  retentionCheckMs: 30_000,
  offsetsFlushMs: 200,
  idleTimeoutMs: 30_000,
  groupsTickMs: 250,
});
