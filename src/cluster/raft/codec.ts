// The binary encoding of Raft messages and of config entries' configurations, big-endian on the
// protocol's Writer/Reader. Decoders are strict: every id, count, range and ordering a correct peer
// would send is checked, and anything else throws MalformedError before it reaches a RaftNode.

import { isNodeId } from "../gossip/limits.ts";
import { MalformedError } from "../../protocol/errors.ts";
import { Reader, Writer } from "../../protocol/wire.ts";
import {
  APPEND_ENTRIES_MAX,
  ENTRY_DATA_BYTES_MAX,
  INDEX_MAX,
  LEARNERS_MAX,
  SNAPSHOT_DATA_BYTES_MAX,
  TERM_MAX,
  VOTERS_MAX,
} from "./limits.ts";
import type { Configuration, Entry, EntryKind, Message, MessageType, Snapshot } from "./types.ts";

/** Version byte in front of every encoded message. */
export const RAFT_CODEC_VERSION = 1;

const TYPE_CODES: Readonly<Record<MessageType, number>> = {
  PreVote: 1,
  PreVoteResp: 2,
  RequestVote: 3,
  RequestVoteResp: 4,
  AppendEntries: 5,
  AppendEntriesResp: 6,
  InstallSnapshot: 7,
  InstallSnapshotResp: 8,
  TimeoutNow: 9,
};
const TYPES_BY_CODE: ReadonlyMap<number, MessageType> = new Map(
  Object.entries(TYPE_CODES).map(([name, code]) => [code, name as MessageType]),
);
const KIND_CODES: Readonly<Record<EntryKind, number>> = { normal: 0, config: 1, noop: 2 };
const KINDS_BY_CODE: readonly EntryKind[] = ["normal", "config", "noop"];

/**
 * Encodes a configuration as a config entry's data: voter count u16, voters, learner count u16,
 * learners (each id u16 length + UTF-8). Throws RangeError on an invalid configuration.
 */
export function encodeConfig(config: Configuration): Uint8Array {
  const problem = configProblem(config);
  if (problem !== null) throw new RangeError(`Cannot encode config: ${problem}`);
  const w = new Writer(16 * (config.voters.length + config.learners.length) + 4);
  writeConfig(w, config);
  return w.finish();
}

/** Decodes a config entry's configuration, checked as `configProblem` does; throws MalformedError. */
export function decodeConfig(data: Uint8Array): Configuration {
  const r = new Reader(data);
  const config = readConfig(r, "config");
  r.end("config");
  return config;
}

/** Why `voters` is not a valid voter set (1..VOTERS_MAX distinct valid ids, sorted), or null. */
export function votersProblem(voters: readonly string[]): string | null {
  if (voters.length < 1 || voters.length > VOTERS_MAX) {
    return `${voters.length} voters is not in 1..${VOTERS_MAX}`;
  }
  return idsProblem(voters, "voter");
}

/**
 * Why `config` is not a valid configuration, or null: a valid voter set, and 0..LEARNERS_MAX
 * distinct valid learner ids, sorted, none of them a voter.
 */
export function configProblem(config: Configuration): string | null {
  const voters = votersProblem(config.voters);
  if (voters !== null) return voters;
  const { learners } = config;
  if (learners.length > LEARNERS_MAX) {
    return `${learners.length} learners is over ${LEARNERS_MAX}`;
  }
  const problem = idsProblem(learners, "learner");
  if (problem !== null) return problem;
  const voterSet = new Set(config.voters);
  const both = learners.find((id) => voterSet.has(id));
  return both === undefined ? null : `${both} is both a voter and a learner`;
}

function idsProblem(ids: readonly string[], what: string): string | null {
  for (const [i, id] of ids.entries()) {
    if (!isNodeId(id)) return `${what} ${JSON.stringify(id)} is not 1 to 64 of [A-Za-z0-9_-]`;
    const prev = ids[i - 1];
    if (prev !== undefined && prev >= id) return `${what}s are not sorted and distinct at ${id}`;
  }
  return null;
}

function writeConfig(w: Writer, config: Configuration): void {
  w.u16(config.voters.length);
  for (const id of config.voters) w.string(id);
  w.u16(config.learners.length);
  for (const id of config.learners) w.string(id);
}

function readConfig(r: Reader, what: string): Configuration {
  const nv = r.u16(`${what} voter count`);
  if (nv < 1 || nv > VOTERS_MAX) {
    throw new MalformedError(`${what}: ${nv} voters is not in 1..${VOTERS_MAX}`);
  }
  const voters: string[] = [];
  for (let i = 0; i < nv; i++) voters.push(r.string(`${what}.voters[${i}]`));
  const nl = r.u16(`${what} learner count`);
  if (nl > LEARNERS_MAX) {
    throw new MalformedError(`${what}: ${nl} learners is over ${LEARNERS_MAX}`);
  }
  const learners: string[] = [];
  for (let i = 0; i < nl; i++) learners.push(r.string(`${what}.learners[${i}]`));
  const config = { voters, learners };
  const problem = configProblem(config);
  if (problem !== null) throw new MalformedError(`${what}: ${problem}`);
  return config;
}

/** Encodes a message; throws RangeError if a field cannot be represented. */
export function encodeMessage(m: Message): Uint8Array {
  const w = new Writer(64);
  w.u8(RAFT_CODEC_VERSION).u8(TYPE_CODES[m.type]).string(m.from).string(m.to).i64(m.term);
  switch (m.type) {
    case "PreVote":
      w.i64(m.lastIndex).i64(m.lastTerm);
      break;
    case "RequestVote":
      w.i64(m.lastIndex).i64(m.lastTerm).u8(m.transfer ? 1 : 0);
      break;
    case "PreVoteResp":
    case "RequestVoteResp":
      w.u8(m.granted ? 1 : 0);
      break;
    case "AppendEntries":
      w.i64(m.prevIndex).i64(m.prevTerm).i64(m.commit).u32(m.entries.length);
      for (const e of m.entries) writeEntry(w, e);
      break;
    case "AppendEntriesResp":
      w.u8(m.success ? 1 : 0).i64(m.index).i64(m.hintTerm).i64(m.hintIndex);
      break;
    case "InstallSnapshot":
      writeSnapshot(w, m.snapshot);
      break;
    case "InstallSnapshotResp":
      w.i64(m.index);
      break;
    case "TimeoutNow":
      break;
  }
  return w.finish();
}

/** Decodes and validates one message that fills `bytes` exactly; throws MalformedError. */
export function decodeMessage(bytes: Uint8Array): Message {
  const r = new Reader(bytes);
  const version = r.u8("raft message version");
  if (version !== RAFT_CODEC_VERSION) {
    throw new MalformedError(`Raft message version ${version} is not ${RAFT_CODEC_VERSION}`);
  }
  const code = r.u8("raft message type");
  const type = TYPES_BY_CODE.get(code);
  if (type === undefined) throw new MalformedError(`Raft message type ${code} is unknown`);
  const from = readId(r, `${type}.from`);
  const to = readId(r, `${type}.to`);
  const term = readCount(r, TERM_MAX, `${type}.term`);
  const m = readBody(r, { type, from, to, term });
  r.end(type);
  return m;
}

interface Head {
  readonly type: MessageType;
  readonly from: string;
  readonly to: string;
  readonly term: number;
}

function readBody(r: Reader, h: Head): Message {
  const { from, to, term } = h;
  switch (h.type) {
    case "PreVote": {
      const [lastIndex, lastTerm] = readLogPosition(r, term, h.type);
      return { type: h.type, from, to, term, lastIndex, lastTerm };
    }
    case "RequestVote": {
      const [lastIndex, lastTerm] = readLogPosition(r, term, h.type);
      const transfer = readBool(r, "RequestVote.transfer");
      return { type: h.type, from, to, term, lastIndex, lastTerm, transfer };
    }
    case "PreVoteResp":
    case "RequestVoteResp":
      return { type: h.type, from, to, term, granted: readBool(r, `${h.type}.granted`) };
    case "AppendEntries":
      return readAppendEntries(r, h);
    case "AppendEntriesResp": {
      const success = readBool(r, "AppendEntriesResp.success");
      const index = readCount(r, INDEX_MAX, "AppendEntriesResp.index");
      const hintTerm = readCount(r, TERM_MAX, "AppendEntriesResp.hintTerm");
      const hintIndex = readCount(r, INDEX_MAX, "AppendEntriesResp.hintIndex");
      return { type: h.type, from, to, term, success, index, hintTerm, hintIndex };
    }
    case "InstallSnapshot": {
      const snapshot = readSnapshot(r);
      if (snapshot.term > term) {
        throw new MalformedError(`InstallSnapshot snapshot term ${snapshot.term} is over ${term}`);
      }
      return { type: h.type, from, to, term, snapshot };
    }
    case "InstallSnapshotResp":
      return { type: h.type, from, to, term, index: readCount(r, INDEX_MAX, `${h.type}.index`) };
    case "TimeoutNow":
      return { type: h.type, from, to, term };
  }
}

function readAppendEntries(r: Reader, h: Head): Message {
  const [prevIndex, prevTerm] = readLogPosition(r, h.term, "AppendEntries.prev");
  const commit = readCount(r, INDEX_MAX, "AppendEntries.commit");
  const count = r.u32("AppendEntries entry count");
  if (count > APPEND_ENTRIES_MAX) {
    throw new MalformedError(`AppendEntries carries ${count} entries, over ${APPEND_ENTRIES_MAX}`);
  }
  const entries: Entry[] = [];
  let lastTerm = prevTerm;
  for (let i = 0; i < count; i++) {
    const e = readEntry(r, `AppendEntries.entries[${i}]`);
    if (e.index !== prevIndex + 1 + i) {
      throw new MalformedError(
        `AppendEntries entry ${i} has index ${e.index}, not ${prevIndex + 1 + i}`,
      );
    }
    if (e.term < lastTerm || e.term > h.term) {
      throw new MalformedError(`AppendEntries entry ${e.index} has term ${e.term} out of order`);
    }
    lastTerm = e.term;
    entries.push(e);
  }
  return {
    type: "AppendEntries",
    from: h.from,
    to: h.to,
    term: h.term,
    prevIndex,
    prevTerm,
    commit,
    entries,
  };
}

function writeEntry(w: Writer, e: Entry): void {
  w.i64(e.index).i64(e.term).u8(KIND_CODES[e.kind]).bytes(e.data);
}

function readEntry(r: Reader, what: string): Entry {
  const index = readCount(r, INDEX_MAX, `${what}.index`);
  const term = readCount(r, TERM_MAX, `${what}.term`);
  if (index < 1 || term < 1) throw new MalformedError(`${what} has index ${index}, term ${term}`);
  const code = r.u8(`${what}.kind`);
  const kind = KINDS_BY_CODE[code];
  if (kind === undefined) throw new MalformedError(`${what}.kind ${code} is unknown`);
  const data = readData(r, ENTRY_DATA_BYTES_MAX, `${what}.data`);
  if (kind === "config") decodeConfig(data);
  if (kind === "noop" && data.length !== 0) {
    throw new MalformedError(`${what} is a no-op with data`);
  }
  return { index, term, kind, data };
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.i64(s.index).i64(s.term);
  writeConfig(w, s);
  w.bytes(s.data);
}

function readSnapshot(r: Reader): Snapshot {
  const index = readCount(r, INDEX_MAX, "snapshot.index");
  const term = readCount(r, TERM_MAX, "snapshot.term");
  if ((index === 0) !== (term === 0)) {
    throw new MalformedError(`snapshot at index ${index} has term ${term}`);
  }
  const { voters, learners } = readConfig(r, "snapshot");
  const data = readData(r, SNAPSHOT_DATA_BYTES_MAX, "snapshot.data");
  return { index, term, voters, learners, data };
}

function readLogPosition(r: Reader, term: number, what: string): [number, number] {
  const index = readCount(r, INDEX_MAX, `${what}Index`);
  const logTerm = readCount(r, TERM_MAX, `${what}Term`);
  if (logTerm > term) throw new MalformedError(`${what}Term ${logTerm} is over the term ${term}`);
  if ((index === 0) !== (logTerm === 0)) {
    throw new MalformedError(`${what} at index ${index} has term ${logTerm}`);
  }
  return [index, logTerm];
}

function readId(r: Reader, what: string): string {
  const id = r.string(what);
  if (!isNodeId(id)) {
    throw new MalformedError(`${what} ${JSON.stringify(id)} is not 1 to 64 of [A-Za-z0-9_-]`);
  }
  return id;
}

function readCount(r: Reader, max: number, what: string): number {
  const n = r.i64(what);
  if (n < 0 || n > max) throw new MalformedError(`${what} ${n} is not in 0..${max}`);
  return n;
}

function readBool(r: Reader, what: string): boolean {
  const b = r.u8(what);
  if (b > 1) throw new MalformedError(`${what} is ${b}, not 0 or 1`);
  return b === 1;
}

function readData(r: Reader, max: number, what: string): Uint8Array {
  const data = r.bytes(what);
  if (data === null) throw new MalformedError(`${what} is null`);
  if (data.length > max) throw new MalformedError(`${what} is ${data.length} bytes, over ${max}`);
  return data.slice();
}
