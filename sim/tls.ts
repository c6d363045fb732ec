// TLS in the simulator: certificates are PEM-shaped text around a JSON description (subject,
// issuer, names, expiry), and a handshake is a decision made from them, with the failures and
// error types of the real one (src/io/deno/tls.ts). No cryptography: what the simulator tests is
// how the code above the seam reacts to a handshake that fails.

import { TlsConfigError } from "../src/io/errors.ts";
import type { TlsClientOptions, TlsFailure, TlsServerOptions } from "../src/io/types.ts";

/** What a simulated certificate says. */
export interface SimCertificate {
  /** "CN=alice", as the real Network reports a client certificate's subject. */
  subject: string;
  /** The subject of the CA that signed it; a CA's own certificate names itself. */
  issuer: string;
  /** The host names and IP literals it is valid for. */
  names: string[];
  /** Simulated milliseconds after which it has expired. */
  notAfterMs: number;
}

const CERT_BEGIN = "-----BEGIN CERTIFICATE-----";
const CERT_END = "-----END CERTIFICATE-----";

/** A simulated certificate as PEM text. */
export function simCertPem(cert: SimCertificate): string {
  return `${CERT_BEGIN}\n${btoa(JSON.stringify(cert))}\n${CERT_END}\n`;
}

/** The simulated private key of the certificate for `subject`. */
export function simKeyPem(subject: string): string {
  return `-----BEGIN PRIVATE KEY-----\n${btoa(`sim-key:${subject}`)}\n-----END PRIVATE KEY-----\n`;
}

/** The certificates in `pem`, in order; throws TlsConfigError naming `what` if any is not one. */
export function parseSimCerts(pem: string, what: string): SimCertificate[] {
  const certs: SimCertificate[] = [];
  for (const block of pem.split(CERT_BEGIN).slice(1)) {
    const body = block.split(CERT_END)[0]!.trim();
    try {
      const cert = JSON.parse(atob(body)) as SimCertificate;
      if (typeof cert.subject !== "string" || typeof cert.issuer !== "string") throw new Error();
      certs.push(cert);
    } catch {
      throw new TlsConfigError(`${what}: not a simulated PEM certificate`);
    }
  }
  if (certs.length === 0) throw new TlsConfigError(`${what}: no PEM certificate`);
  return certs;
}

/** Checks a server's options as the real listen does: a certificate, its own key, a CA if needed. */
export function checkServerTls(tls: TlsServerOptions, what: string): void {
  const [leaf] = parseSimCerts(tls.certPem, what);
  if (tls.keyPem !== simKeyPem(leaf!.subject)) {
    throw new TlsConfigError(`${what}: the key does not match the certificate`);
  }
  if (tls.requireClientCert === true) {
    if (tls.caPem === undefined) {
      throw new TlsConfigError(`${what}: requiring client certificates needs a CA to check them`);
    }
    parseSimCerts(tls.caPem, what);
  }
}

/** Why `chainPem` does not pass against `caPem` at `nowMs` for `name` (null: any), or null. */
function verify(
  chainPem: string,
  caPem: string,
  nowMs: number,
  name: string | null,
): TlsFailure | null {
  let leaf: SimCertificate;
  let cas: SimCertificate[];
  try {
    leaf = parseSimCerts(chainPem, "peer")[0]!;
    cas = parseSimCerts(caPem, "CA");
  } catch {
    return "BAD_CERTIFICATE";
  }
  if (!cas.some((ca) => ca.subject === leaf.issuer && nowMs <= ca.notAfterMs)) return "UNKNOWN_CA";
  if (nowMs > leaf.notAfterMs) return "EXPIRED";
  if (name !== null && !leaf.names.includes(name)) return "HOSTNAME_MISMATCH";
  return null;
}

/**
 * How a simulated handshake ends, as the real one would:
 * - `ok`: both ends proceed (`subject`: the client's, under mutual TLS);
 * - `clientFails`: the client's connect rejects (it refused the server, or the server is not TLS);
 * - `serverDrops`: the client's handshake completes, then the server closes (it refused the
 *   client's certificate after the handshake, as TLS 1.3 has it);
 * - `plainToTls`: a plaintext client; the server answers with a TLS alert and closes.
 */
export type SimHandshake =
  | { kind: "ok"; subject?: string }
  | { kind: "clientFails"; reason: TlsFailure; message: string }
  | { kind: "serverDrops"; reason: TlsFailure; message: string }
  | { kind: "plainToTls" };

/** The outcome of a handshake between `server` and `client` options (either may be absent). */
export function simHandshake(
  server: TlsServerOptions | undefined,
  client: TlsClientOptions | undefined,
  o: { dialed: string; nowMs: number },
): SimHandshake {
  if (server === undefined && client === undefined) return { kind: "ok" };
  if (server === undefined) {
    return {
      kind: "clientFails",
      reason: "NOT_TLS",
      message: "the other end does not speak TLS; is it a plaintext port?",
    };
  }
  if (client === undefined) return { kind: "plainToTls" };
  const name = client.serverName ?? o.dialed;
  const refused = verify(server.certPem, client.caPem, o.nowMs, name);
  if (refused !== null) {
    return { kind: "clientFails", reason: refused, message: describe(refused, name) };
  }
  if (server.requireClientCert !== true) return { kind: "ok" };
  if (client.certPem === undefined) {
    return {
      kind: "serverDrops",
      reason: "CLIENT_CERT_REQUIRED",
      message: "a client certificate is required (mutual TLS)",
    };
  }
  const bad = verify(client.certPem, server.caPem!, o.nowMs, null);
  if (bad !== null) return { kind: "serverDrops", reason: bad, message: describe(bad, null) };
  return { kind: "ok", subject: parseSimCerts(client.certPem, "client")[0]!.subject };
}

function describe(reason: TlsFailure, name: string | null): string {
  switch (reason) {
    case "UNKNOWN_CA":
      return "the certificate is not signed by a trusted CA";
    case "EXPIRED":
      return "the certificate has expired or is not valid yet";
    case "HOSTNAME_MISMATCH":
      return `the certificate is not valid for the name ${name ?? "asked for"}`;
    default:
      return "the certificate was refused";
  }
}

/** The bytes of the TLS alert a TLS server sends a client that does not speak TLS. */
export const TLS_ALERT_BYTES: Uint8Array = new Uint8Array([
  0x15,
  0x03,
  0x03,
  0x00,
  0x02,
  0x02,
  0x32,
]);
