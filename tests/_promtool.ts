// Runs Prometheus's promtool for the metrics and dashboard tests; CI installs it (.ci/run).

/** Runs `promtool` with `args`, feeding `stdin`; fails clearly when promtool is not installed. */
export async function promtool(
  args: string[],
  stdin = "",
): Promise<{ code: number; out: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new Error(
      "promtool is not installed (apt-get install -y prometheus; .ci/run does it): " +
        (err as Error).message,
    );
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout) + dec.decode(stderr) };
}
