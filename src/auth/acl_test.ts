import assert from "node:assert/strict";
import { type AclEntry, aclProblem, permitted } from "./acl.ts";

const entry = (e: Partial<AclEntry>): AclEntry => ({
  principal: "alice",
  resourceType: "topic",
  pattern: "literal",
  name: "orders",
  operation: "produce",
  ...e,
});

Deno.test("permitted() allows what an entry names and denies everything else", () => {
  const acls = [
    entry({}),
    entry({ pattern: "prefix", name: "logs.", operation: "consume" }),
    entry({
      principal: "*",
      resourceType: "cluster",
      pattern: "literal",
      name: "",
      operation: "describe",
    }),
    entry({ resourceType: "group", name: "billing", operation: "all" }),
  ];
  const table: [
    string,
    Parameters<typeof permitted>[2],
    "topic" | "group" | "cluster",
    string,
    boolean,
  ][] = [
    ["alice", "produce", "topic", "orders", true],
    ["alice", "produce", "topic", "orders2", false],
    ["alice", "consume", "topic", "orders", false],
    ["alice", "describe", "topic", "orders", true],
    ["alice", "consume", "topic", "logs.app", true],
    ["alice", "consume", "topic", "logs", false],
    ["alice", "produce", "topic", "logs.app", false],
    ["bob", "produce", "topic", "orders", false],
    ["bob", "describe", "cluster", "", true],
    ["alice", "admin", "cluster", "", false],
    ["alice", "alter", "group", "billing", true],
    ["alice", "join", "group", "billing", true],
    ["alice", "join", "group", "billing2", false],
    ["alice", "produce", "group", "orders", false],
  ];
  for (const [who, op, type, name, want] of table) {
    assert.equal(permitted(acls, who, op, type, name), want, `${who} ${op} ${type}:${name}`);
  }
  assert.equal(permitted([], "alice", "describe", "topic", "orders"), false, "deny by default");
});

Deno.test("permitted() with an empty prefix covers every name of that type", () => {
  const acls = [entry({ pattern: "prefix", name: "", operation: "create" })];
  assert.ok(permitted(acls, "alice", "create", "topic", "anything"));
  assert.ok(!permitted(acls, "alice", "create", "group", "anything"));
});

Deno.test("aclProblem() names what is wrong with an entry", () => {
  assert.equal(aclProblem(entry({})), null);
  assert.match(aclProblem(entry({ operation: "read" as never }))!, /unknown operation "read"/);
  assert.match(aclProblem(entry({ resourceType: "queue" as never }))!, /unknown resource type/);
  assert.match(aclProblem(entry({ pattern: "glob" as never }))!, /unknown pattern/);
  assert.match(aclProblem(entry({ principal: "" }))!, /principal/);
  assert.match(aclProblem(entry({ name: "" }))!, /needs a name/);
  assert.match(aclProblem(entry({ resourceType: "cluster", name: "x" }))!, /takes no name/);
  assert.equal(aclProblem(entry({ pattern: "prefix", name: "" })), null);
});
