// The real Crypto: WebCrypto's HMAC-SHA-256 (the same the SCRAM code uses).

import type { Crypto } from "../types.ts";

/** HMAC-SHA-256 by `crypto.subtle`. */
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
}
