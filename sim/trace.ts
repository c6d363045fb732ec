// A running 64-bit hash of everything a simulation did (each fired event and each history entry),
// so two runs of one seed can be compared by one string.

/** Two 32-bit FNV-1a style lanes with different offsets; cheap and order-sensitive. */
export class TraceHash {
  #a = 0x811c9dc5;
  #b = 0x01000193 ^ 0x5bd1e995;

  /** Mixes in one fired event: its virtual time (µs resolution), kind and owner. */
  event(atMs: number, tag: number, owner: number): void {
    this.word(Math.round(atMs * 1000) >>> 0);
    this.word(Math.floor(atMs / 4294967.296) >>> 0);
    this.word((tag << 16) ^ (owner & 0xffff));
  }

  /** Mixes in a string (used for history entries). */
  text(s: string): void {
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
  }

  /** Mixes in one 32-bit word. */
  word(w: number): void {
    this.#a = Math.imul(this.#a ^ (w & 0xffff), 0x01000193);
    this.#a = Math.imul(this.#a ^ (w >>> 16), 0x01000193);
    this.#b = Math.imul(this.#b ^ w, 0x5bd1e995);
    this.#b ^= this.#b >>> 15;
  }

  /** The hash as 16 hex digits. */
  hex(): string {
    return (this.#a >>> 0).toString(16).padStart(8, "0") +
      (this.#b >>> 0).toString(16).padStart(8, "0");
  }
}
