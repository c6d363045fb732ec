// Seed addresses and the choice of whom to gossip with each round. Pure: randomness comes from
// the Random it is given.

import type { Addr, Random } from "../../io/types.ts";
import { isHost, isPort } from "./limits.ts";

/** Each round, with this probability a seed is called too (always, when no peer is alive). */
export const SEED_PROBABILITY = 0.1;
/** Seeds given at most, and addresses one seed name may resolve to at most. */
export const SEEDS_MAX = 64;

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** "host:port" of an address: the key by which addresses are compared. */
export function addrKey(a: Addr): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Parses a seed: "host:port", or "[v6]:port" for an IPv6 literal. Throws RangeError naming the
 * seed and what is wrong with it.
 */
export function parseSeed(seed: string): Addr {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(seed);
  const plain = /^([^:\[\]]+):(\d+)$/.exec(seed);
  const m = bracketed ?? plain;
  if (m === null) {
    throw new RangeError(`Seed ${JSON.stringify(seed)} is not "host:port" (or "[v6]:port")`);
  }
  const host = m[1] as string;
  const port = Number(m[2]);
  if (!isHost(host)) throw new RangeError(`Seed ${JSON.stringify(seed)} has a bad host`);
  if (!isPort(port)) throw new RangeError(`Seed ${JSON.stringify(seed)} has port out of 1..65535`);
  return { host, port };
}

/** True for an IPv4 or IPv6 literal, which needs no resolving. */
export function isIpLiteral(host: string): boolean {
  if (host.includes(":")) return true;
  const m = IPV4_RE.exec(host);
  return m !== null && m.slice(1).every((x) => Number(x) <= 255);
}

/** Whom a round may call. */
export interface PeerCandidates {
  alive: readonly Addr[];
  /** Suspect and dead members. */
  unreachable: readonly Addr[];
  seeds: readonly Addr[];
  /** This node's own addresses: never called. */
  self: readonly Addr[];
}

/**
 * Picks a round's peers: one random alive member; a seed with probability SEED_PROBABILITY, or
 * always if none is alive (that is how a node joins, and how a cluster split from its seeds finds
 * them again); and an unreachable member with probability unreachable / (alive + 1), so a member
 * that comes back, or the other side of a healed partition, is heard from. No address twice.
 */
export function choosePeers(random: Random, c: PeerCandidates): Addr[] {
  const taken = new Set(c.self.map(addrKey));
  const out: Addr[] = [];
  const take = (from: readonly Addr[]): void => {
    const free = from.filter((a) => !taken.has(addrKey(a)));
    if (free.length === 0) return;
    const a = free[random.int(0, free.length)] as Addr;
    taken.add(addrKey(a));
    out.push(a);
  };
  take(c.alive);
  if (c.alive.length === 0 || random.float() < SEED_PROBABILITY) take(c.seeds);
  const u = c.unreachable.length;
  if (u > 0 && random.float() < u / (c.alive.length + 1)) take(c.unreachable);
  return out;
}

/** Up to `n` distinct addresses drawn at random from `from`. */
export function sample(random: Random, from: readonly Addr[], n: number): Addr[] {
  const pool = [...from];
  const out: Addr[] = [];
  while (out.length < n && pool.length > 0) {
    const i = random.int(0, pool.length);
    out.push(pool[i] as Addr);
    pool[i] = pool[pool.length - 1] as Addr;
    pool.pop();
  }
  return out;
}
