// Producer ids for idempotent producers, unique across broker restarts: ids are handed out from a
// block whose end is written durably before the first id of it is given, so after a crash the
// broker starts past every id it may have handed out.

import type { Disk } from "../io/types.ts";
import { NotFound } from "../io/errors.ts";
import { mkdirDurable } from "../io/util.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
import { producerIdsFile } from "../storage/layout.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";

/** Ids reserved by one durable write. */
export const PRODUCER_ID_BLOCK = 1000;
/** Largest producer id (an i64 on the wire that must be a safe integer). */
export const PRODUCER_ID_MAX = Number.MAX_SAFE_INTEGER;

/** Hands out producer ids; one per broker. */
export class ProducerIds {
  readonly #disk: Disk;
  readonly #dir: string;
  /** The next id to hand out, and the end (exclusive) of the reserved block; null until loaded. */
  #next: number | null = null;
  #limit = 0;
  /** Allocations run one at a time, so two never reserve the same block. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(disk: Disk, dataDir: string) {
    this.#disk = disk;
    this.#dir = dataDir;
  }

  get #path(): string {
    return producerIdsFile(this.#dir);
  }

  /**
   * A producer id never handed out before by a broker on this data directory.
   * @throws {GregorError} STORAGE_ERROR if the reservation cannot be read or made durable.
   */
  next(): Promise<number> {
    const got = this.#tail.then(() => this.#allocate());
    this.#tail = got.catch(() => {});
    return got;
  }

  async #allocate(): Promise<number> {
    try {
      if (this.#next === null) {
        const start = await this.#load();
        this.#next = start;
        this.#limit = start;
      }
      if (this.#next >= this.#limit) {
        const limit = this.#next + PRODUCER_ID_BLOCK;
        if (limit > PRODUCER_ID_MAX) throw new Error(`producer ids are exhausted at ${this.#next}`);
        await mkdirDurable(this.#disk, this.#dir);
        await writeChecked(this.#disk, this.#path, JSON.stringify({ nextBlockStart: limit }));
        this.#limit = limit;
      }
    } catch (err) {
      if (err instanceof GregorError) throw err;
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot reserve producer ids in ${this.#path}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const id = this.#next;
    this.#next = id + 1;
    return id;
  }

  async #load(): Promise<number> {
    let text: string;
    try {
      text = await readChecked(this.#disk, this.#path);
    } catch (err) {
      if (err instanceof NotFound) return 0;
      throw err;
    }
    const start = (JSON.parse(text) as { nextBlockStart?: unknown }).nextBlockStart;
    if (typeof start !== "number" || !Number.isSafeInteger(start) || start < 0) {
      throw new Error(`nextBlockStart is ${JSON.stringify(start)}, not an integer of 0 or more`);
    }
    return start;
  }
}
