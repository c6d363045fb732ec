// SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding: the key derivation, the client's and
// the server's side of the exchange, and the strict parsing of its three text messages. The hashes
// come from the caller's Env (WebCrypto on a real node, plain code in the simulator, so a seed
// replays), and so do the nonces.

import type { Crypto } from "../io/types.ts";

/** The one mechanism this broker speaks. */
export const SCRAM_SHA_256 = "SCRAM-SHA-256";
/** PBKDF2 iterations of a new user unless told otherwise (RFC 7677 asks for at least 4096). */
export const ITERATIONS_DEFAULT = 4096;
/** The fewest and most iterations a stored user may have: fewer is weak, more costs a login. */
export const ITERATIONS_MIN = 4096;
export const ITERATIONS_MAX = 1_000_000;
/** Bytes of a new salt. */
export const SALT_BYTES = 16;
/** Bytes of randomness in a nonce (before base64). */
export const NONCE_BYTES = 18;
/** Longest SCRAM message accepted, in bytes: the real ones are under 200. */
export const SCRAM_MESSAGE_BYTES_MAX = 1024;
/** User names: letters, digits and `._@-`, 1 to 128 of them (no SCRAM escaping is ever needed). */
export const USER_NAME_PATTERN: RegExp = /^[A-Za-z0-9._@-]{1,128}$/;

const KEY_BYTES = 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** What the server stores of a user: never the password. */
export interface ScramCredential {
  salt: Uint8Array;
  iterations: number;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

/** A SCRAM message that does not parse, or a proof that does not verify. */
export class ScramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScramError";
  }
}

/** Standard base64 of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** The bytes of standard base64 `text`; throws ScramError if it is not base64. */
export function fromBase64(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new ScramError("not base64");
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  // Only the canonical spelling: the unused low bits of the last character must be zero, so one
  // proof has one encoding (a message that differs in any byte is a different message).
  if (toBase64(out) !== text) throw new ScramError("not canonical base64");
  return out;
}

/** A printable nonce (base64 has no comma) from `bytes` of randomness. */
export function nonceFrom(bytes: Uint8Array): string {
  return toBase64(bytes);
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Compares in time independent of where the bytes differ. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** SaltedPassword = Hi(password, salt, i): PBKDF2-HMAC-SHA-256. */
export function saltedPassword(
  crypto: Crypto,
  password: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array> {
  return crypto.pbkdf2Sha256(encoder.encode(password), salt, iterations, KEY_BYTES);
}

/** The stored credential of `password` with `salt` and `iterations`. */
export async function deriveCredential(
  crypto: Crypto,
  password: string,
  salt: Uint8Array,
  iterations: number = ITERATIONS_DEFAULT,
): Promise<ScramCredential> {
  const salted = await saltedPassword(crypto, password, salt, iterations);
  const clientKey = await crypto.hmacSha256(salted, encoder.encode("Client Key"));
  return {
    salt,
    iterations,
    storedKey: await crypto.sha256(clientKey),
    serverKey: await crypto.hmacSha256(salted, encoder.encode("Server Key")),
  };
}

/** Splits `msg` into its `k=v` attributes, in order, checking each key is the expected one. */
function attributes(msg: string, keys: readonly string[]): string[] {
  const parts = msg.split(",");
  if (parts.length !== keys.length) throw new ScramError(`expected ${keys.join(",")} attributes`);
  return parts.map((p, i) => {
    if (!p.startsWith(`${keys[i]}=`)) throw new ScramError(`expected attribute ${keys[i]}`);
    return p.slice(2);
  });
}

function utf8(bytes: Uint8Array): string {
  if (bytes.length > SCRAM_MESSAGE_BYTES_MAX) throw new ScramError("message too long");
  try {
    return decoder.decode(bytes);
  } catch {
    throw new ScramError("message is not UTF-8");
  }
}

const NONCE_PATTERN = /^[\x21-\x2b\x2d-\x7e]{16,256}$/;

/** The parts of a client-first message. */
export interface ClientFirst {
  user: string;
  clientNonce: string;
  /** The message after its GS2 header: it goes into the AuthMessage. */
  bare: string;
  /** The GS2 header ("n,," or "y,,"), which the client-final echoes in base64. */
  gs2Header: string;
}

/** Parses a client-first message: `n,,n=user,r=nonce` (no channel binding, no authzid). */
export function parseClientFirst(bytes: Uint8Array): ClientFirst {
  const text = utf8(bytes);
  const gs2Header = text.slice(0, 3);
  if (gs2Header !== "n,," && gs2Header !== "y,,") {
    throw new ScramError("channel binding and authorization identities are not supported");
  }
  const bare = text.slice(3);
  const [user, clientNonce] = attributes(bare, ["n", "r"]) as [string, string];
  if (!USER_NAME_PATTERN.test(user)) throw new ScramError("user name has invalid characters");
  if (!NONCE_PATTERN.test(clientNonce)) throw new ScramError("bad client nonce");
  return { user, clientNonce, bare, gs2Header };
}

/**
 * The server's side of one exchange. `start` answers the client-first with the server-first;
 * `finish` checks the client-final's proof and answers the server-final. Each instance serves one
 * exchange once: a second `finish` (a replay on the same connection) fails.
 */
export class ScramServer {
  readonly #crypto: Crypto;
  #first: ClientFirst | null = null;
  #serverFirst = "";
  #nonce = "";
  #credential: ScramCredential | null = null;
  #done = false;

  constructor(crypto: Crypto) {
    this.#crypto = crypto;
  }

  /**
   * Answers `clientFirst`. `credential` is the user's, or for an unknown user a decoy made by the
   * caller, so the server-first looks the same either way; `serverNonce` comes from the Env.
   */
  start(first: ClientFirst, credential: ScramCredential, serverNonce: string): Uint8Array {
    if (this.#first !== null) throw new ScramError("the exchange was already started");
    this.#first = first;
    this.#credential = credential;
    this.#nonce = first.clientNonce + serverNonce;
    this.#serverFirst = `r=${this.#nonce},s=${
      toBase64(credential.salt)
    },i=${credential.iterations}`;
    return encoder.encode(this.#serverFirst);
  }

  /** Verifies the client-final; resolves the server-final, or throws ScramError. */
  async finish(bytes: Uint8Array): Promise<Uint8Array> {
    const first = this.#first;
    const cred = this.#credential;
    if (first === null || cred === null || this.#done) {
      throw new ScramError("no exchange is waiting for a client-final");
    }
    this.#done = true;
    const text = utf8(bytes);
    const [binding, nonce, proofText] = attributes(text, ["c", "r", "p"]) as [
      string,
      string,
      string,
    ];
    if (binding !== toBase64(encoder.encode(first.gs2Header))) {
      throw new ScramError("channel binding does not match the client-first");
    }
    if (nonce !== this.#nonce) throw new ScramError("nonce does not match this exchange");
    const proof = fromBase64(proofText);
    if (proof.length !== KEY_BYTES) throw new ScramError("proof has the wrong length");
    const withoutProof = text.slice(0, text.lastIndexOf(",p="));
    const authMessage = encoder.encode(`${first.bare},${this.#serverFirst},${withoutProof}`);
    const clientSignature = await this.#crypto.hmacSha256(cred.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    if (!sameBytes(await this.#crypto.sha256(clientKey), cred.storedKey)) {
      throw new ScramError("proof does not verify");
    }
    const serverSignature = await this.#crypto.hmacSha256(cred.serverKey, authMessage);
    return encoder.encode(`v=${toBase64(serverSignature)}`);
  }

  /** The user the client-first named (authenticated only once `finish` resolved). */
  get user(): string {
    return this.#first?.user ?? "";
  }
}

/** The client's side of one exchange. */
export class ScramClient {
  readonly #crypto: Crypto;
  readonly #user: string;
  readonly #password: string;
  readonly #bare: string;
  readonly #clientNonce: string;
  #serverSignature: Uint8Array | null = null;

  constructor(crypto: Crypto, user: string, password: string, clientNonce: string) {
    if (!USER_NAME_PATTERN.test(user)) {
      throw new ScramError(
        `User name ${JSON.stringify(user)} is not allowed: use 1 to 128 letters, digits or ._@-`,
      );
    }
    this.#crypto = crypto;
    this.#user = user;
    this.#password = password;
    this.#clientNonce = clientNonce;
    this.#bare = `n=${user},r=${clientNonce}`;
  }

  /** The client-first message. */
  first(): Uint8Array {
    return encoder.encode(`n,,${this.#bare}`);
  }

  /** The client-final message answering `serverFirst`; throws ScramError on a bad server-first. */
  async final(serverFirstBytes: Uint8Array): Promise<Uint8Array> {
    const serverFirst = utf8(serverFirstBytes);
    const [nonce, saltText, iterText] = attributes(serverFirst, ["r", "s", "i"]) as [
      string,
      string,
      string,
    ];
    if (!nonce.startsWith(this.#clientNonce) || nonce.length <= this.#clientNonce.length) {
      throw new ScramError("the server's nonce does not extend the client's");
    }
    const iterations = Number(iterText);
    if (
      !/^[0-9]{1,7}$/.test(iterText) || iterations < ITERATIONS_MIN || iterations > ITERATIONS_MAX
    ) {
      throw new ScramError(`the server asks for ${iterText} iterations`);
    }
    const salt = fromBase64(saltText);
    const c = this.#crypto;
    const salted = await saltedPassword(c, this.#password, salt, iterations);
    const clientKey = await c.hmacSha256(salted, encoder.encode("Client Key"));
    const storedKey = await c.sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = encoder.encode(`${this.#bare},${serverFirst},${withoutProof}`);
    const proof = xor(clientKey, await c.hmacSha256(storedKey, authMessage));
    const serverKey = await c.hmacSha256(salted, encoder.encode("Server Key"));
    this.#serverSignature = await c.hmacSha256(serverKey, authMessage);
    return encoder.encode(`${withoutProof},p=${toBase64(proof)}`);
  }

  /** Checks the server-final: the server proves it knows the user's keys. Throws ScramError. */
  verify(serverFinalBytes: Uint8Array): void {
    const expected = this.#serverSignature;
    if (expected === null) throw new ScramError("no client-final was sent");
    const [signature] = attributes(utf8(serverFinalBytes), ["v"]) as [string];
    if (!sameBytes(fromBase64(signature), expected)) {
      throw new ScramError("the server's signature does not verify: it does not know this user");
    }
  }

  /** The user this client authenticates as. */
  get user(): string {
    return this.#user;
  }
}
