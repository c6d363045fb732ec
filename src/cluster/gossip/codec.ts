// Gossip payloads on the wire: encoders, and strict decoders that validate every field from a peer
// (ids, ranges, duplicates, reserved keys, counts) before anything reaches the state table, so a
// malformed message is rejected whole and never half-applied.

import { MalformedError } from "../../protocol/errors.ts";
import {
  decode,
  encode,
  type GossipAck2Request,
  type GossipDelta,
  type GossipDigestEntry,
  type GossipSynRequest,
  type GossipSynResponse,
  SCHEMAS,
} from "../../protocol/messages.ts";
import {
  ENTRIES_PER_NODE_MAX,
  entryProblem,
  INCARNATION_MAX,
  isNodeId,
  MEMBERS_MAX,
  VERSION_MAX,
} from "./limits.ts";

/** Nodes one digest or delta list may name: every member plus the sender itself. */
export const NODES_PER_MESSAGE_MAX = MEMBERS_MAX + 1;

/** Encodes a GOSSIP_SYN request payload. */
export function encodeSyn(m: GossipSynRequest): Uint8Array {
  return encode(SCHEMAS.GOSSIP_SYN.request, m);
}

/** Encodes the payload of the answer to GOSSIP_SYN. */
export function encodeSynResponse(m: GossipSynResponse): Uint8Array {
  return encode(SCHEMAS.GOSSIP_SYN.response, m);
}

/** Encodes a GOSSIP_ACK2 payload. */
export function encodeAck2(m: GossipAck2Request): Uint8Array {
  return encode(SCHEMAS.GOSSIP_ACK2.request, m);
}

/** Decodes and validates a GOSSIP_SYN request; throws MalformedError. */
export function decodeSyn(payload: Uint8Array): GossipSynRequest {
  const m = decode<GossipSynRequest>(SCHEMAS.GOSSIP_SYN.request, payload, "GOSSIP_SYN");
  checkId(m.fromId, "GOSSIP_SYN.fromId");
  checkDigest(m.digest, "GOSSIP_SYN.digest");
  return m;
}

/** Decodes and validates the answer to GOSSIP_SYN; throws MalformedError. */
export function decodeSynResponse(payload: Uint8Array): GossipSynResponse {
  const what = "GOSSIP_SYN response";
  const m = decode<GossipSynResponse>(SCHEMAS.GOSSIP_SYN.response, payload, what);
  checkDigest(m.digest, `${what}.digest`);
  checkDeltas(m.deltas, `${what}.deltas`);
  return m;
}

/** Decodes and validates a GOSSIP_ACK2; throws MalformedError. */
export function decodeAck2(payload: Uint8Array): GossipAck2Request {
  const m = decode<GossipAck2Request>(SCHEMAS.GOSSIP_ACK2.request, payload, "GOSSIP_ACK2");
  checkId(m.fromId, "GOSSIP_ACK2.fromId");
  checkDeltas(m.deltas, "GOSSIP_ACK2.deltas");
  return m;
}

function checkId(id: string, what: string): void {
  if (!isNodeId(id)) {
    throw new MalformedError(`${what} ${JSON.stringify(id)} is not 1 to 64 of [A-Za-z0-9_-]`);
  }
}

function checkRange(n: number, lo: number, hi: number, what: string): void {
  if (n < lo || n > hi) throw new MalformedError(`${what} ${n} is not in ${lo}..${hi}`);
}

function checkDigest(digest: readonly GossipDigestEntry[], what: string): void {
  if (digest.length > NODES_PER_MESSAGE_MAX) {
    throw new MalformedError(`${what} names ${digest.length} nodes, over ${NODES_PER_MESSAGE_MAX}`);
  }
  const seen = new Set<string>();
  for (const [i, d] of digest.entries()) {
    checkId(d.id, `${what}[${i}].id`);
    if (seen.has(d.id)) throw new MalformedError(`${what} names node ${d.id} twice`);
    seen.add(d.id);
    checkRange(d.incarnation, 0, INCARNATION_MAX, `${what}[${i}].incarnation`);
    checkRange(d.maxVersion, 0, VERSION_MAX, `${what}[${i}].maxVersion`);
  }
}

function checkDeltas(deltas: readonly GossipDelta[], what: string): void {
  if (deltas.length > NODES_PER_MESSAGE_MAX) {
    throw new MalformedError(`${what} names ${deltas.length} nodes, over ${NODES_PER_MESSAGE_MAX}`);
  }
  const seen = new Set<string>();
  for (const [i, d] of deltas.entries()) {
    const at = `${what}[${i}]`;
    checkId(d.id, `${at}.id`);
    if (seen.has(d.id)) throw new MalformedError(`${what} names node ${d.id} twice`);
    seen.add(d.id);
    checkRange(d.incarnation, 0, INCARNATION_MAX, `${at}.incarnation`);
    checkRange(d.entries.length, 1, ENTRIES_PER_NODE_MAX, `${at} entry count`);
    const keys = new Set<string>();
    for (const [j, e] of d.entries.entries()) {
      if (keys.has(e.key)) throw new MalformedError(`${at} repeats key ${e.key}`);
      keys.add(e.key);
      checkRange(e.version, 1, VERSION_MAX, `${at}.entries[${j}].version`);
      const problem = entryProblem(e.key, e.value);
      if (problem !== null) throw new MalformedError(`${at}.entries[${j}]: ${problem}`);
    }
  }
}
