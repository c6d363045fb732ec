// Partition assignment strategies for consumer groups: pure functions from the members (with what
// they subscribe to), the partition counts and the current assignment, to the target assignment.
// The coordinator moves a group towards the target cooperatively (coordinator.ts), so a strategy
// only decides where partitions should be, never when they move.

/** One member as an assignor sees it. */
export interface AssignorMember {
  id: string;
  /** Topic names the member subscribes to. */
  topics: readonly string[];
}

/** Partitions per member: "topic\0partition" keys. */
export type Assignment = Map<string, Set<string>>;

/** An assignment strategy. */
export type Assignor = (
  members: readonly AssignorMember[],
  partitionsOf: (topic: string) => number,
  current: Assignment,
) => Assignment;

/** The key of one partition in assignments and in the coordinator's maps. */
export function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** The topic and partition of a key made by `tpKey`. */
export function parseTpKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf("\u0000");
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

function byId(a: AssignorMember, b: AssignorMember): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function emptyAssignment(members: readonly AssignorMember[]): Assignment {
  return new Map(members.map((m) => [m.id, new Set<string>()]));
}

function subscribedTopics(members: readonly AssignorMember[]): string[] {
  return [...new Set(members.flatMap((m) => m.topics))].sort();
}

/**
 * Kafka's range strategy: per topic, the members subscribed to it (by id) each take a contiguous
 * run of partitions; the first `count % members` take one more.
 */
export const rangeAssignor: Assignor = (members, partitionsOf) => {
  const out = emptyAssignment(members);
  for (const topic of subscribedTopics(members)) {
    const subs = members.filter((m) => m.topics.includes(topic)).sort(byId);
    const n = partitionsOf(topic);
    const each = Math.floor(n / subs.length);
    const extra = n % subs.length;
    let p = 0;
    subs.forEach((m, i) => {
      const take = each + (i < extra ? 1 : 0);
      for (let k = 0; k < take; k++) out.get(m.id)!.add(tpKey(topic, p++));
    });
  }
  return out;
};

/**
 * Round-robin: every partition of every subscribed topic, in order, goes to the next member (by
 * id) that subscribes to its topic.
 */
export const roundRobinAssignor: Assignor = (members, partitionsOf) => {
  const out = emptyAssignment(members);
  const sorted = [...members].sort(byId);
  let next = 0;
  for (const topic of subscribedTopics(members)) {
    for (let p = 0; p < partitionsOf(topic); p++) {
      for (let tries = 0; tries < sorted.length; tries++) {
        const m = sorted[next++ % sorted.length]!;
        if (m.topics.includes(topic)) {
          out.get(m.id)!.add(tpKey(topic, p));
          break;
        }
      }
    }
  }
  return out;
};

/**
 * Sticky: as balanced as round-robin (loads differ by at most one among members that could take
 * the same partitions), moving as few partitions as possible from the current assignment.
 */
export const stickyAssignor: Assignor = (members, partitionsOf, current) => {
  const out = emptyAssignment(members);
  const subscribed = new Map(members.map((m) => [m.id, new Set(m.topics)]));
  const all: string[] = [];
  for (const topic of subscribedTopics(members)) {
    for (let p = 0; p < partitionsOf(topic); p++) all.push(tpKey(topic, p));
  }
  const eligible = (id: string, key: string) =>
    subscribed.get(id)?.has(parseTpKey(key).topic) ?? false;
  const unplaced: string[] = [];
  const placed = new Set<string>();
  // Keep what each member has if it still subscribes and the partition exists; `rebalance` then
  // takes only the excess away. (A cap at an even share of all partitions would, with non-uniform
  // subscriptions, shuffle partitions between members on every call even when nothing changed.)
  const valid = new Set(all);
  const sorted = [...members].sort(byId);
  for (const m of sorted) {
    for (const key of [...(current.get(m.id) ?? [])].sort()) {
      if (valid.has(key) && !placed.has(key) && eligible(m.id, key)) {
        out.get(m.id)!.add(key);
        placed.add(key);
      }
    }
  }
  for (const key of all) if (!placed.has(key)) unplaced.push(key);
  for (const key of unplaced) {
    const topic = parseTpKey(key).topic;
    const target = leastLoaded(sorted, out, (id) => subscribed.get(id)!.has(topic));
    if (target !== null) out.get(target)!.add(key);
  }
  rebalance(members, out, eligible);
  return out;
};

/** The member (of `sorted`, ordered by id) with the fewest partitions that `ok` accepts. */
function leastLoaded(
  sorted: readonly AssignorMember[],
  out: Assignment,
  ok: (id: string) => boolean,
): string | null {
  let best: string | null = null;
  let bestLoad = Infinity;
  for (const m of sorted) {
    const load = out.get(m.id)!.size;
    if (ok(m.id) && load < bestLoad) {
      best = m.id;
      bestLoad = load;
    }
  }
  return best;
}

/** Moves single partitions from the most to the least loaded eligible member until balanced. */
function rebalance(
  members: readonly AssignorMember[],
  out: Assignment,
  eligible: (id: string, key: string) => boolean,
): void {
  const sorted = [...members].sort(byId);
  // Each move lowers the sum of squared loads, so this ends; the cap is a guard.
  for (let moves = 0; moves < 100_000; moves++) {
    let moved = false;
    const byLoad = [...sorted].sort((a, b) => out.get(b.id)!.size - out.get(a.id)!.size);
    outer: for (const heavy of byLoad) {
      for (const light of [...byLoad].reverse()) {
        if (out.get(heavy.id)!.size - out.get(light.id)!.size <= 1) continue;
        for (const key of [...out.get(heavy.id)!].sort().reverse()) {
          if (eligible(light.id, key)) {
            out.get(heavy.id)!.delete(key);
            out.get(light.id)!.add(key);
            moved = true;
            break outer;
          }
        }
      }
    }
    if (!moved) return;
  }
}

/** The strategies by the name a member asks for. */
export const ASSIGNORS: Readonly<Record<string, Assignor>> = {
  range: rangeAssignor,
  roundrobin: roundRobinAssignor,
  sticky: stickyAssignor,
};

/** The strategy used when a member names none. */
export const DEFAULT_ASSIGNOR = "sticky";
