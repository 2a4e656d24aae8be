/**
 * `npm run bench -- ike --flood` (root): the IKE_SA_INIT flood of
 * test/fixtures/interop/flood.ts, long, against a sluice responder and a
 * strongSwan responder in turn (round by round: sluice, strongSwan, sluice,
 * …), each with its own DoS defaults (sluice: cookie_threshold 30,
 * block_threshold 5, init_limit_half_open 1000, init_rate_per_source 20;
 * strongSwan 5.9: cookie_threshold 30, block_threshold 5, no global cap),
 * while a strongSwan initiator in the other namespace connects, rekeys its
 * child SA and its IKE SA, and disconnects, over and over.
 *
 * Figures per round: what the flooder offered (per second), what reached the
 * responder's host and what it answered (nftables counters), what the
 * kernel dropped at the responder's full socket, the responder's CPU (% of
 * one core), its memory before, at the peak and at the end of the flood, and
 * the legitimate handshakes (completed / attempted, median and worst time)
 * and rekeys (median time of the child's and of the IKE SA's).
 * The flooder, both daemons and the legitimate initiator share the 2 cores.
 */
import { runFlood, type FloodResult } from "../test/fixtures/interop/flood.js";
import { median } from "./measure.js";

export interface FloodSuiteResult {
  rate: number;
  seconds: number;
  rounds: FloodResult[];
}

export async function runFloodSuite(options: { rounds: number; rate: number; seconds: number }, log: (line: string) => void): Promise<FloodSuiteResult> {
  const rounds: FloodResult[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const responder of ["sluice", "strongSwan"] as const) {
      rounds.push(await runFlood(responder, { rate: options.rate, seconds: options.seconds, log: (line) => log(`flood round ${round}: ${line}`) }));
    }
  }
  return { ...options, rounds };
}

export function formatFloodTable(result: FloodSuiteResult): string {
  const header = ["responder", "offered/s", "arrived/s", "answered/s", "socket drops", "CPU %", "RSS MB before → peak → end", "legit ok", "legit p50 ms", "legit max ms", "child rekey p50", "IKE rekey p50"];
  const rows: string[][] = [];
  for (const responder of ["sluice", "strongSwan"] as const) {
    for (const r of result.rounds.filter((x) => x.responder === responder)) {
      const seconds = r.offered.seconds;
      rows.push([
        responder,
        r.offered.rate.toFixed(0),
        (r.arrived / seconds).toFixed(0),
        (r.answered / seconds).toFixed(0),
        String(r.socketDrops),
        r.cpuPercent.toFixed(0),
        `${r.rssMb.before.toFixed(1)} → ${r.rssMb.peak.toFixed(1)} → ${r.rssMb.end.toFixed(1)}`,
        `${r.legit.completed}/${r.legit.attempts}`,
        r.legit.ms.length ? median(r.legit.ms).toFixed(0) : "—",
        r.legit.ms.length ? Math.max(...r.legit.ms).toFixed(0) : "—",
        r.legit.childRekeyMs.length ? `${median(r.legit.childRekeyMs).toFixed(0)} (${r.legit.childRekeyMs.length})` : "—",
        r.legit.ikeRekeyMs.length ? `${median(r.legit.ikeRekeyMs).toFixed(0)} (${r.legit.ikeRekeyMs.length})` : "—",
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const lines = [fmt(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)];
  const ratio = (responder: FloodResult["responder"], f: (r: FloodResult) => number): number => median(result.rounds.filter((r) => r.responder === responder).map(f));
  lines.push(
    "",
    `medians: answered/s sluice ${ratio("sluice", (r) => r.answered / r.offered.seconds).toFixed(0)}, strongSwan ${ratio("strongSwan", (r) => r.answered / r.offered.seconds).toFixed(0)};` +
      ` CPU sluice ${ratio("sluice", (r) => r.cpuPercent).toFixed(0)}%, strongSwan ${ratio("strongSwan", (r) => r.cpuPercent).toFixed(0)}%;` +
      ` legit handshake p50 sluice ${ratio("sluice", (r) => (r.legit.ms.length ? median(r.legit.ms) : Number.NaN)).toFixed(0)} ms, strongSwan ${ratio("strongSwan", (r) => (r.legit.ms.length ? median(r.legit.ms) : Number.NaN)).toFixed(0)} ms`,
  );
  const sluiceDrops = result.rounds.find((r) => r.sluiceDrops)?.sluiceDrops;
  if (sluiceDrops) lines.push(`sluice's drop counters (first round): ${Object.entries(sluiceDrops).map(([k, v]) => `${k} ${v}`).join(", ")}; log lines during the flood: ${result.rounds.filter((r) => r.responder === "sluice").map((r) => r.sluiceLogLines).join(", ")}`);
  return lines.join("\n");
}
