// The container image's HEALTHCHECK: asks the broker in the same container for `/healthz` on its
// metrics port and exits 0 on `200`, 1 otherwise. Distroless images have no curl or shell, so the
// image's own Deno runs this.

/** The whole check, connect to answer, ms: a broker that cannot answer within it is unhealthy. */
const CHECK_TIMEOUT_MS = 2_000;
const METRICS_PORT_DEFAULT = 7071;

/** Where the broker's metrics endpoint listens, from the same GREGOR_* variables the broker reads. */
function metricsAddress(env: Record<string, string | undefined>): string {
  const bound = env.GREGOR_METRICS_HOST ?? env.GREGOR_HOST ?? "127.0.0.1";
  // A wildcard bind answers on loopback; asking loopback keeps the check inside the container.
  const host = bound === "0.0.0.0" ? "127.0.0.1" : bound === "::" ? "[::1]" : bound;
  const port = env.GREGOR_METRICS_PORT ?? String(METRICS_PORT_DEFAULT);
  return `${host}:${port}`;
}

const address = metricsAddress({
  GREGOR_METRICS_HOST: Deno.env.get("GREGOR_METRICS_HOST"),
  GREGOR_HOST: Deno.env.get("GREGOR_HOST"),
  GREGOR_METRICS_PORT: Deno.env.get("GREGOR_METRICS_PORT"),
});
try {
  const res = await fetch(`http://${address}/healthz`, {
    signal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
  });
  await res.body?.cancel();
  if (res.status !== 200) {
    console.error(`unhealthy: http://${address}/healthz answered ${res.status}`);
    Deno.exit(1);
  }
} catch (err) {
  console.error(`unhealthy: cannot reach http://${address}/healthz: ${(err as Error).message}`);
  Deno.exit(1);
}
