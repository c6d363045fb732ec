// The users and ACLs files on a real filesystem: round trips, no password at rest, a leftover
// temporary file ignored, and a damaged or invalid file refused with a message naming it.

import assert from "node:assert/strict";
import { Auth } from "../src/auth/auth.ts";
import { deriveCredential } from "../src/auth/scram.ts";
import { SeededRandom } from "../src/io/prng.ts";
import { SecurityFileError, SecurityStore } from "../src/auth/store.ts";
import { aclsFile, usersFile } from "../src/storage/layout.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { writeChecked } from "../src/storage/checked_file.ts";
import { DenoCrypto } from "../src/io/deno/crypto.ts";

/** The hashes SCRAM runs on in these tests: the real node's. */
const CRYPTO = new DenoCrypto();

const SALT = new TextEncoder().encode("0123456789abcdef");

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-auth-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SecurityStore keeps users and ACLs across a reopen, and never the password", async () => {
  await withDir(async (dir) => {
    const disk = denoEnv().disk;
    const s = await SecurityStore.open(disk, dir);
    await s.putUser("alice", await deriveCredential(CRYPTO, "hunter2-password", SALT, 4096));
    await s.putUser("bob", await deriveCredential(CRYPTO, "other", SALT, 5000));
    assert.equal(await s.removeUser("bob"), true);
    assert.equal(await s.removeUser("bob"), false);
    const e = {
      principal: "alice",
      resourceType: "topic" as const,
      pattern: "prefix" as const,
      name: "orders.",
      operation: "produce" as const,
    };
    assert.equal(await s.addAcl(e), true);
    assert.equal(await s.addAcl(e), false, "an entry is stored once");
    const again = await SecurityStore.open(disk, dir);
    assert.deepEqual(again.users(), [{
      name: "alice",
      mechanism: "SCRAM-SHA-256",
      iterations: 4096,
    }]);
    assert.deepEqual(again.credential("alice"), s.credential("alice"));
    assert.deepEqual(again.acls, [e]);
    const text = await Deno.readTextFile(usersFile(dir));
    assert.ok(!text.includes("hunter2"), "no password at rest");
    assert.ok(/"storedKey"/.test(text) && /#crc32c:/.test(text));
  });
});

Deno.test("SecurityStore ignores a temporary file a crash left, and refuses damaged or invalid files", async () => {
  await withDir(async (dir) => {
    const disk = denoEnv().disk;
    const s = await SecurityStore.open(disk, dir);
    await s.putUser("alice", await deriveCredential(CRYPTO, "pw", SALT, 4096));
    // A write torn before its rename: the committed file is what counts.
    await Deno.writeTextFile(`${usersFile(dir)}.tmp`, "{ torn");
    assert.equal((await SecurityStore.open(disk, dir)).users().length, 1);

    const good = await Deno.readTextFile(usersFile(dir));
    await Deno.writeTextFile(
      usersFile(dir),
      good.replace('"iterations": 4096', '"iterations": 4097'),
    );
    await assert.rejects(
      SecurityStore.open(disk, dir),
      (err) =>
        err instanceof SecurityFileError &&
        /users\.json is damaged \(checksum mismatch\)/.test(err.message),
    );
    await Deno.remove(usersFile(dir));
    // A file with a valid checksum but an invalid entry (as a hand edit would make).
    const acls = `${
      JSON.stringify({
        version: 1,
        acls: [{
          principal: "a",
          resourceType: "topic",
          pattern: "literal",
          name: "t",
          operation: "read",
        }],
      })
    }`;
    await writeChecked(disk, aclsFile(dir), acls);
    await assert.rejects(
      SecurityStore.open(disk, dir),
      (err) =>
        err instanceof SecurityFileError &&
        /acls\.json: unknown operation "read"/.test(err.message),
    );
  });
});

Deno.test("SecurityStore.putUser refuses weak or malformed credentials", async () => {
  await withDir(async (dir) => {
    const s = await SecurityStore.open(denoEnv().disk, dir);
    const cred = await deriveCredential(CRYPTO, "pw", SALT, 4096);
    await assert.rejects(s.putUser("al ice", cred), /user name "al ice" is not allowed/);
    await assert.rejects(
      s.putUser("alice", { ...cred, iterations: 1000 }),
      /iterations must be 4096/,
    );
    await assert.rejects(
      s.putUser("alice", { ...cred, salt: new Uint8Array(4) }),
      /salt must have/,
    );
    await assert.rejects(s.putUser("alice", { ...cred, storedKey: new Uint8Array(3) }), /32 bytes/);
    assert.deepEqual(s.users(), []);
  });
});

Deno.test("Auth.allowed() follows ACL changes at once, though it remembers its decisions", async () => {
  await withDir(async (dir) => {
    const store = await SecurityStore.open(denoEnv().disk, dir);
    const auth = new Auth(store, {
      mechanism: "scram",
      superUsers: ["root"],
      random: new SeededRandom([1, 2, 3, 4]),
      crypto: denoEnv().crypto,
    });
    const e = {
      principal: "alice",
      resourceType: "topic" as const,
      pattern: "literal" as const,
      name: "orders",
      operation: "produce" as const,
    };
    assert.equal(auth.allowed("alice", "produce", "topic", "orders"), false);
    await store.addAcl(e);
    assert.equal(auth.allowed("alice", "produce", "topic", "orders"), true);
    await store.removeAcl(e);
    assert.equal(auth.allowed("alice", "produce", "topic", "orders"), false);
    assert.equal(auth.allowed("root", "delete", "topic", "orders"), true, "super-users pass");
  });
});

Deno.test("SecurityStore adds the cluster's users and ACLs to its own: the cluster's user wins a name, either's ACL counts, its files stay", async () => {
  await withDir(async (dir) => {
    const disk = denoEnv().disk;
    const s = await SecurityStore.open(disk, dir);
    const local = await deriveCredential(CRYPTO, "local-pw", SALT, 4096);
    const replicated = await deriveCredential(CRYPTO, "cluster-pw", SALT, 5000);
    await s.putUser("admin", local);
    const own = {
      principal: "admin",
      resourceType: "cluster" as const,
      pattern: "literal" as const,
      name: "",
      operation: "describe" as const,
    };
    await s.addAcl(own);
    const theirs = { ...own, principal: "alice", resourceType: "topic" as const, name: "t" };
    const generation = s.aclGeneration;
    s.setReplicated(new Map([["admin", replicated], ["alice", replicated]]), [own, theirs]);
    assert.ok(s.aclGeneration > generation, "cached decisions are dropped");
    assert.deepEqual(s.credential("admin"), replicated);
    assert.deepEqual(s.users().map((u) => [u.name, u.iterations]), [["admin", 5000], [
      "alice",
      5000,
    ]]);
    assert.deepEqual(s.acls, [own, theirs], "an entry of both counts once");
    s.setReplicated(new Map(), []);
    assert.deepEqual(s.credential("admin"), local);
    assert.equal(s.credential("alice"), undefined);
    assert.deepEqual(s.acls, [own]);
    const reopened = await SecurityStore.open(disk, dir);
    assert.deepEqual(reopened.users().map((u) => u.name), ["admin"], "the files hold only its own");
  });
});
