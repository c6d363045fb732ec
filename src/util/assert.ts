// Assertions of internal invariants, on in production. A failed one means this program holds a
// state its own code promised never to reach (a bug): it is never how bad input from a client, a
// peer's malformed bytes or a damaged file is reported — those get typed, recoverable errors.

/**
 * An internal invariant broke: a bug in this program (or state it can no longer trust), not a
 * client's, a peer's bytes' or a file's fault. Callers do not catch it to carry on; whoever
 * reports it shows its stack.
 */
export class AssertionFailed extends Error {
  /** @param message what broke, e.g. `Entry 7 conflicts with the leader but is committed`. */
  constructor(message: string) {
    super(`Internal invariant broken: ${message}`);
    this.name = "AssertionFailed";
  }
}

/**
 * Throws {@link AssertionFailed} unless `condition` holds. `message` may be a function, so a hot
 * path builds its text only when the assertion fails.
 *
 * @throws {AssertionFailed} when `condition` is falsy.
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionFailed(typeof message === "string" ? message : message());
}

/**
 * Marks a branch the types prove unreachable (e.g. the default of a switch over a union): the
 * compiler rejects a call whose argument is not `never`, and a value that gets here anyway (an
 * unchecked cast upstream) fails loudly instead of being ignored.
 *
 * @throws {AssertionFailed} always, naming `what` and the value.
 */
export function unreachable(value: never, what: string): never {
  throw new AssertionFailed(`${what}: unexpected ${describe(value)}`);
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
