// Authentication and authorization over a real broker process started with `--auth scram`: the
// first super-user made offline by gregorctl (the documented bootstrap), then a table of cases,
// each with the answer it must get, while a good client keeps producing throughout.

import assert from "node:assert/strict";
import { type Client, connect, GregorError } from "../src/client/mod.ts";
import { ScramClient } from "../src/auth/scram.ts";
import { ErrorCode } from "../src/protocol/errors.ts";
import { killAll, spawnBroker } from "./_broker_process.ts";
import { HELLO_BODY, RawSession } from "./_raw_session.ts";
import { DenoCrypto } from "../src/io/deno/crypto.ts";

/** The hashes SCRAM runs on in these tests: the real node's. */
const CRYPTO = new DenoCrypto();

const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
const TIMEOUT_MS = 10_000;
/** Time the broker may take to close a connection after a fatal answer. */
const CLOSE_MS_MAX = 5_000;
/** Pause between the good client's produces. */
const GOOD_GAP_MS = 5;

async function gregorctl(
  args: string[],
  env: Record<string, string>,
  exitCode = 0,
): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GREGORCTL, ...args],
    env,
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, exitCode, `gregorctl ${args.join(" ")}: ${text}`);
  return text;
}

/** The error code a call failed with, or "ok". */
async function outcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (err) {
    if (err instanceof GregorError) return err.codeName;
    throw err;
  }
}

function login(port: number, username: string, password: string): Promise<Client> {
  return connect({
    port,
    username,
    password,
    connectTimeoutMs: TIMEOUT_MS,
    requestTimeoutMs: TIMEOUT_MS,
  });
}

/** Runs `fn` as `user`, closing the client after. */
async function as<T>(
  port: number,
  user: [string, string],
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const c = await login(port, ...user);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** A SCRAM exchange by hand; returns the client-final it sent and the answer to it. */
async function exchange(
  s: RawSession,
  user: string,
  password: string,
  nonce: string,
  replay?: Uint8Array,
) {
  assert.equal((await s.call("HELLO", HELLO_BODY)).kind, "ok");
  const scram = new ScramClient(CRYPTO, user, password, nonce);
  const first = await s.call("AUTH_START", { mechanism: "SCRAM-SHA-256", message: scram.first() });
  assert.equal(first.kind, "ok", JSON.stringify(first));
  const serverFirst = (first as { body: Record<string, unknown> }).body.message as Uint8Array;
  const clientFinal = replay ?? await scram.final(serverFirst);
  return { clientFinal, answer: await s.call("AUTH_FINISH", { message: clientFinal }) };
}

Deno.test("SCRAM and ACLs over a real broker process: every case gets its answer, a good client is served throughout", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-auth-" });
  const dataDir = `${root}/data`;
  const procs = [];
  const clients: Client[] = [];
  let stop = false;
  let goodLoop: Promise<void> | null = null;
  try {
    // Bootstrap: the first super-user, offline, before the broker ever ran.
    await gregorctl(["user", "add", "admin", "--data-dir", dataDir], {
      GREGOR_NEW_PASSWORD: "admin-pw",
    });
    const broker = await spawnBroker([
      "--port=0",
      "--metrics-port=0",
      `--data-dir=${dataDir}`,
      "--auth=scram",
      "--super-users=admin",
    ]);
    procs.push(broker);
    const port = Number(broker.listen.listen.split(":")[1]);
    const admin = await login(port, "admin", "admin-pw");
    clients.push(admin);
    await admin.admin.putUser("alice", "alice-pw");
    await admin.admin.putUser("mallory", "mallory-pw");
    for (const t of ["orders", "payments", "scratch.a"]) await admin.admin.createTopic(t);
    await admin.publish("payments", { value: "p1" });
    const allow = (
      resourceType: "topic" | "group",
      name: string,
      operation: "produce" | "consume" | "delete" | "alter",
      pattern: "literal" | "prefix" = "literal",
    ) => admin.admin.addAcl({ principal: "alice", resourceType, pattern, name, operation });
    await allow("topic", "orders", "produce");
    await allow("topic", "orders", "consume");
    await allow("topic", "scratch.", "delete", "prefix");
    await allow("group", "billing", "alter");

    // A good client (a super-user) produces throughout; every produce must succeed.
    const good = await login(port, "admin", "admin-pw");
    clients.push(good);
    let goodSent = 0;
    goodLoop = (async () => {
      while (!stop) {
        await good.publish("orders", { value: `good-${goodSent}` });
        goodSent++;
        await new Promise((r) => setTimeout(r, GOOD_GAP_MS));
      }
    })();

    const alice: [string, string] = ["alice", "alice-pw"];
    const cases: [string, () => Promise<unknown>, string][] = [
      [
        "wrong password",
        () => login(port, "alice", "wrong").then((c) => c.close()),
        "AUTHENTICATION_FAILED",
      ],
      [
        "unknown user",
        () => login(port, "nobody", "alice-pw").then((c) => c.close()),
        "AUTHENTICATION_FAILED",
      ],
      ["no credentials at all", async () => {
        const c = await connect({
          port,
          connectTimeoutMs: TIMEOUT_MS,
          requestTimeoutMs: TIMEOUT_MS,
        });
        try {
          await c.admin.listTopics();
        } finally {
          await c.close();
        }
      }, "HANDSHAKE_REQUIRED"],
      [
        "authorized produce",
        () => as(port, alice, (c) => c.publish("orders", { value: "a" })),
        "ok",
      ],
      [
        "unauthorized produce",
        () => as(port, alice, (c) => c.publish("payments", { value: "x" })),
        "AUTHORIZATION_FAILED",
      ],
      ["authorized consume", () => as(port, alice, (c) => c.readPartition("orders", 0)), "ok"],
      [
        "unauthorized consume",
        () => as(port, alice, (c) => c.readPartition("payments", 0)),
        "AUTHORIZATION_FAILED",
      ],
      ["authorized delete", () => as(port, alice, (c) => c.admin.deleteTopic("scratch.a")), "ok"],
      [
        "unauthorized delete",
        () => as(port, alice, (c) => c.admin.deleteTopic("payments")),
        "AUTHORIZATION_FAILED",
      ],
      [
        "authorized group-offset-reset",
        () => as(port, alice, (c) => c.admin.resetOffsets("billing", "orders", "earliest")),
        "ok",
      ],
      [
        "unauthorized group-offset-reset",
        () => as(port, alice, (c) => c.admin.resetOffsets("other", "orders", "earliest")),
        "AUTHORIZATION_FAILED",
      ],
      [
        "unauthorized partition reassign",
        () => as(port, alice, (c) => c.admin.reassignPartition("payments", 0, ["n1"])),
        "AUTHORIZATION_FAILED",
      ],
      [
        "unauthorized leader rebalance",
        () => as(port, alice, (c) => c.admin.rebalanceLeaders()),
        "AUTHORIZATION_FAILED",
      ],
      [
        "leader rebalance by a super-user on a single node",
        () => as(port, ["admin", "admin-pw"], (c) => c.admin.rebalanceLeaders()),
        "INVALID_REQUEST",
      ],
      [
        "a user without ACLs is denied by default",
        () => as(port, ["mallory", "mallory-pw"], (c) => c.publish("orders", { value: "m" })),
        "AUTHORIZATION_FAILED",
      ],
      [
        "user management by a non-super-user",
        () => as(port, alice, (c) => c.admin.listUsers()),
        "AUTHORIZATION_FAILED",
      ],
      [
        "ACL management by a non-super-user",
        () =>
          as(port, alice, (c) =>
            c.admin.addAcl({
              principal: "alice",
              resourceType: "topic",
              pattern: "prefix",
              name: "",
              operation: "all",
            })),
        "AUTHORIZATION_FAILED",
      ],
    ];
    const got: string[] = [];
    for (const [label, fn] of cases) got.push(`${label}: ${await outcome(fn)}`);
    assert.deepEqual(got, cases.map(([label, , want]) => `${label}: ${want}`));

    // Wrong password and unknown user get the very same answer.
    const answers = [];
    for (const user of ["alice", "nobody"]) {
      const err = await login(port, user, "guess").then(() => null, (e) => e as GregorError);
      answers.push([err?.code, err?.message]);
    }
    assert.deepEqual(answers[0], [ErrorCode.AUTHENTICATION_FAILED, "Authentication failed"]);
    assert.deepEqual(answers[1], answers[0]);

    // A client-final captured from a successful exchange, replayed on a new connection.
    const a = await RawSession.open(port);
    const first = await exchange(a, "alice", "alice-pw", "nonce-of-the-recorded-exchange");
    assert.equal(first.answer.kind, "ok");
    a.close();
    const b = await RawSession.open(port);
    const replayed = await exchange(
      b,
      "alice",
      "alice-pw",
      "nonce-of-the-recorded-exchange",
      first.clientFinal,
    );
    assert.deepEqual(replayed.answer, {
      kind: "error",
      code: ErrorCode.AUTHENTICATION_FAILED,
      message: "Authentication failed",
    });
    assert.ok(await b.closedWithin(CLOSE_MS_MAX), "the broker closes after a replay");
    b.close();
    // ...and the same client-final a second time on its own connection.
    const c = await RawSession.open(port);
    const once = await exchange(c, "alice", "alice-pw", "another-recorded-nonce-000");
    assert.equal(once.answer.kind, "ok");
    const again = await c.call("AUTH_FINISH", { message: once.clientFinal });
    assert.equal(again.kind === "error" && again.code, ErrorCode.AUTHENTICATION_FAILED);
    c.close();

    // Password rotation: the old password stops working, the new one works.
    await admin.admin.putUser("alice", "alice-pw-2");
    assert.equal(
      await outcome(() => login(port, "alice", "alice-pw").then((x) => x.close())),
      "AUTHENTICATION_FAILED",
    );
    assert.equal(
      await outcome(() =>
        as(port, ["alice", "alice-pw-2"], (x) => x.publish("orders", { value: "r" }))
      ),
      "ok",
    );

    stop = true;
    await goodLoop;
    assert.ok(goodSent > 0);
    const stored = await good.readPartition("orders", 0);
    const goods = stored.map((m) => m.text()).filter((v) => v.startsWith("good-"));
    assert.deepEqual(goods, Array.from({ length: goodSent }, (_, i) => `good-${i}`));

    // Counted, and logged: failures with the user claimed, denials as audit lines.
    const metrics = await (await fetch(`http://${broker.listen.metrics}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(metrics)?.[1]);
    // wrong password, unknown user, the two probes, two replays, the rotated password.
    assert.equal(value("gregormq_auth_failures_total"), 7);
    assert.ok(value("gregormq_authorization_denials_total") >= 7, metrics);
    const log = broker.lines.join("\n");
    assert.match(
      log,
      /Authorization denied: principal=\\"alice\\" operation=delete resource=topic:\\"payments\\"/,
    );
    assert.match(
      log,
      /Authentication failed for user \\"alice\\" from 127\.0\.0\.1:\d+ \(connection \d+\): nonce does not match/,
    );
  } finally {
    stop = true;
    await goodLoop?.catch(() => {});
    for (const c of clients) await c.close();
    await killAll(procs);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("gregorctl leaves users alone while a broker runs without authentication", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-auth-off-" });
  const procs = [];
  try {
    const broker = await spawnBroker(["--port=0", "--no-metrics-enabled", `--data-dir=${root}`]);
    procs.push(broker);
    const env = { GREGOR_NEW_PASSWORD: "pw", GREGOR_BROKER: broker.listen.listen };
    // Offline editing under a running broker: it would never see the change.
    const offline = await gregorctl(["user", "add", "eve", "--data-dir", root], env, 2);
    assert.match(
      offline,
      /data dir .* is in use by .*: stop that broker, or manage users through it/,
    );
    // Over the network with authentication off: nobody may plant users for later.
    const online = await gregorctl(["user", "add", "eve"], env, 1);
    assert.match(online, /AUTHORIZATION_FAILED: Users and ACLs are managed over the network only/);
    await assert.rejects(Deno.stat(`${root}/users.json`), Deno.errors.NotFound);
  } finally {
    await killAll(procs);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
