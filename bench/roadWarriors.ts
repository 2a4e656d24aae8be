/**
 * A thousand road warriors on one sluice gateway (`npm run bench -- ike
 * --ike-parts roadwarriors`, and a smaller run in npm test,
 * test/interop/roadwarriors-scale.test.ts): the real `sluice up` in B of the
 * interop bed (TUN, [[pool]] 10.100.0.0/16, a group PSK for any client ID)
 * and bench/roadWarriorLoad.ts in A, sluice's own IKE core acting as COUNT
 * clients of distinct identities, each asking for a virtual IP.
 *
 * Measured: setup rate (IKE SAs with their child SA per second, from the
 * first IKE_SA_INIT to the last child up, CONCURRENCY handshakes in flight),
 * the gateway's memory per client (resident size and V8 heap used, from
 * before the first client to all of them up, divided by COUNT), and traffic
 * through every SA (an ICMP echo from each client's virtual IP to B's inner
 * address, answered through the same SA and checked by the client). The
 * gateway's own view is checked too: `sluice status` lists COUNT
 * established IKE SAs each with a child that opened a packet,
 * sluice_ike_clients and sluice_pool_addresses count them, and no two
 * clients share an address.
 *
 * `gateway: "strongSwan"` runs the same clients against charon (5.9,
 * kernel-libipsec, swanctl `pools`, the same PSK), for the figures side by
 * side: its view comes from `swanctl --list-sas`, its memory is charon's
 * resident size (no V8 heap); its IKE SA table is sized for the load
 * (ikesa_table_size 1024) and its DoS thresholds raised as in bench/ike.ts.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Charon } from "../test/fixtures/interop/charon.js";
import { poolGateway } from "../test/fixtures/interop/roadWarrior.js";
import { TwoHosts, type Host } from "../test/fixtures/interop/topology.js";
import { SluiceDaemon } from "../test/fixtures/interop/sluice.js";
import { Proc } from "../test/fixtures/twoEndpoints.js";
import { NO_DOS_LIMITS } from "./loadClients.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const LOAD = join(ROOT, "dist/bench/roadWarriorLoad.js");
const GROUP_PSK = "sluice-bench-road-warrior-psk-0123456789";
const METRICS_PORT = 9562;

export interface RoadWarriorResult {
  gatewayKind: "sluice" | "strongSwan";
  clients: number;
  concurrency: number;
  /** IKE SAs (each with its child SA and virtual IP) the clients hold. */
  established: number;
  failures: Record<string, number>;
  setupSeconds: number;
  /** IKE SAs with their child SA per second. */
  setupRate: number;
  /** Clients whose echo came back through their own SA, opened and checked. */
  echoed: number;
  echoSends: number;
  distinctVips: number;
  /** The gateway's view. */
  gateway: {
    ikeSas: number;
    childrenWithTraffic: number;
    clientsMetric: number;
    poolOnline: number;
    rssBeforeMiB: number;
    rssAfterMiB: number;
    /** sluice only (charon has no V8 heap). */
    heapBeforeMiB?: number;
    heapAfterMiB?: number;
    /** (after − before) ÷ clients. */
    rssPerClientKiB: number;
    heapPerClientKiB?: number;
  };
}

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) * 1024;
}

/** What a gateway under test offers the run. */
interface Gateway {
  pid: number;
  /** IKE SAs established with one child SA, and how many of those children carried packets both ways. */
  view(): Promise<{ ikeSas: number; childrenWithTraffic: number; clientsMetric: number; poolOnline: number }>;
  heapBytes(): Promise<number | undefined>;
  stop(): Promise<void>;
}

async function sluiceGateway(b: Host, count: number): Promise<Gateway> {
  const extra = [
    `[[pool]]\nname = "warriors"\naddresses = ["10.100.0.0/16"]`,
    NO_DOS_LIMITS,
    // Two SA records per child SA, and room for rekeys: the default 4096 holds 2,000 clients.
    `[engine]\nmax_sas = ${Math.max(4096, 2 * count + 256)}`,
  ].join("\n");
  const daemon = await SluiceDaemon.start(b, [{
    name: "warriors",
    selectors: ["10.100.0.0/16"],
    localSelectors: [b.site],
    localId: "gw.rw.sluice.test",
    remoteId: "%any",
    psk: GROUP_PSK,
    start: "none",
    ike: { pools: ["warriors"] },
  }], { extra, metricsPort: METRICS_PORT });
  await daemon.routed("10.100.0.0/16");
  // One scrape first: prom-client's and the metrics server's own allocations are not the clients'.
  await daemon.metrics();
  return {
    pid: daemon.pid,
    async view() {
      const up = (await daemon.status()).ike.filter((sa) => sa.state === "established" && sa.children.length === 1);
      return {
        ikeSas: up.length,
        childrenWithTraffic: up.filter((sa) => sa.children[0]!.packetsIn > 0 && sa.children[0]!.packetsOut > 0).length,
        clientsMetric: await daemon.counter("sluice_ike_clients", { peer: "warriors", vip: "yes" }),
        poolOnline: await daemon.counter("sluice_pool_addresses", { pool: "warriors", state: "online" }),
      };
    },
    heapBytes: () => daemon.counter("nodejs_heap_size_used_bytes"),
    stop: () => daemon.stop(),
  };
}

async function strongSwanGateway(b: Host): Promise<Gateway> {
  const charon = await Charon.start(b.ns, {
    settings: ["block_threshold = 100000", "cookie_threshold = 100000", "init_limit_half_open = 0", "ikesa_table_size = 1024", "ikesa_table_segments = 16"],
    // A line per SA at the default levels is what sluice logs too; less would flatter neither.
    logLevels: { ike: 1, cfg: 1, chd: 1, net: 1, knl: 1 },
  });
  await charon.load(poolGateway({ local: b.address, id: "gw.rw.sluice.test", pool4: "10.100.0.0/16", localTs: [b.site], groupPsk: GROUP_PSK }));
  return {
    pid: charon.pid!,
    async view() {
      const up = (await charon.listSas()).filter((sa) => sa.state === "ESTABLISHED" && sa.children.length === 1);
      const pools = await charon.swanctl(["--list-pools", "--leases"]);
      // "pool4   10.100.0.0   ONLINE / OFFLINE / SIZE" (swanctl's list-pools line).
      const online = /pool4\s+\S+\s+(\d+)\s*\/\s*(\d+)\s*\/\s*(\d+)/.exec(pools.stdout);
      return {
        ikeSas: up.length,
        childrenWithTraffic: up.filter((sa) => sa.children[0]!.packetsIn > 0 && sa.children[0]!.packetsOut > 0).length,
        clientsMetric: up.length,
        poolOnline: Number(online?.[1] ?? Number.NaN),
      };
    },
    heapBytes: () => Promise.resolve(undefined),
    stop: () => charon.stop(),
  };
}

/**
 * Runs COUNT clients against one gateway (sluice by default) and returns
 * what was measured; throws if the bed cannot be made or the clients do not
 * report. The caller judges the result.
 */
export async function runRoadWarriors(options: { count: number; concurrency: number; gateway?: "sluice" | "strongSwan" }, log: (line: string) => void = () => {}): Promise<RoadWarriorResult> {
  const { count, concurrency } = options;
  const kind = options.gateway ?? "sluice";
  const bed = await TwoHosts.create();
  let gateway: Gateway | undefined;
  let clients: Proc | undefined;
  try {
    gateway = kind === "sluice" ? await sluiceGateway(bed.b, count) : await strongSwanGateway(bed.b);
    const heapBefore = await gateway.heapBytes();
    const rssBefore = rssBytes(gateway.pid);

    clients = new Proc(spawn("ip", ["netns", "exec", bed.a.ns, process.execPath, LOAD, bed.b.address, String(count), String(concurrency), GROUP_PSK, bed.b.inner], { stdio: ["pipe", "pipe", "pipe"] }), "road-warrior clients");
    const established = await clients.waitForEvent("established", Math.max(120_000, count * 200));
    log(`road warriors (${kind} gateway): ${String(established.established)} of ${count} up in ${Number(established.seconds).toFixed(1)} s (${Number(established.rate).toFixed(0)}/s), failures ${JSON.stringify(established.failures)}`);
    const echoed = await clients.waitForEvent("echoed", 60_000);
    log(`road warriors (${kind} gateway): ${String(echoed.answered)} echoes answered through their own SA (${String(echoed.sends)} sent)`);

    const view = await gateway.view();
    const rssAfter = rssBytes(gateway.pid);
    const heapAfter = await gateway.heapBytes();
    const mib = (bytes: number | undefined): number | undefined => (bytes === undefined ? undefined : bytes / 2 ** 20);
    const result: RoadWarriorResult = {
      gatewayKind: kind,
      clients: count,
      concurrency,
      established: Number(established.established),
      failures: established.failures as Record<string, number>,
      setupSeconds: Number(established.seconds),
      setupRate: Number(established.rate),
      echoed: Number(echoed.answered),
      echoSends: Number(echoed.sends),
      distinctVips: Number(established.distinctVips),
      gateway: {
        ...view,
        rssBeforeMiB: rssBefore / 2 ** 20,
        rssAfterMiB: rssAfter / 2 ** 20,
        heapBeforeMiB: mib(heapBefore),
        heapAfterMiB: mib(heapAfter),
        rssPerClientKiB: (rssAfter - rssBefore) / count / 1024,
        heapPerClientKiB: heapBefore === undefined || heapAfter === undefined ? undefined : (heapAfter - heapBefore) / count / 1024,
      },
    };
    log(`road warriors (${kind} gateway): ${view.ikeSas} IKE SAs, ${view.childrenWithTraffic} with traffic both ways; RSS ${result.gateway.rssBeforeMiB.toFixed(1)} → ${result.gateway.rssAfterMiB.toFixed(1)} MiB (${result.gateway.rssPerClientKiB.toFixed(1)} KiB/client)`);
    return result;
  } finally {
    clients?.kill("SIGKILL");
    await gateway?.stop();
    await bed.destroy();
  }
}

/** The bench table: the runs side by side (sluice's, then strongSwan's). */
export function formatRoadWarriors(runs: RoadWarriorResult[]): string {
  const first = runs[0];
  if (first === undefined) return "";
  const cell = (r: RoadWarriorResult, what: string): string => {
    const g = r.gateway;
    switch (what) {
      case "up": return `${r.established} of ${r.clients}${Object.keys(r.failures).length ? ` ${JSON.stringify(r.failures)}` : ""}`;
      case "rate": return `${r.setupRate.toFixed(0)}/s (${r.setupSeconds.toFixed(1)} s)`;
      case "echo": return `${r.echoed} of ${r.established}`;
      case "gw": return `${g.childrenWithTraffic} of ${g.ikeSas}`;
      case "rss": return `${g.rssPerClientKiB.toFixed(1)} KiB (${g.rssBeforeMiB.toFixed(0)} → ${g.rssAfterMiB.toFixed(0)} MiB)`;
      default: return g.heapPerClientKiB === undefined ? "-" : `${g.heapPerClientKiB.toFixed(1)} KiB (${g.heapBeforeMiB!.toFixed(0)} → ${g.heapAfterMiB!.toFixed(0)} MiB)`;
    }
  };
  const rows: [string, string][] = [
    ["clients up", "up"], ["setup rate", "rate"], ["echo through own SA", "echo"], ["gateway: SAs with traffic", "gw"], ["gateway RSS per client", "rss"], ["gateway V8 heap per client", "heap"],
  ];
  const header = ["", ...runs.map((r) => `${r.gatewayKind} gateway`)];
  const table = [header, ...rows.map(([label, key]) => [label, ...runs.map((r) => cell(r, key))])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return [
    `road warriors held at once on one gateway (sluice's IKE core as the clients: PSK, X25519, ChaCha20-Poly1305, a virtual IP and one child SA each, ${first.concurrency} handshakes in flight):`,
    ...table.map((row) => `  ${row.map((c, i) => c.padEnd(widths[i]!)).join("   ")}`),
  ].join("\n");
}
