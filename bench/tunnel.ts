/**
 * The tunnel suite (root): iperf3 TCP and UDP through two sluice endpoints
 * between two namespaces, and in the same run through the bare veth,
 * strongSwan (kernel-libipsec), wireguard-go and OpenVPN where installed,
 * all with the interop test bed's own scripts (../shared/interop, or
 * SLUICE_INTEROP), so every peer is measured the same way.
 *
 * Rounds: every peer once per round, in turn (see runTunnelSuite).
 *
 * UDP twice: as fast as the sender can (the bed's "-b 0", 1400-byte
 * datagrams, which every tunnel here fragments), and at a fixed offered rate
 * (`udpRate`, through the iperf3 wrapper in iperf3-fixed-rate/) with
 * 1300-byte datagrams that fit every tunnel, where what counts is how much
 * arrives and how much is lost.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median } from "./measure.js";

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
  /** Each round's TCP Mbit/s by label (every peer once per round). */
  rounds: Record<string, number>[];
  skipped: { label: string; reason: string }[];
  /** Lines "THREAD side tid name cpu%" of sluice's median round. */
  threads: string[];
}

/** Payload bytes of the fixed-rate UDP datagrams. */
export const FIXED_RATE_DATAGRAM = 1300;

const PEERS: { label: string; script: string }[] = [
  { label: "sluice", script: "sluice" },
  { label: "baseline-veth", script: "bench-baseline.sh" },
  { label: "strongswan-libipsec", script: "bench-strongswan.sh" },
  { label: "wireguard-go", script: "bench-wireguard-go.sh" },
  { label: "openvpn-udp-chacha", script: "bench-openvpn.sh" },
];

export function interopDir(): string | null {
  const candidates = [process.env.SLUICE_INTEROP, fileURLToPath(new URL("../../../shared/interop", import.meta.url))];
  for (const dir of candidates) if (dir && existsSync(join(dir, "bench-lib.sh"))) return dir;
  return null;
}

/**
 * Runs `repeat` rounds; each round measures every peer once (one TCP run,
 * one UDP run, one fixed-rate UDP run), in the same order. The machine's
 * speed drifts over minutes (bare veth: ±10% within an hour here), and a
 * peer measured ten minutes after sluice would see another machine:
 * interleaving gives each peer the same drift, and each round pairs sluice
 * with every peer measured minutes apart at most.
 */
export function runTunnelSuite(options: { repeat: number; duration: number; udpRate: string }, log: (line: string) => void): TunnelResult {
  if (process.getuid?.() !== 0) throw new Error("the tunnel suite needs root (network namespaces, TUN devices)");
  const interop = interopDir();
  if (!interop) throw new Error("the tunnel suite needs the interop scripts: ../shared/interop next to the repository, or SLUICE_INTEROP=DIR");
  const work = mkdtempSync(join(tmpdir(), "sluice-bench-tunnel-"));
  const env = { ...process.env, REPEAT: "1", DURATION: String(options.duration), SLUICE_INTEROP_RUN: join(work, "run") };
  const skipped: TunnelResult["skipped"] = [];
  const rateWrapper = fileURLToPath(new URL("../../bench/iperf3-fixed-rate", import.meta.url));
  const csvs: string[] = [];
  const threadsByRound: string[][] = [];
  try {
    // SLUICE_BENCH_PEERS=sluice,wireguard-go measures only those (while working on one).
    const only = process.env.SLUICE_BENCH_PEERS?.split(",");
    let peers = PEERS.filter((p) => only === undefined || only.includes(p.label));
    for (let round = 1; round <= options.repeat; round++) {
      const results = join(work, `results-${round}.csv`);
      for (const peer of peers) {
        log(`tunnel round ${round}/${options.repeat}: ${peer.label} (${options.duration} s TCP, UDP, UDP at ${options.udpRate})`);
        const command = peer.script === "sluice"
          ? [fileURLToPath(new URL("../../bench/tunnel-sluice.sh", import.meta.url)), interop]
          : [join(interop, peer.script)];
        const run = spawnSync("bash", command, { env: { ...env, RESULTS: results }, encoding: "utf8", maxBuffer: 1 << 24 });
        const output = `${run.stdout}${run.stderr}`;
        if (run.status !== 0) {
          const reason = failureReason(run.status, output);
          skipped.push({ label: peer.label, reason: `round ${round}: ${reason}` });
          log(`  skipped from now on: ${reason}`);
          peers = peers.filter((p) => p !== peer);
          continue;
        }
        if (peer.label === "sluice") threadsByRound[round - 1] = output.split("\n").filter((line) => line.startsWith("THREAD "));
        for (const line of output.split("\n")) if (/^\S+\s+(tcp|udp)\s+run\d/.test(line)) log(`  ${line.trim()}`);
        const fixed = spawnSync("bash", command, {
          // 1300-byte datagrams fit every tunnel's MTU (the bed's 1400 are fragmented by all of them).
          env: { ...env, RESULTS: results, MODES: "udp", UDP_LEN: String(FIXED_RATE_DATAGRAM), LABEL_SUFFIX: `@${options.udpRate}`, SLUICE_UDP_RATE: options.udpRate, PATH: `${rateWrapper}:${process.env.PATH ?? ""}` },
          encoding: "utf8", maxBuffer: 1 << 24,
        });
        const fixedOutput = `${fixed.stdout}${fixed.stderr}`;
        if (fixed.status !== 0) {
          const reason = failureReason(fixed.status, fixedOutput);
          skipped.push({ label: `${peer.label}@${options.udpRate}`, reason: `round ${round}: ${reason}` });
          log(`  skipped: ${reason}`);
        }
        for (const line of fixedOutput.split("\n")) if (/^\S+\s+udp\s+run\d/.test(line)) log(`  ${line.trim()}`);
      }
      csvs.push(existsSync(results) ? readFileSync(results, "utf8") : "");
    }
    const { rows, rounds } = summarize(csvs, options.udpRate);
    // Per-thread CPU of the round whose sluice TCP figure was the median one (the lower middle of an even count).
    const measured = rounds.map((r, i) => ({ i, tcp: r.tcp.get("sluice") })).filter((r) => r.tcp !== undefined && threadsByRound[r.i] !== undefined);
    measured.sort((a, b) => a.tcp! - b.tcp!);
    const threads = measured.length ? threadsByRound[measured[Math.floor((measured.length - 1) / 2)]!.i]! : [];
    return { udpRate: options.udpRate, rows, rounds: rounds.map((r) => Object.fromEntries(r.tcp)), skipped, threads };
  } finally {
    rmSync(work, { recursive: true, force: true });
    try {
      execFileSync("bash", [join(interop, "netns.sh"), "down"], { stdio: "ignore" });
    } catch {
      // Nothing left to take down.
    }
  }
}

/** Why a bed script failed: its last two lines of output, or its exit status. */
function failureReason(status: number | null, output: string): string {
  return output.trim().split("\n").filter(Boolean).slice(-2).join(" / ") || `exit ${status}`;
}

/** Medians over all rounds per peer, and each round's TCP figures (for the per-round ratios). */
function summarize(csvs: string[], udpRate: string): { rows: TunnelRow[]; rounds: { tcp: Map<string, number> }[] } {
  const byLabel = new Map<string, { tcp: number[]; udp: number[]; fixed: number[]; loss: number[] }>();
  const suffix = `@${udpRate}`;
  const rounds = csvs.map((csv) => {
    const tcpOfRound = new Map<string, number>();
    for (const line of csv.split("\n").slice(1)) {
      const [rowLabel, mode, , mbps, detail = ""] = line.split(",");
      if (!rowLabel || !mode || mbps === undefined) continue;
      const fixedRate = rowLabel.endsWith(suffix);
      const label = fixedRate ? rowLabel.slice(0, -suffix.length) : rowLabel;
      const entry = byLabel.get(label) ?? { tcp: [], udp: [], fixed: [], loss: [] };
      if (fixedRate) {
        entry.fixed.push(Number(mbps));
        const lost = /lost=([\d.]+)%/.exec(detail);
        if (lost) entry.loss.push(Number(lost[1]));
      } else if (mode === "tcp") {
        entry.tcp.push(Number(mbps));
        tcpOfRound.set(label, Number(mbps));
      } else entry.udp.push(Number(mbps));
      byLabel.set(label, entry);
    }
    return { tcp: tcpOfRound };
  });
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
    const peers = Object.entries(tcp).filter(([label, v]) => label !== "sluice" && label !== "baseline-veth" && v > 0).map(([, v]) => v);
    return sluice === undefined || sluice <= 0 || peers.length === 0 ? null : sluice / Math.max(...peers);
  });
}
