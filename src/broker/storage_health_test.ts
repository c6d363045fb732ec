import assert from "node:assert/strict";
import { IoFailure, NoSpace } from "../io/errors.ts";
import type { Clock } from "../io/types.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { STORAGE_CAUSE_RELOG_MS, storageCause, StorageHealth } from "./storage_health.ts";

/** A clock the test moves by hand: the health's only input besides the failures. */
function handClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    wallMs: () => now,
    sleep: () => Promise.resolve(),
    advance: (ms) => (now += ms),
  };
}

Deno.test("StorageHealth logs each cause once, counts every failure, and clears on a write", () => {
  const clock = handClock();
  const logged: string[] = [];
  const health = new StorageHealth(clock, (m) => logged.push(m));
  const full = new GregorError(
    ErrorCode.STORAGE_ERROR,
    "Cannot append to data/topics/t/0: Cannot write 0.log at 4096: no space left on device",
  );
  for (let i = 0; i < 100; i++) {
    health.failed(full);
    clock.advance(10);
  }
  health.failed(new IoFailure("Cannot sync data/x: input/output error"));
  assert.equal(logged.length, 2, logged.join("\n"));
  assert.match(logged[0]!, /Storage is failing \(no_space\): .*no space left on device/);
  assert.match(logged[1]!, /\(io_failure\)/);
  assert.deepEqual([...health.counts], [["no_space", 100], ["io_failure", 1]]);
  assert.equal(health.failing?.cause, "io_failure");
  assert.equal(health.failing?.sinceMs, 0, "failing since the first failure of the spell");

  health.succeeded();
  assert.equal(health.failing, null);
  assert.equal(logged.length, 3);
  assert.match(logged[2]!, /Storage works again/);
  health.succeeded();
  assert.equal(logged.length, 3, "a write while healthy logs nothing");
});

Deno.test("StorageHealth logs a cause again only after a quiet spell", () => {
  const clock = handClock();
  const logged: string[] = [];
  const health = new StorageHealth(clock, (m) => logged.push(m));
  const full = new NoSpace("Cannot write a: no space left on device");
  health.failed(full);
  health.succeeded();
  clock.advance(1000);
  // A disk that flaps between full and not: no new lines, only counts.
  health.failed(full);
  health.succeeded();
  assert.equal(logged.length, 2, logged.join("\n"));
  clock.advance(STORAGE_CAUSE_RELOG_MS);
  health.failed(full);
  assert.equal(logged.length, 3);
  assert.equal(health.counts.get("no_space"), 3);
});

Deno.test("storageCause() follows causes to the I/O error and reads messages without one", () => {
  const io = new NoSpace("Cannot write a: no space left on device");
  assert.equal(
    storageCause(new GregorError(ErrorCode.STORAGE_ERROR, "x", { cause: io })),
    "no_space",
  );
  assert.equal(storageCause(new Error("Cannot roll: no space left on device")), "no_space");
  assert.equal(storageCause(new Error("Read-only file system (os error 30)")), "io_failure");
});
