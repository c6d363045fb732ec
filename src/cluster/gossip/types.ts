// The public shapes of gossip membership: options, members, events and counters.

/** Options for `Gossip.start`. */
export interface GossipOptions {
  /** This node's stable id: 1 to 64 characters of [A-Za-z0-9_-] (see `loadOrCreateNodeId`). */
  nodeId: string;
  /** The address other nodes reach this node at (advertised in its state, key "host"). */
  host: string;
  /** The address to listen on. Default: `host`. */
  bindHost?: string;
  /** The gossip listener's port; 0 picks a free one, and the real one is advertised. */
  clusterPort: number;
  /** The client port, advertised in this node's state (key "clientPort"). 1..65535. */
  clientPort: number;
  /**
   * Seeds as "host:port" ("[v6]:port" for IPv6). A host that is not an IP literal is resolved
   * through `env.net.resolve` (e.g. a Kubernetes headless service), again every
   * `resolveSeedsEveryMs`.
   */
  seeds: string[];
  /** Gossip round period, ms. Default 200. */
  intervalMs?: number;
  /** Phi at which an alive member becomes suspect. Default 8. */
  phiSuspect?: number;
  /** Phi at which a member becomes dead; must be above `phiSuspect`. Default 12. */
  phiDead?: number;
  /** Dead and left members are forgotten this long after they became so, ms. Default 60 000. */
  deadForgetMs?: number;
  /** Largest delta bytes sent in one message; the rest goes next round. Default 64 KiB. */
  messageBytesMax?: number;
  /** Seeds given by name are resolved again this often, ms. Default 30 000. */
  resolveSeedsEveryMs?: number;
  /**
   * Hears what an operator should know and gossip cannot fix itself: a seed name that does not
   * resolve (a warning, once, and again only when the failure changes) and that it resolves again;
   * a peer that refuses this node for want of the cluster secret (an error, once per peer until an
   * exchange with it succeeds). Default: nothing.
   */
  onLog?: (level: "info" | "warn" | "error", message: string) => void;
  /** One exchange (connect, SYN, answer, ACK2) gives up after this long, ms. Default 1000. */
  exchangeTimeoutMs?: number;
  /**
   * This start's incarnation; it must exceed every earlier start of the node (use
   * `nextIncarnation`, which persists it). Default: the wall clock in ms.
   */
  incarnation?: number;
  /**
   * The cluster this node belongs to (1 to 64 of [A-Za-z0-9_-]; by convention its founder's
   * node id), as `onClusterId` last reported it. Omitted or "": the node joins the cluster of its
   * seeds, and reports it. Gossip about a node of another cluster is dropped, so two clusters never
   * merge, even when an address of one comes to serve a node of the other.
   */
  clusterId?: string;
  /** Hears the cluster this node joined, once, to keep for the next start. Default: nothing. */
  onClusterId?: (clusterId: string) => void;
  /**
   * Hears, once, that another live process runs as this node (a copy of its data directory) and
   * started before this one: this process must stop, or two processes act as one node (in Raft,
   * one voter voting twice). The message says where the other runs. Default: nothing (the error
   * is logged through `onLog` in any case).
   */
  onDuplicate?: (message: string) => void;
}

/**
 * How this node sees a member: "alive" while its heartbeat advances, "suspect" then "dead" as the
 * phi-accrual detector loses confidence, "left" once the member announced a graceful leave.
 */
export type MemberState = "alive" | "suspect" | "dead" | "left";

/** A snapshot of one member, as this node sees it. */
export interface Member {
  id: string;
  host: string;
  clusterPort: number;
  clientPort: number;
  state: MemberState;
  /** Grows when the node restarts (or refutes an impostor); a new one replaces the old entry. */
  incarnation: number;
  /** The member's heartbeat counter, bumped once per its gossip round. */
  heartbeat: number;
  /** The member's versioned state, including "host", "clusterPort" and "clientPort". */
  kv: Record<string, string>;
  /** True for this node itself. */
  self: boolean;
}

/**
 * A change in membership. "join": a member appeared in `members()` (`previous` null). "leave": it
 * was forgotten and disappeared from `members()` (`previous` is its last state). "state": its
 * state, incarnation or kv changed (`previous` is the state before; equal to `member.state` when
 * only the incarnation or kv changed). No events are emitted about this node itself.
 */
export interface MembershipEvent {
  kind: "join" | "leave" | "state";
  member: Member;
  previous: MemberState | null;
}

/** Counters of one gossip instance. */
export interface GossipStats {
  /** Gossip rounds run. */
  rounds: number;
  /** Exchanges this node started that completed. */
  exchanges: number;
  /** Exchanges this node started that failed (refused, timed out, bad answer). */
  failedExchanges: number;
  /** Bytes written and read on gossip connections, both directions and roles. */
  bytesSent: number;
  bytesReceived: number;
  /** Frames from peers that did not parse or validate; each closed its connection. */
  malformed: number;
  /** Times this node raised its incarnation because another claimed its id with a newer one. */
  refutations: number;
  /** Deltas dropped because their node belongs to another cluster. */
  foreign: number;
}
