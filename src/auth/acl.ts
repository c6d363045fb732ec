// Access control lists: which principal may do which operation on which resource. Entries only
// allow; once authentication is on, anything no entry allows is denied. Pure and synchronous.

/** Operations a request needs; `all` in an entry allows every one of them. */
export const OPERATIONS = [
  "produce",
  "consume",
  "describe",
  "create",
  "alter",
  "delete",
  "join",
  "admin",
  "all",
] as const;
/** An operation. */
export type Operation = typeof OPERATIONS[number];

/** What an entry is about: a topic, a consumer group, or the cluster as a whole. */
export const RESOURCE_TYPES = ["topic", "group", "cluster"] as const;
/** A resource type. */
export type ResourceType = typeof RESOURCE_TYPES[number];

/** How an entry's name matches: the whole name, or its beginning. */
export const PATTERNS = ["literal", "prefix"] as const;
/** A pattern type. */
export type Pattern = typeof PATTERNS[number];

/** The principal that stands for every authenticated user in an entry. */
export const ANY_PRINCIPAL = "*";

/** One allow rule. For the cluster, `name` is empty and `pattern` literal. */
export interface AclEntry {
  principal: string;
  resourceType: ResourceType;
  pattern: Pattern;
  name: string;
  operation: Operation;
}

/** Longest resource name or prefix in an entry, in characters (a topic name is at most 249). */
export const ACL_NAME_CHARS_MAX = 255;

/** Why `e` is not a valid entry, or null if it is. */
export function aclProblem(e: AclEntry): string | null {
  if (!(OPERATIONS as readonly string[]).includes(e.operation)) {
    return `unknown operation ${JSON.stringify(e.operation)}; use one of ${OPERATIONS.join(", ")}`;
  }
  if (!(RESOURCE_TYPES as readonly string[]).includes(e.resourceType)) {
    return `unknown resource type ${JSON.stringify(e.resourceType)}; use topic, group or cluster`;
  }
  if (!(PATTERNS as readonly string[]).includes(e.pattern)) {
    return `unknown pattern ${JSON.stringify(e.pattern)}; use literal or prefix`;
  }
  if (e.principal.length === 0 || e.principal.length > 128) {
    return "the principal must be a user name or * (1 to 128 characters)";
  }
  if (e.resourceType === "cluster") {
    if (e.name !== "" || e.pattern !== "literal") return "a cluster entry takes no name";
  } else if (e.name.length > ACL_NAME_CHARS_MAX || (e.name === "" && e.pattern === "literal")) {
    // An empty prefix is every name: "all topics" is a prefix entry of "".
    return `a ${e.resourceType} entry needs a name of 1 to ${ACL_NAME_CHARS_MAX} characters ` +
      `(or a prefix of 0 to ${ACL_NAME_CHARS_MAX})`;
  }
  return null;
}

/** True if the two entries are the same rule. */
export function sameAcl(a: AclEntry, b: AclEntry): boolean {
  return a.principal === b.principal && a.resourceType === b.resourceType &&
    a.pattern === b.pattern && a.name === b.name && a.operation === b.operation;
}

/** True if `e` allows `principal` to do `op` on the resource. */
function allows(
  e: AclEntry,
  principal: string,
  op: Operation,
  type: ResourceType,
  name: string,
): boolean {
  if (e.principal !== principal && e.principal !== ANY_PRINCIPAL) return false;
  if (e.resourceType !== type) return false;
  if (type !== "cluster") {
    if (e.pattern === "literal" ? e.name !== name : !name.startsWith(e.name)) return false;
  }
  // Whoever may act on a resource may see that it exists (as in Kafka).
  return e.operation === op || e.operation === "all" ||
    (op === "describe" && e.operation !== "admin");
}

/** True if some entry of `acls` allows `principal` to do `op` on (`type`, `name`). */
export function permitted(
  acls: readonly AclEntry[],
  principal: string,
  op: Operation,
  type: ResourceType,
  name: string,
): boolean {
  return acls.some((e) => allows(e, principal, op, type, name));
}
