// The real Crypto: WebCrypto's HMAC-SHA-256, SHA-256 and PBKDF2.

import type { Crypto } from "../types.ts";

/** The hashes by `crypto.subtle`. */
export class DenoCrypto implements Crypto {
  async hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
    const k = await crypto.subtle.importKey(
      "raw",
      key as BufferSource,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return new Uint8Array(await crypto.subtle.sign("HMAC", k, data as BufferSource));
  }

  async sha256(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
  }

  async pbkdf2Sha256(
    password: Uint8Array,
    salt: Uint8Array,
    iterations: number,
    bytes: number,
  ): Promise<Uint8Array> {
    const base = await crypto.subtle.importKey(
      "raw",
      password as BufferSource,
      "PBKDF2",
      false,
      ["deriveBits"],
    );
    const bits = await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations },
      base,
      bytes * 8,
    );
    return new Uint8Array(bits);
  }
}
