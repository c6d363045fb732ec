import assert from "node:assert/strict";
import {
  deriveCredential,
  fromBase64,
  parseClientFirst,
  ScramClient,
  ScramError,
  ScramServer,
} from "./scram.ts";
import { DenoCrypto } from "../io/deno/crypto.ts";

/** The hashes SCRAM runs on in these tests: the real node's. */
const CRYPTO = new DenoCrypto();

// RFC 7677 section 3: user "user", password "pencil", these nonces and this salt.
const CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST =
  "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL =
  "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("ScramClient reproduces the RFC 7677 exchange and verifies its server-final", async () => {
  const client = new ScramClient(CRYPTO, "user", "pencil", CLIENT_NONCE);
  assert.equal(dec.decode(client.first()), CLIENT_FIRST);
  assert.equal(dec.decode(await client.final(enc.encode(SERVER_FIRST))), CLIENT_FINAL);
  client.verify(enc.encode(SERVER_FINAL));
  assert.throws(
    () => client.verify(enc.encode("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
    ScramError,
  );
});

Deno.test("ScramServer answers the RFC 7677 exchange from the stored keys alone", async () => {
  const cred = await deriveCredential(CRYPTO, "pencil", fromBase64(SALT), 4096);
  const server = new ScramServer(CRYPTO);
  const first = parseClientFirst(enc.encode(CLIENT_FIRST));
  assert.equal(dec.decode(server.start(first, cred, SERVER_NONCE)), SERVER_FIRST);
  assert.equal(dec.decode(await server.finish(enc.encode(CLIENT_FINAL))), SERVER_FINAL);
  // The same client-final a second time is a replay.
  await assert.rejects(server.finish(enc.encode(CLIENT_FINAL)), ScramError);
});

Deno.test("ScramServer refuses a wrong password, and a client-final from another exchange", async () => {
  const cred = await deriveCredential(CRYPTO, "pencil", fromBase64(SALT), 4096);
  const wrong = new ScramClient(CRYPTO, "user", "pencil2", CLIENT_NONCE);
  const s1 = new ScramServer(CRYPTO);
  const f1 = s1.start(parseClientFirst(wrong.first()), cred, SERVER_NONCE);
  await assert.rejects(s1.finish(await wrong.final(f1)), /proof does not verify/);
  // The RFC's client-final replayed against an exchange with another server nonce.
  const s2 = new ScramServer(CRYPTO);
  s2.start(parseClientFirst(enc.encode(CLIENT_FIRST)), cred, "another-server-nonce-0123");
  await assert.rejects(s2.finish(enc.encode(CLIENT_FINAL)), /nonce does not match/);
});

Deno.test("parseClientFirst refuses channel binding, authzid, bad names and bad nonces", () => {
  for (
    const bad of [
      "p=tls-unique,,n=user,r=rOprNGfwEbeRWgbNEkqO",
      "n,a=admin,n=user,r=rOprNGfwEbeRWgbNEkqO",
      "n,,n=us,er,r=rOprNGfwEbeRWgbNEkqO",
      "n,,n=user,r=short",
      "n,,r=rOprNGfwEbeRWgbNEkqO,n=user",
      "n,,n=user,r=rOprNGfwEbeRWgbNEkqO,m=ext",
      "",
    ]
  ) {
    assert.throws(() => parseClientFirst(enc.encode(bad)), ScramError, bad);
  }
  assert.throws(() => parseClientFirst(new Uint8Array([0x6e, 0x2c, 0x2c, 0xff])), ScramError);
});

Deno.test("fromBase64 takes only the canonical spelling", () => {
  assert.deepEqual(fromBase64("AQ=="), Uint8Array.of(1));
  // "AR==" decodes to the same byte with a stray bit set: a second spelling of one proof.
  assert.throws(() => fromBase64("AR=="), ScramError);
  assert.throws(() => fromBase64("AQ="), ScramError);
  assert.throws(() => fromBase64("A Q=="), ScramError);
});
