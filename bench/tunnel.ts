/**
 * The tunnel suite (root): iperf3 TCP and UDP through two sluice endpoints
 * between two namespaces, and in the same run through the bare veth,
 * strongSwan (kernel-libipsec), wireguard-go and OpenVPN where installed,
 * every path set up by tunnelPaths.ts on the interop bed's two-namespace
 * topology and measured by iperf.ts alike.
 *
 * Rounds: every path once per round, in turn (see runTunnelSuite).
 *
 * UDP twice: as fast as the sender can ("-b 0", 1400-byte datagrams, which
 * every tunnel here fragments), and at a fixed offered rate (`udpRate`)
 * with 1300-byte datagrams that fit every tunnel, where what counts is how
 * much arrives and how much is lost.
 */
import { median } from "./measure.js";
import { describeRun, iperfRuns, threadTicks, type IperfRun } from "./iperf.js";
import { missingFor, TUNNEL_PATHS } from "./tunnelPaths.js";

export interface TunnelRow {
  suite: "tunnel";
  label: string;
  tcpMbps: number | null;
  udpMbps: number | null;
  /** UDP at the fixed offered rate: Mbit/s that arrived, and the loss in percent (medians). */
  udpFixedMbps: number | null;
  udpFixedLoss: number | null;
  /** sluice's TCP median divided by this row's. */
  sluiceTcpRatio: number | null;
  runs: number;
}

export interface TunnelResult {
  /** The fixed UDP rate offered (iperf3 -b). */
  udpRate: string;
  rows: TunnelRow[];
  /** Each round's TCP Mbit/s by label (every path once per round). */
  rounds: Record<string, number>[];
  skipped: { label: string; reason: string }[];
  /** Lines "THREAD side tid name cpu%" of sluice's median round. */
  threads: string[];
}

/** Payload bytes of the fixed-rate UDP datagrams. */
export const FIXED_RATE_DATAGRAM = 1300;
/** Clock ticks per second of /proc's CPU times. */
const USER_HZ = 100;
/** Payload bytes of the as-fast-as-possible UDP datagrams. */
const MAX_RATE_DATAGRAM = 1400;

/**
 * Per-thread CPU of sluice's two endpoints over the TCP run, as
 * "THREAD a tid=N main|worker|helper cpu=P%" (a = the iperf3 client side).
 * The main thread is the one whose tid is the pid; the busy others are the
 * kernel workers (libuv's and V8's helper threads idle at 0-1%).
 */
function threadLines(pids: number[], before: Map<number, { ticks: number }>[], seconds: number): string[] {
  const lines: string[] = [];
  pids.forEach((pid, i) => {
    for (const [tid, { ticks }] of threadTicks(pid)) {
      const cpu = (100 * (ticks - (before[i]!.get(tid)?.ticks ?? 0))) / (USER_HZ * seconds);
      if (cpu >= 1) lines.push(`THREAD ${i === 0 ? "a" : "b"} tid=${tid} ${tid === pid ? "main" : cpu >= 5 ? "worker" : "helper"} cpu=${cpu.toFixed(0)}%`);
    }
  });
  return lines;
}

/**
 * Runs `repeat` rounds; each round measures every path once (one TCP run,
 * one UDP run, one fixed-rate UDP run, on one setup), in the same order.
 * The machine's speed drifts over minutes (bare veth: ±10% within an hour
 * here), and a path measured ten minutes after sluice would see another
 * machine: interleaving gives each path the same drift, and each round
 * pairs sluice with every path measured minutes apart at most.
 */
export async function runTunnelSuite(options: { repeat: number; duration: number; udpRate: string }, log: (line: string) => void): Promise<TunnelResult> {
  if (process.getuid?.() !== 0) throw new Error("the tunnel suite needs root (network namespaces, TUN devices)");
  const skipped: TunnelResult["skipped"] = [];
  // SLUICE_BENCH_PEERS=sluice,wireguard-go measures only those (while working on one).
  const only = process.env.SLUICE_BENCH_PEERS?.split(",");
  let paths = TUNNEL_PATHS.filter((p) => only === undefined || only.includes(p.label)).filter((p) => {
    const missing = missingFor(p);
    if (missing) skipped.push({ label: p.label, reason: missing });
    return missing === null;
  });
  const results: { label: string; round: number; kind: "tcp" | "udp" | "fixed"; run: IperfRun }[] = [];
  const threadsByRound: string[][] = [];
  for (let round = 1; round <= options.repeat; round++) {
    for (const path of paths) {
      log(`tunnel round ${round}/${options.repeat}: ${path.label} (${options.duration} s TCP, UDP, UDP at ${options.udpRate})`);
      let running;
      try {
        running = await path.start();
      } catch (error) {
        const reason = (error as Error).message.split("\n").slice(0, 2).join(" / ");
        skipped.push({ label: path.label, reason: `round ${round}: ${reason}` });
        log(`  skipped from now on: ${reason}`);
        paths = paths.filter((p) => p !== path);
        continue;
      }
      try {
        const before = running.pids.map((pid) => threadTicks(pid));
        const started = performance.now();
        const [tcp] = await iperfRuns(running, [{ mode: "tcp" }], options.duration);
        if (path.label === "sluice") threadsByRound[round - 1] = threadLines(running.pids, before, (performance.now() - started) / 1000);
        const [udp, fixed] = await iperfRuns(running, [
          { mode: "udp", rate: "0", length: MAX_RATE_DATAGRAM },
          { mode: "udp", rate: options.udpRate, length: FIXED_RATE_DATAGRAM },
        ], options.duration);
        for (const [kind, run] of [["tcp", tcp!], ["udp", udp!], ["fixed", fixed!]] as const) {
          results.push({ label: path.label, round, kind, run });
          log(`  ${describeRun(kind === "fixed" ? `${path.label}@${options.udpRate}` : path.label, run)}`);
        }
      } finally {
        await running.stop();
      }
    }
  }
  const { rows, rounds } = summarize(results, options.repeat);
  // Per-thread CPU of the round whose sluice TCP figure was the median one (the lower middle of an even count).
  const measured = rounds.map((r, i) => ({ i, tcp: r.get("sluice") })).filter((r) => r.tcp !== undefined && threadsByRound[r.i] !== undefined);
  measured.sort((a, b) => a.tcp! - b.tcp!);
  const threads = measured.length ? threadsByRound[measured[Math.floor((measured.length - 1) / 2)]!.i]! : [];
  return { udpRate: options.udpRate, rows, rounds: rounds.map((r) => Object.fromEntries(r)), skipped, threads };
}

/** Medians over all rounds per path, and each round's TCP figures (a failed run counts as missing). */
function summarize(results: { label: string; round: number; kind: "tcp" | "udp" | "fixed"; run: IperfRun }[], repeat: number): { rows: TunnelRow[]; rounds: Map<string, number>[] } {
  const rounds = Array.from({ length: repeat }, () => new Map<string, number>());
  const byLabel = new Map<string, { tcp: number[]; udp: number[]; fixed: number[]; loss: number[] }>();
  for (const { label, round, kind, run } of results) {
    const entry = byLabel.get(label) ?? { tcp: [], udp: [], fixed: [], loss: [] };
    byLabel.set(label, entry);
    if (run.error) continue;
    if (kind === "tcp") {
      entry.tcp.push(run.mbps);
      rounds[round - 1]!.set(label, run.mbps);
    } else if (kind === "udp") entry.udp.push(run.mbps);
    else {
      entry.fixed.push(run.mbps);
      if (run.lostPercent !== undefined) entry.loss.push(run.lostPercent);
    }
  }
  const sluiceTcp = byLabel.get("sluice")?.tcp;
  const sluiceMedian = sluiceTcp?.length ? median(sluiceTcp) : null;
  const rows = [...byLabel].map(([label, { tcp, udp, fixed, loss }]): TunnelRow => {
    const tcpMbps = tcp.length ? median(tcp) : null;
    return {
      suite: "tunnel", label, tcpMbps, udpMbps: udp.length ? median(udp) : null,
      udpFixedMbps: fixed.length ? median(fixed) : null, udpFixedLoss: loss.length ? median(loss) : null,
      sluiceTcpRatio: sluiceMedian !== null && tcpMbps ? sluiceMedian / tcpMbps : null,
      runs: tcp.length,
    };
  });
  return { rows, rounds };
}

/**
 * Each round's sluice TCP figure divided by the best other tunnel's in the
 * same round (the bare veth is no tunnel); null for a round missing either
 * (a failed iperf3 run counts 0 Mbit/s: missing too).
 */
export function roundRatios(result: TunnelResult): (number | null)[] {
  return result.rounds.map((tcp) => {
    const sluice = tcp["sluice"];
    const peers = Object.entries(tcp).filter(([label, v]) => !label.startsWith("sluice") && label !== "baseline-veth" && v > 0).map(([, v]) => v);
    return sluice === undefined || sluice <= 0 || peers.length === 0 ? null : sluice / Math.max(...peers);
  });
}
