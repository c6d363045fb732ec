// Gossip membership: who is in the cluster and how they are (DESIGN.md §7). Scuttlebutt
// anti-entropy on the cluster port, phi-accrual failure detection, and events the broker subscribes
// to. Gossip decides who exists, never who leads.

export { Gossip, GOSSIP_DEFAULTS } from "./service.ts";
export { loadClusterId, loadOrCreateNodeId, nextIncarnation, saveClusterId } from "./node_id.ts";
export { ENTRIES_PER_NODE_MAX, isNodeId, MEMBERS_MAX, VALUE_BYTES_MAX } from "./limits.ts";
export type { GossipOptions, GossipStats, Member, MembershipEvent, MemberState } from "./types.ts";
