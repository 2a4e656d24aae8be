/**
 * A thousand road warriors on one sluice gateway (`npm run bench -- ike
 * --ike-parts roadwarriors`, and a smaller run in npm test,
 * test/interop-roadwarriors-scale.test.ts): the real `sluice up` in B of the
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
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TwoHosts } from "../test/fixtures/interop/topology.js";
import { SluiceDaemon } from "../test/fixtures/interop/sluice.js";
import { Proc } from "../test/fixtures/twoEndpoints.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const LOAD = join(ROOT, "dist/bench/roadWarriorLoad.js");
const GROUP_PSK = "sluice-bench-road-warrior-psk-0123456789";
/** The clients come from one address, many IKE SAs at once: what sluice's DoS defence is there to stop. */
const NO_DOS_LIMITS = "[ike]\ncookie_threshold = 0\nblock_threshold = 0\ninit_limit_half_open = 0\ninit_rate_per_source = 0";
const METRICS_PORT = 9562;

export interface RoadWarriorResult {
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
    heapBeforeMiB: number;
    heapAfterMiB: number;
    /** (after − before) ÷ clients. */
    rssPerClientKiB: number;
    heapPerClientKiB: number;
  };
}

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) * 1024;
}

/**
 * Runs COUNT clients against one gateway and returns what was measured;
 * throws if the bed cannot be made. The caller judges the result.
 */
export async function runRoadWarriors(options: { count: number; concurrency: number }, log: (line: string) => void = () => {}): Promise<RoadWarriorResult> {
  const { count, concurrency } = options;
  const bed = await TwoHosts.create();
  let gateway: SluiceDaemon | undefined;
  let clients: Proc | undefined;
  try {
    const extra = [
      `[[pool]]\nname = "warriors"\naddresses = ["10.100.0.0/16"]`,
      NO_DOS_LIMITS,
      // Two SA records per child SA, and room for rekeys: the default 4096 holds 2,000 clients.
      `[engine]\nmax_sas = ${Math.max(4096, 2 * count + 256)}`,
    ].join("\n");
    gateway = await SluiceDaemon.start(bed.b, [{
      name: "warriors",
      selectors: ["10.100.0.0/16"],
      localSelectors: [bed.b.site],
      localId: "gw.rw.sluice.test",
      remoteId: "%any",
      psk: GROUP_PSK,
      start: "none",
      ike: { pools: ["warriors"] },
    }], { extra, metricsPort: METRICS_PORT });
    await gateway.routed("10.100.0.0/16");
    // One scrape first: prom-client's and the metrics server's own allocations are not the clients'.
    await gateway.metrics();
    const heapBefore = await gateway.counter("nodejs_heap_size_used_bytes");
    const rssBefore = rssBytes(gateway.pid);

    clients = new Proc(spawn("ip", ["netns", "exec", bed.a.ns, process.execPath, LOAD, bed.b.address, String(count), String(concurrency), GROUP_PSK, bed.b.inner], { stdio: ["pipe", "pipe", "pipe"] }), "road-warrior clients");
    const established = await clients.waitForEvent("established", Math.max(120_000, count * 200));
    log(`road warriors: ${String(established.established)} of ${count} up in ${Number(established.seconds).toFixed(1)} s (${Number(established.rate).toFixed(0)}/s), failures ${JSON.stringify(established.failures)}`);
    const echoed = await clients.waitForEvent("echoed", 60_000);
    log(`road warriors: ${String(echoed.answered)} echoes answered through their own SA (${String(echoed.sends)} sent)`);

    const status = await gateway.status();
    const up = status.ike.filter((sa) => sa.state === "established" && sa.children.length === 1);
    const rssAfter = rssBytes(gateway.pid);
    const heapAfter = await gateway.counter("nodejs_heap_size_used_bytes");
    const result: RoadWarriorResult = {
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
        ikeSas: up.length,
        childrenWithTraffic: up.filter((sa) => sa.children[0]!.packetsIn > 0 && sa.children[0]!.packetsOut > 0).length,
        clientsMetric: await gateway.counter("sluice_ike_clients", { peer: "warriors", vip: "yes" }),
        poolOnline: await gateway.counter("sluice_pool_addresses", { pool: "warriors", state: "online" }),
        rssBeforeMiB: rssBefore / 2 ** 20,
        rssAfterMiB: rssAfter / 2 ** 20,
        heapBeforeMiB: heapBefore / 2 ** 20,
        heapAfterMiB: heapAfter / 2 ** 20,
        rssPerClientKiB: (rssAfter - rssBefore) / count / 1024,
        heapPerClientKiB: (heapAfter - heapBefore) / count / 1024,
      },
    };
    log(`road warriors: gateway ${result.gateway.ikeSas} IKE SAs, ${result.gateway.childrenWithTraffic} with traffic both ways; RSS ${result.gateway.rssBeforeMiB.toFixed(1)} → ${result.gateway.rssAfterMiB.toFixed(1)} MiB (${result.gateway.rssPerClientKiB.toFixed(1)} KiB/client), heap ${result.gateway.heapBeforeMiB.toFixed(1)} → ${result.gateway.heapAfterMiB.toFixed(1)} MiB (${result.gateway.heapPerClientKiB.toFixed(1)} KiB/client)`);
    return result;
  } finally {
    clients?.kill("SIGKILL");
    await gateway?.stop();
    await bed.destroy();
  }
}

/** The bench table's lines. */
export function formatRoadWarriors(r: RoadWarriorResult): string {
  const g = r.gateway;
  return [
    `road warriors on one sluice gateway (PSK, X25519, ChaCha20-Poly1305, a virtual IP and one child SA each; ${r.concurrency} handshakes in flight):`,
    `  clients up           ${r.established} of ${r.clients}${Object.keys(r.failures).length ? ` (failures ${JSON.stringify(r.failures)})` : ""}, ${r.distinctVips} distinct virtual IPs`,
    `  setup                ${r.setupSeconds.toFixed(1)} s, ${r.setupRate.toFixed(0)} IKE SAs/s`,
    `  traffic              ${r.echoed} of ${r.established} echoes answered through their own SA; the gateway counts ${g.childrenWithTraffic} child SAs with packets both ways`,
    `  gateway memory       RSS ${g.rssBeforeMiB.toFixed(1)} → ${g.rssAfterMiB.toFixed(1)} MiB (${g.rssPerClientKiB.toFixed(1)} KiB per client), V8 heap ${g.heapBeforeMiB.toFixed(1)} → ${g.heapAfterMiB.toFixed(1)} MiB (${g.heapPerClientKiB.toFixed(1)} KiB per client)`,
  ].join("\n");
}
