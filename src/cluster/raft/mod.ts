// Raft consensus (DESIGN.md §7): a pure state machine per group, its in-memory storage twin and
// its message codec. The shell around it owns timers, disk and sockets.

export { RaftNode, type RaftNodeOptions } from "./node.ts";
export { MemoryStorage } from "./memory_storage.ts";
export { decodeConfig, decodeMessage, encodeConfig, encodeMessage } from "./codec.ts";
export { LEARNERS_MAX, RAFT_DEFAULTS, VOTERS_MAX } from "./limits.ts";
export type * from "./types.ts";
