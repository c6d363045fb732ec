// Test helpers for Raft: a hand-driven group of RaftNodes over MemoryStorage, where a test decides
// which messages arrive, when time moves and which Readys get persisted.

import { decodeMessage, encodeMessage } from "./codec.ts";
import { MemoryStorage } from "./memory_storage.ts";
import { RaftNode, type RaftNodeOptions } from "./node.ts";
import type { Entry, Message } from "./types.ts";

/** Election timeout the hand-driven groups use, ms. */
export const ELECTION_MS = 100;
/** Heartbeat interval the hand-driven groups use, ms. */
export const HEARTBEAT_MS = 20;
/** Rounds `Group.settle` runs at most before it gives up. */
const SETTLE_ROUNDS_MAX = 10_000;

/** Who else is in a Group besides its bootstrap voters. */
export interface GroupMembers {
  /** Bootstrapped as learners: every node's initial config lists them. */
  learners?: readonly string[];
  /** Nodes that start knowing nothing (an empty config), to be added later. */
  joiners?: readonly string[];
}

/** Options a Group passes to every node it builds. */
export type GroupNodeOptions = Partial<Omit<RaftNodeOptions, "id" | "state" | "random" | "nowMs">>;

/** A group of nodes driven by hand; messages wait in `inbox` until a test delivers them. */
export class Group {
  readonly nodes = new Map<string, RaftNode>();
  readonly storage = new Map<string, MemoryStorage>();
  /** Entries each node applied, in order. */
  readonly applied = new Map<string, Entry[]>();
  /** Sent and not yet delivered. */
  inbox: Message[] = [];
  nowMs = 0;
  /** Links that drop everything: "a>b". */
  readonly cut = new Set<string>();
  /** Messages this returns true for are dropped when sent. */
  drop: (m: Message) => boolean = () => false;
  readonly #opts: GroupNodeOptions;
  /** Where in [T, 2T) each node's election timeouts fall: 0 is soonest. */
  readonly #timeoutBias = new Map<string, number>();

  /** A group bootstrapped with voters `ids` and `members.learners`, plus `members.joiners`. */
  constructor(ids: readonly string[], opts: GroupNodeOptions = {}, members: GroupMembers = {}) {
    this.#opts = opts;
    const learners = members.learners ?? [];
    const joiners = members.joiners ?? [];
    for (const id of [...ids, ...learners]) this.storage.set(id, new MemoryStorage(ids, learners));
    for (const id of joiners) this.storage.set(id, new MemoryStorage([]));
    const all = [...ids, ...learners, ...joiners];
    // Staggered, so the first node's timer fires first until `elect` says otherwise.
    for (const [i, id] of all.entries()) this.#timeoutBias.set(id, i / 10);
    for (const id of all) this.restart(id);
  }

  /** The node `id`; throws if unknown. */
  node(id: string): RaftNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`No node ${id}`);
    return n;
  }

  /** Builds node `id` afresh from its storage (a crash loses anything not persisted). */
  restart(id: string): RaftNode {
    const storage = this.storage.get(id) as MemoryStorage;
    const node = new RaftNode({
      electionTimeoutMs: ELECTION_MS,
      heartbeatIntervalMs: HEARTBEAT_MS,
      ...this.#opts,
      id,
      state: storage.state(),
      random: { float: () => this.#timeoutBias.get(id) ?? 0.5 },
      nowMs: this.nowMs,
    });
    this.nodes.set(id, node);
    this.applied.set(id, []);
    this.inbox = this.inbox.filter((m) => m.to !== id);
    return node;
  }

  /** Loses node `id` and everything it had not persisted, until `restart(id)`. */
  crash(id: string): void {
    this.nodes.delete(id);
    this.inbox = this.inbox.filter((m) => m.to !== id);
  }

  /** Cuts every link to and from `id`. */
  isolate(id: string): void {
    for (const other of this.storage.keys()) {
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  /**
   * Makes `id` campaign at once, as a leadership transfer would (bypassing pre-vote and the
   * voters' leader stickiness), and settles.
   */
  campaign(id: string): RaftNode {
    const node = this.node(id);
    node.receive({ type: "TimeoutNow", from: "tester", to: id, term: node.term });
    this.settle();
    return node;
  }

  /** Persists every node's Ready and queues the messages it releases. */
  flush(): void {
    for (const [id, node] of this.nodes) {
      for (let r = node.ready(); r !== null; r = node.ready()) {
        const queue = (m: Message) => {
          if (!this.cut.has(`${m.from}>${m.to}`) && !this.drop(m)) this.inbox.push(roundTrip(m));
        };
        for (const m of r.sendNow ?? []) queue(m);
        (this.storage.get(id) as MemoryStorage).save(r);
        (this.applied.get(id) as Entry[]).push(...r.committedEntries);
        for (const m of node.advance(r)) queue(m);
      }
    }
  }

  /** Moves time forward by `ms` and ticks every node. */
  tick(ms: number): void {
    this.nowMs += ms;
    for (const node of this.nodes.values()) node.tick(this.nowMs);
    this.flush();
  }

  /** Takes the queued messages matching `pick` out of the inbox. */
  take(pick: (m: Message) => boolean = () => true): Message[] {
    const out = this.inbox.filter(pick);
    this.inbox = this.inbox.filter((m) => !pick(m));
    return out;
  }

  /** Delivers messages (default: all queued) and persists what they cause. */
  deliver(msgs: Message[] = this.take()): void {
    for (const m of msgs) this.nodes.get(m.to)?.receive(m);
    this.flush();
  }

  /** Delivers until nothing is in flight. */
  settle(): void {
    this.flush();
    for (let i = 0; this.inbox.length > 0; i++) {
      if (i === SETTLE_ROUNDS_MAX) throw new Error("Group.settle did not quiesce");
      this.deliver();
    }
  }

  /**
   * Lets time pass, delivering everything, until `id` wins an election: its election timeouts are
   * made the shortest and everyone else's the longest. Throws if it does not win in time.
   */
  elect(id: string): RaftNode {
    for (const other of this.storage.keys()) this.#timeoutBias.set(other, other === id ? 0 : 0.99);
    const node = this.node(id);
    for (let t = 0; node.role !== "leader"; t += HEARTBEAT_MS / 2) {
      if (t > 10 * ELECTION_MS) throw new Error(`${id} did not win an election`);
      this.tick(HEARTBEAT_MS / 2);
      this.settle();
    }
    return node;
  }

  /** Advances time in heartbeat steps for `ms`, delivering everything each step. */
  run(ms: number): void {
    for (let t = 0; t < ms; t += HEARTBEAT_MS / 2) {
      this.tick(HEARTBEAT_MS / 2);
      this.deliver();
    }
  }

  /** The data of the normal entries `id` applied, as strings. */
  appliedText(id: string): string[] {
    const entries = this.applied.get(id) ?? [];
    return entries.filter((e) => e.kind === "normal").map((e) => text(e.data));
  }
}

/** Passes a message through the codec, as the wire would. */
export function roundTrip(m: Message): Message {
  return decodeMessage(encodeMessage(m));
}

/** UTF-8 bytes of `s`. */
export function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** `b` decoded as UTF-8. */
export function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}
