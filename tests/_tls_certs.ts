// Real certificates for TLS tests, made by `openssl` in a temporary directory: a CA, a server
// certificate for 127.0.0.1 and localhost, one from another CA, an expired one, one for another
// name, and client certificates for mutual TLS.

/** PEM file paths of one test's certificates and keys. */
export interface TestCerts {
  dir: string;
  /** The CA everything good is signed by. */
  ca: string;
  /** Server (and node) certificate for 127.0.0.1 and localhost, usable as a client's too. */
  server: { cert: string; key: string };
  /** The same key, certified for other.example only. */
  wrongName: { cert: string; key: string };
  /** The same names, but its validity ended before it began. */
  expired: { cert: string; key: string };
  /** A CA the broker and clients do not trust, and a client certificate it signed. */
  otherCa: string;
  otherClient: { cert: string; key: string };
  /** A server (and node) certificate for 127.0.0.1 and localhost signed by `otherCa`. */
  otherServer: { cert: string; key: string };
  /** A client certificate for CN=alice, signed by `ca`. */
  client: { cert: string; key: string };
}

/** Whether `openssl` runs here; tests that need it skip with a reason when it does not. */
export async function haveOpenssl(): Promise<boolean> {
  try {
    const out = await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes every certificate of `TestCerts` in a new temporary directory. */
export async function makeTestCerts(): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-tls-" });
  const ca = async (name: string, subject: string): Promise<void> =>
    await openssl(dir, [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-subj",
      subject,
    ]);
  await ca("ca", "/CN=GregorMQ Test CA");
  await ca("other-ca", "/CN=Some Other CA");
  const csr = async (name: string, subject: string): Promise<void> =>
    await openssl(dir, [
      "req",
      ...EC_KEY,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ]);
  const sign = async (
    o: { csr: string; out: string; ca: string; days: number; san: string },
  ): Promise<void> => {
    const ext = `${o.out}.ext`;
    await Deno.writeTextFile(
      `${dir}/${ext}`,
      `subjectAltName=${o.san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
    );
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${o.csr}.csr`,
      "-CA",
      `${o.ca}.pem`,
      "-CAkey",
      `${o.ca}.key`,
      "-CAcreateserial",
      "-out",
      `${o.out}.pem`,
      // A negative count puts notAfter before notBefore (now): expired from the start. This
      // openssl (3.0) has no -not_after, and no faketime is installed.
      "-days",
      String(o.days),
      "-extfile",
      ext,
    ]);
  };
  const here = "DNS:localhost,IP:127.0.0.1";
  await csr("server", "/CN=localhost");
  await sign({ csr: "server", out: "server", ca: "ca", days: 2, san: here });
  await sign({ csr: "server", out: "wrong-name", ca: "ca", days: 2, san: "DNS:other.example" });
  await sign({ csr: "server", out: "expired", ca: "ca", days: -1, san: here });
  await sign({ csr: "server", out: "other-server", ca: "other-ca", days: 2, san: here });
  await csr("client", "/CN=alice");
  await sign({ csr: "client", out: "client", ca: "ca", days: 2, san: "DNS:alice" });
  await csr("other-client", "/CN=mallory");
  await sign({
    csr: "other-client",
    out: "other-client",
    ca: "other-ca",
    days: 2,
    san: "DNS:mallory",
  });
  const p = (name: string): string => `${dir}/${name}`;
  return {
    dir,
    ca: p("ca.pem"),
    server: { cert: p("server.pem"), key: p("server.key") },
    wrongName: { cert: p("wrong-name.pem"), key: p("server.key") },
    expired: { cert: p("expired.pem"), key: p("server.key") },
    otherCa: p("other-ca.pem"),
    otherClient: { cert: p("other-client.pem"), key: p("other-client.key") },
    otherServer: { cert: p("other-server.pem"), key: p("server.key") },
    client: { cert: p("client.pem"), key: p("client.key") },
  };
}
