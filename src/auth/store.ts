// Users (salted SCRAM keys, never passwords) and ACLs in the data directory, each file replaced
// atomically and checksummed (src/storage/checked_file.ts). The broker edits them through admin
// requests; gregorctl may edit them offline, holding the data directory's lock, to bootstrap.

import { NotFound } from "../io/errors.ts";
import type { Disk } from "../io/types.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
import { aclsFile, usersFile } from "../storage/layout.ts";
import { type AclEntry, aclProblem, sameAcl } from "./acl.ts";
import {
  fromBase64,
  ITERATIONS_MAX,
  ITERATIONS_MIN,
  SCRAM_SHA_256,
  type ScramCredential,
  toBase64,
  USER_NAME_PATTERN,
} from "./scram.ts";

/** Users at most. */
export const USERS_MAX = 10_000;
/** ACL entries at most. */
export const ACLS_MAX = 10_000;
/** Bytes of a salt and of a stored or server key. */
const SALT_BYTES_MIN = 16;
const SALT_BYTES_MAX = 64;
const KEY_BYTES = 32;

/** A user as listed: no keys. */
export interface UserInfo {
  name: string;
  mechanism: string;
  iterations: number;
}

/** A users or ACLs file that cannot be used; the message names the file and what is wrong. */
export class SecurityFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SecurityFileError";
  }
}

/** Why `cred` cannot be stored for `name`, or null. */
export function credentialProblem(name: string, cred: ScramCredential): string | null {
  if (!USER_NAME_PATTERN.test(name)) {
    return `user name ${JSON.stringify(name)} is not allowed: use 1 to 128 letters, digits or ._@-`;
  }
  if (cred.salt.length < SALT_BYTES_MIN || cred.salt.length > SALT_BYTES_MAX) {
    return `the salt must have ${SALT_BYTES_MIN} to ${SALT_BYTES_MAX} bytes`;
  }
  if (
    !Number.isInteger(cred.iterations) || cred.iterations < ITERATIONS_MIN ||
    cred.iterations > ITERATIONS_MAX
  ) {
    return `iterations must be ${ITERATIONS_MIN} to ${ITERATIONS_MAX}`;
  }
  if (cred.storedKey.length !== KEY_BYTES || cred.serverKey.length !== KEY_BYTES) {
    return `the stored and server keys must have ${KEY_BYTES} bytes`;
  }
  return null;
}

/**
 * The users and ACLs of one data directory. Writes are applied one at a time, in call order. In a
 * cluster the cluster's users and ACLs (replicated metadata) are added to them with
 * `setReplicated`: a user of both is the cluster's, an ACL entry of either counts.
 */
export class SecurityStore {
  readonly #disk: Disk;
  readonly #dir: string;
  #users = new Map<string, ScramCredential>();
  #acls: AclEntry[] = [];
  #replicatedUsers = new Map<string, ScramCredential>();
  #replicatedAcls: AclEntry[] = [];
  /** The local entries, then the replicated ones that are not local too. */
  #allAcls: AclEntry[] = [];
  #writing: Promise<unknown> = Promise.resolve();
  /** Grows with every change of the ACLs, so a cache of decisions knows when it is stale. */
  aclGeneration = 0;

  private constructor(disk: Disk, dir: string) {
    this.#disk = disk;
    this.#dir = dir;
  }

  /**
   * Loads the files of `dir` (missing files: no users, no ACLs).
   * @throws {SecurityFileError} if a file is damaged or holds something invalid.
   */
  static async open(disk: Disk, dir: string): Promise<SecurityStore> {
    const s = new SecurityStore(disk, dir);
    const users = await s.#read(usersFile(dir), "users");
    for (const u of users) {
      const path = usersFile(dir);
      const r = u as Record<string, unknown>;
      if (
        typeof r.name !== "string" || r.mechanism !== SCRAM_SHA_256 ||
        typeof r.salt !== "string" || typeof r.iterations !== "number" ||
        typeof r.storedKey !== "string" || typeof r.serverKey !== "string"
      ) {
        throw new SecurityFileError(`${path}: user entry ${JSON.stringify(r.name)} is incomplete`);
      }
      let cred: ScramCredential;
      try {
        cred = {
          salt: fromBase64(r.salt),
          iterations: r.iterations,
          storedKey: fromBase64(r.storedKey),
          serverKey: fromBase64(r.serverKey),
        };
      } catch {
        throw new SecurityFileError(`${path}: user ${r.name} has a key that is not base64`);
      }
      const problem = credentialProblem(r.name, cred);
      if (problem !== null) throw new SecurityFileError(`${path}: ${problem}`);
      s.#users.set(r.name, cred);
    }
    for (const a of await s.#read(aclsFile(dir), "acls")) {
      const e = a as AclEntry;
      const problem = typeof e === "object" && e !== null &&
          ["principal", "resourceType", "pattern", "name", "operation"].every((k) =>
            typeof (e as unknown as Record<string, unknown>)[k] === "string"
          )
        ? aclProblem(e)
        : "an entry is incomplete";
      if (problem !== null) throw new SecurityFileError(`${aclsFile(dir)}: ${problem}`);
      s.#acls.push({
        principal: e.principal,
        resourceType: e.resourceType,
        pattern: e.pattern,
        name: e.name,
        operation: e.operation,
      });
    }
    s.#mergeAcls();
    return s;
  }

  async #read(path: string, key: string): Promise<unknown[]> {
    let text: string;
    try {
      text = await readChecked(this.#disk, path);
    } catch (err) {
      if (err instanceof NotFound) return [];
      throw new SecurityFileError(err instanceof Error ? err.message : String(err));
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new SecurityFileError(`${path} is not JSON`);
    }
    const list = (doc as Record<string, unknown> | null)?.[key];
    if (!Array.isArray(list)) throw new SecurityFileError(`${path} has no "${key}" list`);
    return list;
  }

  /** The stored credential of `name`, if that user exists (the cluster's, else this node's). */
  credential(name: string): ScramCredential | undefined {
    return this.#replicatedUsers.get(name) ?? this.#users.get(name);
  }

  /** Every user, by name. */
  users(): UserInfo[] {
    const names = new Set([...this.#users.keys(), ...this.#replicatedUsers.keys()]);
    return [...names].sort().map((name) => ({
      name,
      mechanism: SCRAM_SHA_256,
      iterations: (this.credential(name) as ScramCredential).iterations,
    }));
  }

  /** Every ACL entry: this node's in the order added, then the cluster's. */
  get acls(): readonly AclEntry[] {
    return this.#allAcls;
  }

  /**
   * Sets the cluster's users and ACLs (replicated metadata), replacing the ones set before; this
   * node's own files are left as they are.
   */
  setReplicated(users: ReadonlyMap<string, ScramCredential>, acls: readonly AclEntry[]): void {
    this.#replicatedUsers = new Map(users);
    this.#replicatedAcls = [...acls];
    this.#mergeAcls();
  }

  #mergeAcls(): void {
    this.#allAcls = [
      ...this.#acls,
      ...this.#replicatedAcls.filter((r) => !this.#acls.some((a) => sameAcl(a, r))),
    ];
    this.aclGeneration++;
  }

  /** Adds `name` or replaces its credential (a password change); durable when it resolves. */
  putUser(name: string, cred: ScramCredential): Promise<void> {
    return this.#serial(async () => {
      const problem = credentialProblem(name, cred);
      if (problem !== null) throw new RangeError(problem);
      if (!this.#users.has(name) && this.#users.size >= USERS_MAX) {
        throw new RangeError(`the user limit of ${USERS_MAX} is reached`);
      }
      const next = new Map(this.#users).set(name, cred);
      await this.#writeUsers(next);
      this.#users = next;
    });
  }

  /** Removes `name`; false if there was no such user. */
  removeUser(name: string): Promise<boolean> {
    return this.#serial(async () => {
      if (!this.#users.has(name)) return false;
      const next = new Map(this.#users);
      next.delete(name);
      await this.#writeUsers(next);
      this.#users = next;
      return true;
    });
  }

  /** Adds `e`; false if the same entry exists. */
  addAcl(e: AclEntry): Promise<boolean> {
    return this.#serial(async () => {
      const problem = aclProblem(e);
      if (problem !== null) throw new RangeError(problem);
      if (this.#acls.some((a) => sameAcl(a, e))) return false;
      if (this.#acls.length >= ACLS_MAX) {
        throw new RangeError(`the ACL limit of ${ACLS_MAX} entries is reached`);
      }
      const next = [...this.#acls, { ...e }];
      await this.#writeAcls(next);
      this.#acls = next;
      this.#mergeAcls();
      return true;
    });
  }

  /** Removes the entry equal to `e`; false if there was none. */
  removeAcl(e: AclEntry): Promise<boolean> {
    return this.#serial(async () => {
      const next = this.#acls.filter((a) => !sameAcl(a, e));
      if (next.length === this.#acls.length) return false;
      await this.#writeAcls(next);
      this.#acls = next;
      this.#mergeAcls();
      return true;
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writing.then(fn, fn);
    this.#writing = run.catch(() => {});
    return run;
  }

  async #writeUsers(users: Map<string, ScramCredential>): Promise<void> {
    const list = [...users].map(([name, c]) => ({
      name,
      mechanism: SCRAM_SHA_256,
      salt: toBase64(c.salt),
      iterations: c.iterations,
      storedKey: toBase64(c.storedKey),
      serverKey: toBase64(c.serverKey),
    }));
    await writeChecked(
      this.#disk,
      usersFile(this.#dir),
      JSON.stringify({ version: 1, users: list }, null, 1),
    );
  }

  async #writeAcls(acls: AclEntry[]): Promise<void> {
    await writeChecked(
      this.#disk,
      aclsFile(this.#dir),
      JSON.stringify({ version: 1, acls }, null, 1),
    );
  }
}
