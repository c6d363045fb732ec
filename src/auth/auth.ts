// What the broker asks about security: is authentication on, what does a SCRAM exchange answer for
// a user (a decoy for an unknown one), and may this principal do this operation on this resource.
// It counts failures and denials for the metrics; the broker logs them.

import type { Crypto, Random } from "../io/types.ts";
import { type Operation, permitted, type ResourceType } from "./acl.ts";
import {
  ITERATIONS_DEFAULT,
  NONCE_BYTES,
  nonceFrom,
  SALT_BYTES,
  type ScramCredential,
} from "./scram.ts";
import type { SecurityStore } from "./store.ts";

/** How clients authenticate: not at all, or with SCRAM-SHA-256 after HELLO. */
export const AUTH_MECHANISMS = ["none", "scram"] as const;
/** An authentication setting. */
export type AuthMechanism = typeof AUTH_MECHANISMS[number];

/** ACL decisions remembered at most before the cache starts over. */
const DECISIONS_MAX = 10_000;

/** The broker's security state: the store, the setting, super-users, and the tallies. */
export class Auth {
  readonly store: SecurityStore;
  readonly mechanism: AuthMechanism;
  readonly #superUsers: ReadonlySet<string>;
  readonly #random: Random;
  /** Per-broker secret from which decoy salts for unknown users are made. */
  readonly #secret: Uint8Array;
  readonly #crypto: Crypto;
  /** ACL decisions by principal, operation and resource, valid for one ACL generation. */
  readonly #decisions = new Map<string, boolean>();
  #decisionsGeneration = -1;
  /** Failed authentications since start. */
  failures = 0;
  /** Requests denied by the ACLs since start. */
  denials = 0;

  constructor(
    store: SecurityStore,
    opts: {
      mechanism: AuthMechanism;
      superUsers: readonly string[];
      random: Random;
      crypto: Crypto;
    },
  ) {
    this.store = store;
    this.#crypto = opts.crypto;
    this.mechanism = opts.mechanism;
    this.#superUsers = new Set(opts.superUsers);
    this.#random = opts.random.fork("auth");
    this.#secret = this.#random.secureBytes(32);
  }

  /** True when clients must authenticate (and the ACLs apply). */
  get enabled(): boolean {
    return this.mechanism !== "none";
  }

  /** A fresh server nonce. */
  nonce(): string {
    return nonceFrom(this.#random.secureBytes(NONCE_BYTES));
  }

  /**
   * The credential to run the exchange with for `user`: the stored one, or for an unknown user a
   * decoy whose salt is the same on every attempt (a changing salt would tell the user is unknown)
   * and whose keys no password matches.
   */
  async credentialFor(user: string): Promise<ScramCredential> {
    // The decoy is made for every user, known or not, so the time taken does not tell them apart.
    const mac = await this.#crypto.hmacSha256(this.#secret, new TextEncoder().encode(user));
    return this.store.credential(user) ?? {
      salt: mac.slice(0, SALT_BYTES),
      iterations: ITERATIONS_DEFAULT,
      storedKey: this.#random.secureBytes(32),
      serverKey: this.#random.secureBytes(32),
    };
  }

  /** True if `principal` is a super-user (every operation allowed, and the admin requests). */
  isSuperUser(principal: string): boolean {
    return this.#superUsers.has(principal);
  }

  /** True if `principal` may do `op` on the resource: always when authentication is off. */
  allowed(principal: string, op: Operation, type: ResourceType, name: string): boolean {
    if (!this.enabled || this.isSuperUser(principal)) return true;
    // Every produce asks, and the ACLs may hold thousands of entries: decisions are remembered
    // until the ACLs change (or too many are remembered).
    if (
      this.#decisionsGeneration !== this.store.aclGeneration ||
      this.#decisions.size >= DECISIONS_MAX
    ) {
      this.#decisions.clear();
      this.#decisionsGeneration = this.store.aclGeneration;
    }
    const key = `${principal}\u0000${op}\u0000${type}\u0000${name}`;
    let ok = this.#decisions.get(key);
    if (ok === undefined) {
      ok = permitted(this.store.acls, principal, op, type, name);
      this.#decisions.set(key, ok);
    }
    return ok;
  }
}
