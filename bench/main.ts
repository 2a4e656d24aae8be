/**
 * `npm run bench [-- SUITE …] [--rounds N] [--time MS]`: runs the suites
 * (default: crypto and engine; `tunnel` and `ike` need root and run when named;
 * `crypto-aes` is the crypto suite's AES-256-GCM part alone),
 * prints the tables and writes bench/results/latest.json.
 */
import { writeFileSync, mkdirSync, readFileSync, existsSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { runCryptoSuite, CRYPTO_SIZES, type CryptoRow } from "./crypto.js";
import { runAesCryptoSuite, formatAesTable, type AesCryptoRow } from "./cryptoAes.js";
import { runEngineSuite, type EngineRow, type DispatchRow } from "./engine.js";
import { runTunnelSuite, roundRatios, FIXED_RATE_DATAGRAM, type TunnelResult } from "./tunnel.js";
import { runIkeSuite, formatIkeTable, IKE_PARTS, type IkeResult, type IkePart } from "./ike.js";
import { runFloodSuite, formatFloodTable, type FloodSuiteResult } from "./ikeFlood.js";
import { formatGroupedTable } from "./measure.js";

/** Suites run by default; "tunnel" and "ike" need root and run only when named. */
const SUITES = ["crypto", "crypto-aes", "engine", "tunnel", "ike"] as const;
const DEFAULT_SUITES = ["crypto", "engine"] as const;
type Suite = (typeof SUITES)[number];

interface Args {
  suites: Suite[];
  rounds: number;
  timeMs: number;
  /** The tunnel suite's fixed UDP rate (iperf3 -b). */
  udpRate: string;
  /** The ike suite: handshakes per round, and how many at once. */
  handshakes: number;
  concurrency: number;
  /** The ike suite's parts (--ike-parts, IKE_PARTS). */
  ikeParts: IkePart[] | undefined;
  /** The ike suite: add the IKE_SA_INIT flood (ikeFlood.ts); its rate (0 = as fast as the flooder goes) and length. */
  flood: boolean;
  floodRate: number;
  floodSeconds: number;
}

function parseArgs(argv: string[]): Args {
  const suites: Suite[] = [];
  let rounds = 5;
  let timeMs = 250;
  let udpRate = "500M";
  let handshakes = 2000;
  let concurrency = 32;
  let ikeParts: IkePart[] | undefined;
  let flood = false;
  let floodRate = 20000;
  let floodSeconds = 20;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--rounds") rounds = positiveInt("--rounds", argv[++i]);
    else if (arg === "--time") timeMs = positiveInt("--time", argv[++i]);
    else if (arg === "--udp-rate") {
      udpRate = argv[++i] ?? "";
      if (!/^\d+[KMG]?$/.test(udpRate)) throw new Error(`--udp-rate needs an iperf3 rate like 500M, got ${udpRate || "nothing"}`);
    }
    else if (arg === "--handshakes") handshakes = positiveInt("--handshakes", argv[++i]);
    else if (arg === "--concurrency") concurrency = positiveInt("--concurrency", argv[++i]);
    else if (arg === "--ike-parts") {
      ikeParts = (argv[++i] ?? "").split(",") as IkePart[];
      if (ikeParts.some((p) => !IKE_PARTS.includes(p))) throw new Error(`--ike-parts takes ${IKE_PARTS.join(", ")} (comma-separated), got ${argv[i]}`);
    }
    else if (arg === "--flood") flood = true;
    else if (arg === "--flood-rate") {
      floodRate = Number(argv[++i]);
      if (!Number.isInteger(floodRate) || floodRate < 0) throw new Error(`--flood-rate needs requests per second (0 = as fast as possible), got ${String(argv[i])}`);
    }
    else if (arg === "--flood-seconds") floodSeconds = positiveInt("--flood-seconds", argv[++i]);
    else if ((SUITES as readonly string[]).includes(arg)) suites.push(arg as Suite);
    else throw new Error(`unknown argument ${arg}; suites: ${SUITES.join(", ")}; options: --rounds N, --time MS, --udp-rate RATE, --handshakes N, --concurrency N, --ike-parts ${IKE_PARTS.join(",")}, --flood, --flood-rate N, --flood-seconds S`);
  }
  if (flood && !suites.includes("ike")) throw new Error("--flood is part of the ike suite: npm run bench -- ike --flood");
  return { suites: suites.length ? suites : [...DEFAULT_SUITES], rounds, timeMs, udpRate, handshakes, concurrency, ikeParts, flood, floodRate, floodSeconds };
}

function positiveInt(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} needs a positive integer, got ${String(value)}`);
  return n;
}

function formatCryptoTable(rows: CryptoRow[]): string {
  const header = ["size", "op", "implementation", "Gbit/s", "packets/s", "ns/packet", "× node:crypto", "sluice batch ×"];
  const lines = rows.map((r) => [
    `${r.size} B`, r.op, r.impl,
    r.gbitPerSecond.toFixed(2),
    r.packetsPerSecond >= 1e6 ? `${(r.packetsPerSecond / 1e6).toFixed(2)} M` : `${(r.packetsPerSecond / 1e3).toFixed(0)} k`,
    r.nsPerPacket.toFixed(0),
    r.impl === "node:crypto" ? "—" : r.nodeRatio.toFixed(2),
    r.impl === "sluice batch" ? "—" : r.batchRatio.toFixed(2),
  ]);
  return formatGroupedTable(header, lines, (i) => `${rows[i]!.size}|${rows[i]!.op}`);
}

function formatEngineTable(rows: EngineRow[], dispatch: DispatchRow): string {
  const header = ["size", "path", "batch", "Gbit/s", "packets/s", "× kernel"];
  const lines = rows.map((r) => [`${r.size} B`, r.impl, String(r.batchSize), r.gbitPerSecond.toFixed(2), `${(r.packetsPerSecond / 1e6).toFixed(2)} M`, r.kernelRatio.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  return [
    fmt(header), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(fmt), "",
    `dispatch: a 1-packet batch round trip takes ${dispatch.roundTripUs.toFixed(1)} µs one at a time (both threads wake up),`,
    `${dispatch.pipelinedUs.toFixed(1)} µs each with 8 in flight; a 64 × 1420 B seal batch is ${dispatch.batchUs.toFixed(0)} µs of crypto, and under`,
    `load the engine adds ${(dispatch.overhead * 100).toFixed(1)}% to it (1 worker vs the kernel on the main thread)`,
  ].join("\n");
}

function formatTunnelTable(result: TunnelResult): string {
  const header = ["path", "TCP Mbit/s", "sluice TCP ×", "UDP max Mbit/s", `UDP at ${result.udpRate}: Mbit/s`, "lost"];
  const lines = result.rows.map((r) => [
    r.label, r.tcpMbps?.toFixed(0) ?? "—", r.label === "sluice" ? "—" : r.sluiceTcpRatio?.toFixed(2) ?? "—",
    r.udpMbps?.toFixed(0) ?? "—", r.udpFixedMbps?.toFixed(0) ?? "—", r.udpFixedLoss === null ? "—" : `${r.udpFixedLoss.toFixed(1)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i >= 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const out = [fmt(header), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(fmt)];
  for (const skip of result.skipped) out.push(`(${skip.label} not measured: ${skip.reason})`);
  const ratios = roundRatios(result);
  if (ratios.some((r) => r !== null)) {
    out.push("", `sluice TCP × the best other tunnel of the same round, round by round: ${ratios.map((r) => r?.toFixed(2) ?? "—").join(", ")}`);
  }
  if (result.threads.length) out.push("", "sluice CPU per thread during the median round's TCP run (100% = one core; a = sender, b = receiver):", ...result.threads.map((t) => `  ${t.slice(7)}`));
  return out.join("\n");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const results: { crypto?: CryptoRow[]; cryptoAes?: AesCryptoRow[]; engine?: EngineRow[]; dispatch?: DispatchRow; tunnel?: TunnelResult; ike?: IkeResult; ikeFlood?: FloodSuiteResult } = {};
  if (args.suites.includes("crypto")) {
    results.crypto = await runCryptoSuite({ rounds: args.rounds, timeMs: args.timeMs }, undefined, log);
    console.log(`\ncrypto: one core, median of ${args.rounds} rounds; "× node:crypto" = this row's throughput / node:crypto's;` +
      ` "sluice batch ×" = sluice batch throughput / this row's; "sluice one-shot" allocates each result, "+ output" writes into the caller's array\n`);
    console.log(formatCryptoTable(results.crypto));
  }
  if (args.suites.includes("crypto") || args.suites.includes("crypto-aes")) {
    results.cryptoAes = await runAesCryptoSuite({ rounds: args.rounds, timeMs: args.timeMs }, CRYPTO_SIZES, log);
    console.log(`\ncrypto AES-256-GCM (RFC 4106's AEAD): one core, median of ${args.rounds} rounds; "× openssl speed" = this row's throughput / \`openssl speed -evp aes-256-gcm -bytes N\`'s` +
      ` (OpenSSL sealing one buffer over and over: the ceiling; its sealing figure serves both ops); "× sluice ChaCha batch" = this row's throughput / sluice's ChaCha20-Poly1305 batch of the same run\n`);
    console.log(formatAesTable(results.cryptoAes));
  }
  if (args.suites.includes("engine")) {
    const { rows, dispatch } = await runEngineSuite({ rounds: Math.min(args.rounds, 3), timeMs: Math.max(1000, args.timeMs * 4) }, log);
    results.engine = rows;
    results.dispatch = dispatch;
    console.log(`\nengine: sealing on the zero-copy path, ${cpus().length} cores in all (main thread + workers), median of ${Math.min(args.rounds, 3)} rounds\n`);
    console.log(formatEngineTable(rows, dispatch));
  }
  if (args.suites.includes("tunnel")) {
    const repeat = Math.min(args.rounds, 3);
    results.tunnel = await runTunnelSuite({ repeat, duration: 10, udpRate: args.udpRate }, log);
    console.log(`\ntunnel: iperf3 between two namespaces, median of ${repeat} rounds × 10 s (each round runs every path once, in turn); both ends and iperf3 share the 2 cores;` +
      ` UDP max = as fast as the sender can (-b 0, 1400-byte datagrams, fragmented in every tunnel),` +
      ` UDP at ${args.udpRate} = that rate offered in ${FIXED_RATE_DATAGRAM}-byte datagrams\n`);
    console.log(formatTunnelTable(results.tunnel));
  }
  if (args.suites.includes("ike")) {
    const rounds = Math.min(args.rounds, 3);
    results.ike = await runIkeSuite({ rounds, count: args.handshakes, concurrency: args.concurrency, parts: args.ikeParts }, log);
    if (results.ike.handshakes.length > 0) {
      console.log(`\nike: handshakes as responder (IKE_SA_INIT + IKE_AUTH, PSK, X25519, one child SA; ${args.handshakes} per round from sluice's load generator,` +
        ` ${args.concurrency} at once, each deleted once up), ${rounds} rounds running both responders in turn; generator and responder share the 2 cores\n`);
    }
    console.log(formatIkeTable(results.ike));
    if (args.flood) {
      results.ikeFlood = await runFloodSuite({ rounds, rate: args.floodRate, seconds: args.floodSeconds }, log);
      console.log(`\nike flood: spoofed IKE_SA_INIT requests (random sources in 10.200.0.0/16, random SPIs and ports) offered at ${args.floodRate || "the flooder's top"}/s for ${args.floodSeconds} s` +
        ` against each responder with its own DoS defaults, while a strongSwan initiator connects, rekeys its child SA and IKE SA, and disconnects, over and over;` +
        ` ${rounds} rounds running both in turn; flooder, responder and initiator share the 2 cores\n`);
      console.log(formatFloodTable(results.ikeFlood));
    }
  }
  const dir = new URL("../../bench/results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  // Suites not run this time keep their last results, each with its own date
  // and machine (a suite run elsewhere must not take this machine's name).
  const latest = new URL("latest.json", dir);
  const { machine: _former, ...previous } = existsSync(latest) ? (JSON.parse(readFileSync(latest, "utf8")) as Record<string, unknown>) : {};
  const date = new Date().toISOString();
  const machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
  const report: Record<string, unknown> = { ...previous };
  for (const [suite, value] of Object.entries(results)) report[suite] = { date, machine, options: args, results: value };
  writeFileSync(latest, `${JSON.stringify(report, null, 2)}\n`);
  log(`\nwrote bench/results/latest.json`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
