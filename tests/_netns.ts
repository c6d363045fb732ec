// A small network of real addresses on one machine, for the multi-host tests: one Linux network
// namespace per node, each with a veth pair into a bridge in the root namespace (whose address the
// test process talks from), a private /24 made for the run, dnsmasq in a namespace of its own
// serving one name with an A record per node, and iptables rules inside the node namespaces to cut
// links (both ways or one way). Needs root, `ip`, `iptables` and `dnsmasq`; everything it makes is
// named `gmq<pid>_<n>-…` after the creating process and removed by `destroy()`, and `cleanLeftovers()`
// removes what a crashed run of a process that no longer exists left behind.

/** Every namespace, link and /etc/netns entry of these labs starts with this. */
const PREFIX = "gmq";
/** Labs this process made so far: a lab's names never repeat an earlier one's still going away. */
let labsMade = 0;
/** The subnets tried are 10.213.X.0/24; X is picked so no address of this machine is in it. */
const SUBNET_BASE = "10.213";
/** Host part of node i's first address; a moved node takes the next free one from MOVED_HOST. */
const NODE_HOST_FIRST = 10;
const MOVED_HOST_FIRST = 100;
/** Host part of the DNS server's address; the bridge (the test process's side) is .1. */
const DNS_HOST = 53;
/** How long dnsmasq gets to answer its first query, ms. */
const DNS_READY_MS_MAX = 5_000;
/** Where the per-namespace resolv.conf files go (`ip netns exec` bind-mounts them). */
const ETC_NETNS = "/etc/netns";

/** Why the multi-host tests cannot run on this machine, or null when they can. */
export async function netnsSkipReason(): Promise<string | null> {
  if (Deno.build.os !== "linux") return `network namespaces need Linux, not ${Deno.build.os}`;
  if (Deno.uid() !== 0) return `network namespaces need root (uid ${Deno.uid()})`;
  for (const tool of ["ip", "iptables", "dnsmasq"]) {
    const found = await output(["sh", "-c", `command -v ${tool}`]).catch(() => null);
    if (found === null) {
      return `${tool} is not installed (Debian: iproute2, iptables, dnsmasq-base)`;
    }
  }
  const probe = `${PREFIX}${Deno.pid.toString(36)}_0-probe`;
  try {
    await output(["ip", "netns", "add", probe]);
    await output(["ip", "netns", "del", probe]);
  } catch (err) {
    return `cannot make a network namespace: ${(err as Error).message}`;
  }
  return null;
}

/** Runs `argv`; resolves its stdout, or fails with its stderr. */
export async function output(argv: string[]): Promise<string> {
  const [cmd, ...args] = argv;
  const r = await new Deno.Command(cmd!, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!r.success) {
    throw new Error(`${argv.join(" ")} failed (exit ${r.code}): ${dec.decode(r.stderr).trim()}`);
  }
  return dec.decode(r.stdout);
}

/** A process id is alive here: /proc has it. */
async function alive(pid: number): Promise<boolean> {
  return await Deno.stat(`/proc/${pid}`).then(() => true, () => false);
}

/** The creating process of a lab, from a name `gmq<pid base 36>_<lab>-…`; NaN if none. */
function ownerOf(name: string): number {
  const m = /^gmq([0-9a-z]+)_\d+-/.exec(name);
  return m === null ? NaN : parseInt(m[1]!, 36);
}

/**
 * Removes the namespaces (and the processes still in them), links and /etc/netns entries of labs
 * whose creating process is gone. Returns what it removed.
 */
export async function cleanLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const stale = async (name: string) => {
    const owner = ownerOf(name);
    return name.startsWith(PREFIX) && !Number.isNaN(owner) && owner !== Deno.pid &&
      !(await alive(owner));
  };
  const namespaces = (await output(["ip", "netns", "list"])).split("\n")
    .map((l) => l.split(" ")[0]!).filter((n) => n !== "");
  for (const ns of namespaces) {
    if (!(await stale(ns))) continue;
    const pids = (await output(["ip", "netns", "pids", ns]).catch(() => "")).split(/\s+/)
      .filter((p) => p !== "").map(Number);
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await output(["ip", "netns", "del", ns]).catch(() => {});
    removed.push(ns);
  }
  const links = (await output(["ip", "-o", "link", "show"])).split("\n")
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1]).filter((n): n is string => n !== undefined);
  for (const link of links) {
    if (!(await stale(link))) continue;
    await output(["ip", "link", "del", link]).catch(() => {});
    removed.push(link);
  }
  const entries = await Array.fromAsync(Deno.readDir(ETC_NETNS)).catch(() => []);
  for (const e of entries) {
    if (!(await stale(e.name))) continue;
    await Deno.remove(`${ETC_NETNS}/${e.name}`, { recursive: true }).catch(() => {});
    removed.push(`${ETC_NETNS}/${e.name}`);
  }
  return removed;
}

/** The /24 prefixes ("a.b.c") of every IPv4 address of this machine's root namespace. */
async function usedPrefixes(): Promise<Set<string>> {
  const text = await output(["ip", "-4", "-o", "addr", "show"]);
  return new Set([...text.matchAll(/inet (\d+\.\d+\.\d+)\.\d+/g)].map((m) => m[1]!));
}

/** One end of a link to cut: a node by index, or the test process (the bridge address). */
export type Endpoint = number | "client";

/** How to make a lab. */
export interface NetLabOptions {
  /** Node namespaces. */
  nodes: number;
  /** The name served with one A record per node (e.g. "gregormq-headless.test"). */
  dnsName: string;
}

/** A bridge, one namespace per node, and dnsmasq, made for one test run. */
export class NetLab {
  /** The name dnsmasq serves, with one A record per node's current address. */
  readonly dnsName: string;
  /** The bridge's address: where the test process's connections come from. */
  readonly clientIp: string;
  readonly #id: string;
  readonly #subnet: string;
  readonly #ips: string[];
  readonly #dir: string;
  #dns: Deno.ChildProcess | null = null;
  #nextMovedHost = MOVED_HOST_FIRST;

  private constructor(id: string, subnet: string, nodes: number, dnsName: string, dir: string) {
    this.#id = id;
    this.#subnet = subnet;
    this.dnsName = dnsName;
    this.clientIp = `${subnet}.1`;
    this.#ips = Array.from({ length: nodes }, (_, i) => `${subnet}.${NODE_HOST_FIRST + i}`);
    this.#dir = dir;
  }

  /** Makes the bridge, the namespaces and dnsmasq; on failure removes what it made, and throws. */
  static async create(opts: NetLabOptions): Promise<NetLab> {
    const used = await usedPrefixes();
    let third = Deno.pid % 250;
    while (used.has(`${SUBNET_BASE}.${third}`)) third = (third + 1) % 250;
    const dir = await Deno.makeTempDir({ prefix: "gregormq-netns-" });
    const lab = new NetLab(
      `${PREFIX}${Deno.pid.toString(36)}_${++labsMade}`,
      `${SUBNET_BASE}.${third}`,
      opts.nodes,
      opts.dnsName,
      dir,
    );
    try {
      await lab.#build();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /** Node i's namespace. */
  namespace(i: number): string {
    return `${this.#id}-n${i}`;
  }

  /** Node i's current address. */
  ip(i: number): string {
    return this.#ips[i]!;
  }

  /** The command prefix that runs a program in node i's namespace. */
  exec(i: number): string[] {
    return ["ip", "netns", "exec", this.namespace(i)];
  }

  get #bridge(): string {
    return `${this.#id}-b`;
  }

  get #dnsNs(): string {
    return `${this.#id}-dns`;
  }

  get #dnsIp(): string {
    return `${this.#subnet}.${DNS_HOST}`;
  }

  get #hostsFile(): string {
    return `${this.#dir}/hosts`;
  }

  async #build(): Promise<void> {
    await output(["ip", "link", "add", this.#bridge, "type", "bridge"]);
    await output(["ip", "addr", "add", `${this.clientIp}/24`, "dev", this.#bridge]);
    await output(["ip", "link", "set", this.#bridge, "up"]);
    const spaces = this.#ips.map((ip, i) => ({ ns: this.namespace(i), ip, n: i }));
    spaces.push({ ns: this.#dnsNs, ip: this.#dnsIp, n: spaces.length });
    for (const { ns, ip, n } of spaces) {
      const host = `${this.#id}-h${n}`;
      await output(["ip", "netns", "add", ns]);
      await output([
        "ip",
        "link",
        "add",
        host,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      ]);
      await output(["ip", "link", "set", host, "master", this.#bridge, "up"]);
      await output(["ip", "-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
      await output(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      await output(["ip", "-n", ns, "link", "set", "lo", "up"]);
      if (ns === this.#dnsNs) continue;
      await Deno.mkdir(`${ETC_NETNS}/${ns}`, { recursive: true });
      await Deno.writeTextFile(
        `${ETC_NETNS}/${ns}/resolv.conf`,
        `nameserver ${this.#dnsIp}\noptions timeout:1 attempts:2\n`,
      );
    }
    await this.#writeHosts();
    this.#dns = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.#dnsNs,
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        `--addn-hosts=${this.#hostsFile}`,
        `--listen-address=${this.#dnsIp}`,
        "--bind-interfaces",
        "--port=53",
        `--pid-file=${this.#dir}/dnsmasq.pid`,
        "--user=root",
        // Answers are not cached anywhere, so a changed record is seen at the next lookup.
        "--local-ttl=0",
        "--log-facility=-",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await this.#awaitRecords(this.#ips);
  }

  async #writeHosts(): Promise<void> {
    const lines = this.#ips.map((ip) => `${ip} ${this.dnsName}\n`).join("");
    await Deno.writeTextFile(`${this.#hostsFile}.tmp`, lines);
    await Deno.rename(`${this.#hostsFile}.tmp`, this.#hostsFile);
  }

  /** Waits until a lookup from node 0's namespace answers exactly `ips`. */
  async #awaitRecords(ips: string[]): Promise<void> {
    const want = [...ips].sort().join(",");
    const deadline = Date.now() + DNS_READY_MS_MAX;
    let got = "";
    while (Date.now() < deadline) {
      got = await this.lookup(0).then((a) => a.sort().join(","), (e) => (e as Error).message);
      if (got === want) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`dnsmasq does not answer ${this.dnsName} with ${want} (last: ${got})`);
  }

  /** The A records of the DNS name, as node i's namespace resolves it (through its resolv.conf). */
  async lookup(i: number): Promise<string[]> {
    const script = `console.log(JSON.stringify(await Deno.resolveDns(${
      JSON.stringify(this.dnsName)
    }, "A")))`;
    const out = await output([...this.exec(i), Deno.execPath(), "eval", script]);
    return JSON.parse(out) as string[];
  }

  /**
   * Gives node i a new address (the old one is removed from its interface) and updates its DNS
   * record; resolves the new address. The node's process should be stopped first.
   */
  async moveNode(i: number): Promise<string> {
    const ns = this.namespace(i);
    const next = `${this.#subnet}.${this.#nextMovedHost++}`;
    await output(["ip", "-n", ns, "addr", "del", `${this.#ips[i]}/24`, "dev", "eth0"]);
    await output(["ip", "-n", ns, "addr", "add", `${next}/24`, "dev", "eth0"]);
    this.#ips[i] = next;
    await this.#writeHosts();
    // dnsmasq reads its --addn-hosts files again on SIGHUP.
    this.#dns!.kill("SIGHUP");
    await this.#awaitRecords(this.#ips);
    return next;
  }

  /**
   * Drops every packet `from` sends to `to` (one way); a rule in the receiving node's namespace,
   * or in the sender's when the receiver is the test process.
   */
  async drop(from: Endpoint, to: Endpoint): Promise<void> {
    if (from === to) throw new Error(`Cannot cut ${from} from itself`);
    const addr = (e: Endpoint) => e === "client" ? this.clientIp : this.ip(e);
    if (to !== "client") {
      await this.#iptables(to, ["-A", "INPUT", "-s", addr(from), "-j", "DROP"]);
    } else {
      await this.#iptables(from as number, ["-A", "OUTPUT", "-d", addr(to), "-j", "DROP"]);
    }
  }

  /** Cuts node i off from every other node and from the test process, both ways. */
  async isolate(i: number): Promise<void> {
    for (let j = 0; j < this.#ips.length; j++) {
      if (j === i) continue;
      await this.drop(i, j);
      await this.drop(j, i);
    }
    await this.drop(i, "client");
    await this.drop("client", i);
  }

  /** Removes every rule `drop` and `isolate` added. */
  async heal(): Promise<void> {
    for (let i = 0; i < this.#ips.length; i++) await this.#iptables(i, ["-F"]);
  }

  async #iptables(i: number, rule: string[]): Promise<void> {
    await output([...this.exec(i), "iptables", "-w", ...rule]);
  }

  /**
   * Removes everything the lab made: dnsmasq, the namespaces (with any process still in them), the
   * bridge, the /etc/netns entries and the temp dir. Safe to call twice and after a failed create.
   */
  async destroy(): Promise<void> {
    if (this.#dns !== null) {
      try {
        this.#dns.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await this.#dns.status.catch(() => {});
      this.#dns = null;
    }
    const spaces = [...this.#ips.map((_, i) => this.namespace(i)), this.#dnsNs];
    // Deleting a veth's end removes the pair at once; a namespace's own links go when it does,
    // which may be after `ip netns del` returns.
    for (let n = 0; n < spaces.length; n++) {
      await output(["ip", "link", "del", `${this.#id}-h${n}`]).catch(() => {});
    }
    for (const ns of spaces) {
      const pids = (await output(["ip", "netns", "pids", ns]).catch(() => "")).split(/\s+/)
        .filter((p) => p !== "").map(Number);
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone meanwhile.
        }
      }
      await output(["ip", "netns", "del", ns]).catch(() => {});
      await Deno.remove(`${ETC_NETNS}/${ns}`, { recursive: true }).catch(() => {});
    }
    await output(["ip", "link", "del", this.#bridge]).catch(() => {});
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
