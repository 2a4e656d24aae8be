/**
 * `npm run bench [-- SUITE …] [--rounds N] [--time MS]`: runs the suites
 * (default: all that can run here), prints one table and writes
 * bench/results/latest.json.
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { runCryptoSuite, type CryptoRow } from "./crypto.js";

const SUITES = ["crypto"] as const;
type Suite = (typeof SUITES)[number];

interface Args {
  suites: Suite[];
  rounds: number;
  timeMs: number;
}

function parseArgs(argv: string[]): Args {
  const suites: Suite[] = [];
  let rounds = 5;
  let timeMs = 250;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--rounds") rounds = positiveInt("--rounds", argv[++i]);
    else if (arg === "--time") timeMs = positiveInt("--time", argv[++i]);
    else if ((SUITES as readonly string[]).includes(arg)) suites.push(arg as Suite);
    else throw new Error(`unknown argument ${arg}; suites: ${SUITES.join(", ")}; options: --rounds N, --time MS`);
  }
  return { suites: suites.length ? suites : [...SUITES], rounds, timeMs };
}

function positiveInt(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} needs a positive integer, got ${String(value)}`);
  return n;
}

function formatCryptoTable(rows: CryptoRow[]): string {
  const header = ["size", "op", "implementation", "Gbit/s", "packets/s", "ns/packet", "sluice batch ×"];
  const lines = rows.map((r) => [
    `${r.size} B`, r.op, r.impl,
    r.gbitPerSecond.toFixed(2),
    r.packetsPerSecond >= 1e6 ? `${(r.packetsPerSecond / 1e6).toFixed(2)} M` : `${(r.packetsPerSecond / 1e3).toFixed(0)} k`,
    r.nsPerPacket.toFixed(0),
    r.impl === "sluice batch" ? "—" : r.batchRatio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const out = [fmt(header), widths.map((w) => "-".repeat(w)).join("  ")];
  let last = "";
  for (let i = 0; i < lines.length; i++) {
    const group = `${rows[i]!.size}|${rows[i]!.op}`;
    if (last && group !== last) out.push("");
    last = group;
    out.push(fmt(lines[i]!));
  }
  return out.join("\n");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const results: { crypto?: CryptoRow[] } = {};
  if (args.suites.includes("crypto")) {
    results.crypto = await runCryptoSuite({ rounds: args.rounds, timeMs: args.timeMs }, undefined, log);
    console.log(`\ncrypto: one core, median of ${args.rounds} rounds; "sluice batch ×" = sluice batch throughput / this row's\n`);
    console.log(formatCryptoTable(results.crypto));
  }
  const report = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    options: args,
    ...results,
  };
  const dir = new URL("../../bench/results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL("latest.json", dir), `${JSON.stringify(report, null, 2)}\n`);
  log(`\nwrote bench/results/latest.json`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
