/**
 * `npm run bench -- ike` (root): IKEv2 control-plane figures on the interop
 * bed (test/fixtures/interop/: two namespaces joined by a veth).
 *
 * - The IKE core alone (ikeCore.ts): each side's time per handshake with
 *   two cores in this process and no I/O, beside X25519's own cost.
 * - Handshakes per second as responder: sluice's own initiator
 *   (bench/ikeLoad.ts: many IKE SAs at once, IKE_SA_INIT + IKE_AUTH with a
 *   PSK, X25519 and one child SA each, deleted once up) in A, against a
 *   sluice responder (`sluice up`) and a strongSwan responder
 *   (charon-systemd, kernel-libipsec) in B, in rounds that run both in turn;
 *   the responder's CPU per handshake from /proc (strongSwan spreads over
 *   both cores, sluice's IKE runs on its main thread).
 * - Time from `start` to the first packet through the tunnel: the initiator
 *   begins (sluice's "ike-connecting" log line; `swanctl --initiate` for
 *   strongSwan) while a probe in A sends a UDP datagram to B's inner address
 *   every millisecond; the first to arrive in B ends the clock.
 *
 * - Rekeying (ikeRekey.ts): child rekeys per second sluice completes on one
 *   IKE SA, and loss across rekeys under load, sluice and strongSwan side by
 *   side.
 * - Certificate handshakes per second as responder, ECDSA P-256 and
 *   RSA-3072: the same load with each client signing with a certificate of
 *   its own (one key, a certificate per client ID) and the responder signing
 *   with its gateway certificate, each side validating the other's chain to
 *   a test root (test/fixtures/pki.ts makes it with openssl for the run);
 *   sluice and strongSwan in rounds, side by side.
 *
 * - A thousand road warriors at once (roadWarriors.ts): setup rate, the
 *   gateway's memory per client, an echo through every client's SA.
 *
 * strongSwan's per-source half-open limit (block_threshold, default 5) and
 * cookie threshold (30) would throttle a load from one address; they are
 * raised for the bench so that its rate is strongSwan's, not its DoS guard's,
 * and sluice's (the same two, init_limit_half_open and init_rate_per_source)
 * are switched off for the same reason. `--flood` (ikeFlood.ts) measures the
 * guards themselves.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { Charon } from "../test/fixtures/interop/charon.js";
import { siteToSite, bedConfigs } from "../test/fixtures/interop/swanctl.js";
import { TwoHosts, type Host } from "../test/fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../test/fixtures/interop/sluice.js";
import { Proc } from "../test/fixtures/twoEndpoints.js";
import { median } from "./measure.js";
import { formatRekeyTable, runRekeySuite, type RekeyResult } from "./ikeRekey.js";
import { copyFileSync, mkdirSync, chmodSync } from "node:fs";
import { benchCertificates, createPki, type BenchCertificates } from "../test/fixtures/pki.js";
import { formatRoadWarriors, runRoadWarriors, type RoadWarriorResult } from "./roadWarriors.js";
import { NO_DOS_LIMITS } from "./loadClients.js";
import { formatCoreTable, runCoreSuite, type IkeCoreRound } from "./ikeCore.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const LOAD = join(ROOT, "dist/bench/ikeLoad.js");
const PROBE = join(ROOT, "dist/bench/ikeProbe.js");
const CLIENTS = "10.100.0.0/16";
const GROUP_PSK = "sluice-bench-group-psk-0123456789";

export interface HandshakeRound {
  responder: "sluice" | "strongSwan";
  handshakes: number;
  seconds: number;
  rate: number;
  cpuMsPerHandshake: number;
  /** The load generator's own CPU per handshake (it shares the 2 cores with the responder). */
  generatorCpuMs: number;
  latencyMs: { p50: number; p90: number; p99: number };
  failures: Record<string, number>;
  retransmits: number;
}

export interface FirstPacket {
  path: string;
  /** From the initiator's start to the first probe datagram through the tunnel, per round. */
  ms: number[];
}

/** Certificate handshakes of one key type, sluice and strongSwan in rounds. */
export interface CertificateRounds {
  keyType: "ecdsa-p256" | "rsa3072";
  rounds: HandshakeRound[];
  /** sluice's rate ÷ strongSwan's, round by round. */
  ratios: number[];
}

/** What `npm run bench -- ike` runs (`--ike-parts`; default all). */
export type IkePart = "core" | "psk" | "certs" | "first-packet" | "roadwarriors" | "rekey";

export const IKE_PARTS: readonly IkePart[] = ["core", "psk", "certs", "first-packet", "roadwarriors", "rekey"];

export interface IkeResult {
  /** The IKE core alone, in this process (ikeCore.ts). */
  core?: IkeCoreRound[];
  handshakes: HandshakeRound[];
  certificates?: CertificateRounds[];
  /** sluice's rate ÷ strongSwan's, round by round. */
  ratios: number[];
  firstPacket: FirstPacket[];
  /** A thousand road warriors (SLUICE_RW_CLIENTS) held at once on one gateway (roadWarriors.ts), sluice's then strongSwan's. */
  roadWarriors?: RoadWarriorResult[];
  /** Child rekeys per second and loss across rekeys under load (ikeRekey.ts). */
  rekey?: RekeyResult;
  settings: { count: number; concurrency: number; rounds: number };
}

/** utime + stime of a process, all its threads, in ms (/proc/PID/stat; Linux's clock tick is 100 Hz). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** A node script in a namespace, its JSON lines collected. */
function runIn(ns: string, args: string[], description: string): Proc {
  return new Proc(spawn("ip", ["netns", "exec", ns, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"] }), description);
}

/**
 * Handshakes each round makes before it counts (ikeLoad.ts --warmup): a
 * quarter of what it counts, at least 250. Counting a cold start measured
 * V8 compiling sluice's IKE code more than the handshakes.
 */
function warmupFor(count: number): number {
  return Math.max(250, Math.round(count / 4));
}

async function load(bed: TwoHosts, responderPid: number, responder: HandshakeRound["responder"], count: number, concurrency: number, certs?: BenchCertificates): Promise<HandshakeRound> {
  const args = [LOAD, bed.b.address, String(count), String(concurrency), GROUP_PSK, ...(certs ? ["chacha20poly1305-prfsha256-x25519", "--certs", certs.clientDir, certs.ca] : []), "--warmup", String(warmupFor(count))];
  const generator = runIn(bed.a.ns, args, "IKE load generator");
  await generator.waitForEvent("warm", 600_000);
  const before = cpuMs(responderPid);
  const done = await generator.waitForEvent("done", 600_000);
  const cpu = cpuMs(responderPid) - before;
  const handshakes = Number(done.handshakes);
  return {
    responder,
    handshakes,
    seconds: Number(done.seconds),
    rate: Number(done.rate),
    cpuMsPerHandshake: cpu / handshakes,
    generatorCpuMs: Number(done.cpuMs) / handshakes,
    latencyMs: done.latencyMs as HandshakeRound["latencyMs"],
    failures: done.failures as Record<string, number>,
    retransmits: Number(done.retransmits),
  };
}

async function sluiceResponderRound(count: number, concurrency: number): Promise<HandshakeRound> {
  const bed = await TwoHosts.create();
  try {
    const daemon = await SluiceDaemon.start(bed.b, [{ ...responderPeer(bed.a, bed.b), remoteId: "*@bench.sluice.test", selectors: [CLIENTS], psk: GROUP_PSK }], { extra: NO_DOS_LIMITS });
    try {
      // `ip netns exec` execs node: the daemon's pid is sluice's.
      return await load(bed, daemon.pid, "sluice", count, concurrency);
    } finally {
      await daemon.stop();
    }
  } finally {
    await bed.destroy();
  }
}

async function strongSwanResponderRound(count: number, concurrency: number): Promise<HandshakeRound> {
  const bed = await TwoHosts.create();
  try {
    const swanctl = siteToSite({ local: bed.b.address, remote: "%any", localId: "b.sluice.test", remoteId: "%any", localTs: bed.b.site, remoteTs: CLIENTS, psk: GROUP_PSK });
    const charon = await Charon.start(bed.b.ns, { swanctl, settings: ["block_threshold = 100000", "cookie_threshold = 100000", "init_limit_half_open = 0"] });
    try {
      return await load(bed, charon.pid!, "strongSwan", count, concurrency);
    } finally {
      await charon.stop();
    }
  } finally {
    await bed.destroy();
  }
}

/** strongSwan's plugins for certificates, beyond the bed's. */
const CERT_PLUGINS = ["pem", "x509", "pkcs1", "pkcs8", "pubkey", "revocation", "constraints"];

async function sluiceCertRound(certs: BenchCertificates, count: number, concurrency: number): Promise<HandshakeRound> {
  const bed = await TwoHosts.create();
  try {
    const gw = certs.gateway;
    const daemon = await SluiceDaemon.start(bed.b, [{ ...responderPeer(bed.a, bed.b), localId: gw.id, remoteId: "%any", selectors: [CLIENTS], psk: null, ike: { cert_file: gw.cert, key_file: gw.key, ca_files: [certs.ca] } }], { extra: NO_DOS_LIMITS });
    try {
      return await load(bed, daemon.pid, "sluice", count, concurrency, certs);
    } finally {
      await daemon.stop();
    }
  } finally {
    await bed.destroy();
  }
}

async function strongSwanCertRound(certs: BenchCertificates, count: number, concurrency: number): Promise<HandshakeRound> {
  const bed = await TwoHosts.create();
  try {
    const charon = await Charon.start(bed.b.ns, { plugins: CERT_PLUGINS, settings: ["block_threshold = 100000", "cookie_threshold = 100000", "init_limit_half_open = 0"] });
    try {
      for (const sub of ["x509", "x509ca", "private"]) mkdirSync(join(charon.dir, sub), { recursive: true });
      copyFileSync(certs.gateway.cert, join(charon.dir, "x509", "gw.pem"));
      copyFileSync(certs.gateway.key, join(charon.dir, "private", "gw.pem"));
      chmodSync(join(charon.dir, "private", "gw.pem"), 0o600);
      copyFileSync(certs.ca, join(charon.dir, "x509ca", "root.pem"));
      await charon.load(siteToSite({
        local: bed.b.address, remote: "%any", localId: certs.gateway.id, remoteId: "%any", localTs: bed.b.site, remoteTs: CLIENTS,
        localAuth: ["auth = pubkey", "certs = gw.pem"], remoteAuth: ["auth = pubkey", "cacerts = root.pem"],
      }));
      return await load(bed, charon.pid!, "strongSwan", count, concurrency, certs);
    } finally {
      await charon.stop();
    }
  } finally {
    await bed.destroy();
  }
}

/** Starts the probe pair; resolves with the receiver's first-arrival time (epoch ms). */
function probe(from: Host, to: Host): { arrived: Promise<number>; stop(): void } {
  const receiver = runIn(to.ns, [PROBE, "receive", to.inner, "9999"], "probe receiver");
  const sender = runIn(from.ns, [PROBE, "send", to.inner, "9999", from.inner], "probe sender");
  return {
    arrived: receiver.waitForEvent("first", 30_000).then((line) => Number(line.at)),
    stop() {
      receiver.kill();
      sender.kill();
    },
  };
}

async function firstPacketSluice(toStrongSwan: boolean): Promise<number> {
  const bed = await TwoHosts.create();
  try {
    const responder = toStrongSwan
      ? await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b).responder })
      : await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]);
    try {
      const probes = probe(bed.a, bed.b);
      try {
        const initiator = await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a)]);
        try {
          const connecting = await initiator.waitForEvent("ike-connecting", 10_000);
          return (await probes.arrived) - Number(connecting.time);
        } finally {
          await initiator.stop();
        }
      } finally {
        probes.stop();
      }
    } finally {
      await responder.stop();
    }
  } finally {
    await bed.destroy();
  }
}

async function firstPacketStrongSwan(): Promise<number> {
  const bed = await TwoHosts.create();
  try {
    const conf = bedConfigs(bed.a, bed.b);
    const responder = await Charon.start(bed.b.ns, { swanctl: conf.responder });
    const initiator = await Charon.start(bed.a.ns, { swanctl: conf.initiator });
    try {
      const probes = probe(bed.a, bed.b);
      try {
        await new Promise((resolve) => setTimeout(resolve, 200)); // the probes are running
        const started = Date.now();
        void initiator.initiate("net");
        return (await probes.arrived) - started;
      } finally {
        probes.stop();
      }
    } finally {
      await initiator.stop();
      await responder.stop();
    }
  } finally {
    await bed.destroy();
  }
}

export async function runIkeSuite(options: { rounds: number; count: number; concurrency: number; parts?: IkePart[] }, log: (line: string) => void): Promise<IkeResult> {
  const parts = options.parts ?? IKE_PARTS;
  const core = parts.includes("core") ? runCoreSuite(options, log) : undefined;
  const handshakes: HandshakeRound[] = [];
  const ratios: number[] = [];
  for (let round = 1; round <= (parts.includes("psk") ? options.rounds : 0); round++) {
    const sluice = await sluiceResponderRound(options.count, options.concurrency);
    const strongSwan = await strongSwanResponderRound(options.count, options.concurrency);
    handshakes.push(sluice, strongSwan);
    ratios.push(sluice.rate / strongSwan.rate);
    const each = (r: HandshakeRound): string => `${r.rate.toFixed(0)}/s (${r.cpuMsPerHandshake.toFixed(2)} ms CPU each, generator ${r.generatorCpuMs.toFixed(2)} ms)`;
    log(`ike round ${round}: sluice ${each(sluice)}, strongSwan ${each(strongSwan)}`);
  }
  const certificates: CertificateRounds[] = [];
  if (parts.includes("certs")) {
    const pki = createPki();
    try {
      // Certificate handshakes cost more CPU: a quarter of the PSK count per round.
      const count = Math.max(100, Math.round(options.count / 4));
      for (const keyType of ["ecdsa-p256", "rsa3072"] as const) {
        const certs = benchCertificates(pki, keyType, options.concurrency);
        const entry: CertificateRounds = { keyType, rounds: [], ratios: [] };
        for (let round = 1; round <= options.rounds; round++) {
          const sluice = await sluiceCertRound(certs, count, options.concurrency);
          const strongSwan = await strongSwanCertRound(certs, count, options.concurrency);
          entry.rounds.push(sluice, strongSwan);
          entry.ratios.push(sluice.rate / strongSwan.rate);
          log(`ike certificates ${keyType} round ${round}: sluice ${sluice.rate.toFixed(0)}/s (${sluice.cpuMsPerHandshake.toFixed(2)} ms CPU each, failures ${JSON.stringify(sluice.failures)}), strongSwan ${strongSwan.rate.toFixed(0)}/s (${strongSwan.cpuMsPerHandshake.toFixed(2)} ms CPU each, failures ${JSON.stringify(strongSwan.failures)})`);
        }
        certificates.push(entry);
      }
    } finally {
      pki.destroy();
    }
  }
  const firstPacket: FirstPacket[] = [
    { path: "sluice → sluice", ms: [] },
    { path: "sluice → strongSwan", ms: [] },
    { path: "strongSwan → strongSwan", ms: [] },
  ];
  for (let round = 1; round <= (parts.includes("first-packet") ? options.rounds : 0); round++) {
    firstPacket[0]!.ms.push(await firstPacketSluice(false));
    firstPacket[1]!.ms.push(await firstPacketSluice(true));
    firstPacket[2]!.ms.push(await firstPacketStrongSwan());
    log(`first packet round ${round}: ${firstPacket.map((f) => `${f.path} ${f.ms.at(-1)!.toFixed(1)} ms`).join(", ")}`);
  }
  let roadWarriors: RoadWarriorResult[] | undefined;
  if (parts.includes("roadwarriors")) {
    const count = Number(process.env.SLUICE_RW_CLIENTS ?? 1000);
    roadWarriors = [];
    for (const gateway of ["sluice", "strongSwan"] as const) roadWarriors.push(await runRoadWarriors({ count, concurrency: options.concurrency, gateway }, log));
  }
  const rekey = parts.includes("rekey") ? await runRekeySuite({ rounds: options.rounds }, log) : undefined;
  return { core, handshakes, certificates, ratios, firstPacket, roadWarriors, rekey, settings: { count: options.count, concurrency: options.concurrency, rounds: options.rounds } };
}

export function formatIkeTable(result: IkeResult): string {
  const lines = result.handshakes.length > 0 ? [handshakeTable(result.handshakes), "", `sluice ÷ strongSwan, round by round: ${result.ratios.map((r) => r.toFixed(2)).join(", ")} (median ${median(result.ratios).toFixed(2)})`] : [];
  if (result.core) lines.push("", formatCoreTable(result.core));
  for (const c of result.certificates ?? []) {
    lines.push("", `certificate handshakes, ${c.keyType === "rsa3072" ? "RSA-3072" : "ECDSA P-256"} both sides (${c.keyType === "rsa3072" ? "RSA PKCS#1 v1.5" : "ECDSA"} with SHA-256, the chain checked to a test root):`, handshakeTable(c.rounds));
    lines.push("", `sluice ÷ strongSwan, round by round: ${c.ratios.map((r) => r.toFixed(2)).join(", ")} (median ${median(c.ratios).toFixed(2)})`);
  }
  if (result.firstPacket.some((f) => f.ms.length > 0)) {
    lines.push("", "time from start to the first packet through the tunnel (median, rounds):");
    for (const f of result.firstPacket) lines.push(`  ${f.path.padEnd(24)} ${median(f.ms).toFixed(1).padStart(7)} ms   (${f.ms.map((ms) => ms.toFixed(1)).join(", ")})`);
  }
  if (result.roadWarriors) lines.push("", formatRoadWarriors(result.roadWarriors));
  if (result.rekey) lines.push("", formatRekeyTable(result.rekey));
  return lines.join("\n");
}

function handshakeTable(handshakes: HandshakeRound[]): string {
  const rows: string[][] = [];
  for (const responder of ["sluice", "strongSwan"] as const) {
    const rounds = handshakes.filter((r) => r.responder === responder);
    rows.push([
      responder,
      median(rounds.map((r) => r.rate)).toFixed(0),
      median(rounds.map((r) => r.cpuMsPerHandshake)).toFixed(2),
      median(rounds.map((r) => r.generatorCpuMs)).toFixed(2),
      median(rounds.map((r) => r.latencyMs.p50)).toFixed(1),
      median(rounds.map((r) => r.latencyMs.p99)).toFixed(1),
      rounds.map((r) => r.rate.toFixed(0)).join(" "),
    ]);
  }
  const header = ["responder", "handshakes/s", "CPU ms each", "generator CPU ms", "p50 ms", "p99 ms", "rounds"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [fmt(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)].join("\n");
}

