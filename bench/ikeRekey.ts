/**
 * The rekeying part of `npm run bench -- ike` (`--ike-parts rekey`), on the
 * interop bed (test/fixtures/interop/):
 *
 * - Child rekeys per second on one established IKE SA: sluice's initiator
 *   (`sluice up` in A) rekeys its child SA over and over (`sluice rekey`,
 *   the next one as soon as its log shows the last one done: a CREATE_CHILD_SA
 *   and the DELETE of the old child, the new SAs in the data plane) against a
 *   sluice responder and against a strongSwan responder in B, with PFS
 *   (x25519) and without; the initiator's CPU per rekey from /proc. Each
 *   replaced child's inbound SA lingers 5 s, so the engine holds rate × 5 of
 *   them while this runs.
 * - Loss across rekeys under load: the rekey-under-load run of
 *   test/interop/ike-rekey-load.test.ts (rekeyLoad.ts: a UDP flow at a fixed
 *   rate, child rekeys from both sides every 5 s, an IKE rekey halfway) for
 *   sluice ↔ strongSwan and strongSwan ↔ strongSwan, side by side.
 */
import { readFileSync } from "node:fs";
import { Charon } from "../test/fixtures/interop/charon.js";
import { charonSide, describeLoad, runRekeyLoad, sluiceSide, type LoadResult } from "../test/fixtures/interop/rekeyLoad.js";
import { bedConfigs } from "../test/fixtures/interop/swanctl.js";
import { TwoHosts } from "../test/fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../test/fixtures/interop/sluice.js";
import { median } from "./measure.js";

export interface RekeyRateRound {
  responder: "sluice" | "strongSwan";
  pfs: boolean;
  rekeys: number;
  seconds: number;
  rate: number;
  /** The initiator's (sluice's) CPU per rekey, ms. */
  cpuMsPerRekey: number;
}

export interface RekeyResult {
  rates: RekeyRateRound[];
  /** One load run per pair and round: sluice ↔ strongSwan, strongSwan ↔ strongSwan. */
  loss: LoadResult[];
  settings: { seconds: number; loadSeconds: number; mbps: number };
}

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const espProposal = (pfs: boolean): string => (pfs ? "chacha20poly1305-x25519" : "chacha20poly1305");

/** sluice in A rekeys its child SA back to back for `seconds` against `responder` in B. */
async function rekeyRate(responder: "sluice" | "strongSwan", pfs: boolean, seconds: number): Promise<RekeyRateRound> {
  const bed = await TwoHosts.create();
  const stops: (() => Promise<void>)[] = [() => bed.destroy()];
  try {
    if (responder === "sluice") {
      const peerB = await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b, { espProposals: [espProposal(pfs)] })]);
      stops.unshift(() => peerB.stop());
    } else {
      const charon = await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: espProposal(pfs) } }).responder });
      stops.unshift(() => charon.stop());
    }
    const sluice = await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: [espProposal(pfs)] })]);
    stops.unshift(() => sluice.stop());
    await sluice.waitForEvent("child-up", 15_000);
    // Completed rekeys counted in the log as it grows (parsing the whole log at every line would cost the harness O(n²)).
    const marker = '"event":"child-rekeyed"';
    let scanned = sluice.stdout.length;
    let done = 0;
    const count = (): number => {
      let from = scanned;
      for (let at = sluice.stdout.indexOf(marker, from); at >= 0; at = sluice.stdout.indexOf(marker, from)) {
        done++;
        from = at + marker.length;
      }
      // A marker starting later than this is not complete yet: it is found next time, and nothing before it twice.
      scanned = Math.max(from, sluice.stdout.length - marker.length + 1);
      return done;
    };
    const cpuBefore = cpuMs(sluice.pid);
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      const before = count();
      const answer = await sluice.rekey("b");
      if (!answer.ok) throw new Error(`sluice rekey: ${answer.error}`);
      await sluice.waitFor(() => (count() > before ? true : undefined), "the rekey done", 10_000);
    }
    const elapsed = (performance.now() - started) / 1000;
    const rekeys = count();
    return { responder, pfs, rekeys, seconds: elapsed, rate: rekeys / elapsed, cpuMsPerRekey: (cpuMs(sluice.pid) - cpuBefore) / rekeys };
  } finally {
    for (const stop of stops) await stop();
  }
}

/** One rekey-under-load run (PFS, UDP A → B) for a pair. */
async function lossRun(pair: "sluice" | "strongSwan", seconds: number, mbps: number): Promise<LoadResult> {
  const bed = await TwoHosts.create();
  const stops: (() => Promise<void>)[] = [() => bed.destroy()];
  const esp = espProposal(true);
  const plan = { pfs: true, direction: "a-to-b", first: "a", seconds, mbps, length: 1300, childEverySeconds: 5, tcpMbps: 8, port: 5741 } as const;
  try {
    const conf = bedConfigs(bed.a, bed.b, { initiatorOverrides: { espProposals: esp }, responderOverrides: { espProposals: esp } });
    const responder = await Charon.start(bed.b.ns, { swanctl: conf.responder });
    stops.unshift(() => responder.stop());
    if (pair === "sluice") {
      const sluice = await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: [esp] })]);
      stops.unshift(() => sluice.stop());
      await sluice.waitForEvent("child-up", 15_000);
      await sluice.routed(bed.b.site);
      return await runRekeyLoad(bed, sluiceSide(sluice, "b"), charonSide(responder), { ...plan, label: "sluice ↔ strongSwan" });
    }
    const initiator = await Charon.start(bed.a.ns, { swanctl: conf.initiator });
    stops.unshift(() => initiator.stop());
    await initiator.initiate("net");
    return await runRekeyLoad(bed, charonSide(initiator, "strongSwan A"), charonSide(responder, "strongSwan B"), { ...plan, label: "strongSwan ↔ strongSwan" });
  } finally {
    for (const stop of stops) await stop();
  }
}

/**
 * Runs the rekeying part: `rounds` rounds of the rekey rate (each responder,
 * with and without PFS, `seconds` each) and of the loss run (each pair,
 * `loadSeconds` of UDP at `mbps`).
 */
export async function runRekeySuite(options: { rounds: number; seconds?: number; loadSeconds?: number; mbps?: number }, log: (line: string) => void): Promise<RekeyResult> {
  const seconds = options.seconds ?? 10;
  const loadSeconds = options.loadSeconds ?? 30;
  const mbps = options.mbps ?? 50;
  const rates: RekeyRateRound[] = [];
  const loss: LoadResult[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const pfs of [true, false]) {
      for (const responder of ["sluice", "strongSwan"] as const) {
        const r = await rekeyRate(responder, pfs, seconds);
        rates.push(r);
        log(`rekey rate round ${round}: sluice → ${responder}${pfs ? " (PFS)" : ""}: ${r.rate.toFixed(1)} child rekeys/s (${r.rekeys} in ${r.seconds.toFixed(1)} s, ${r.cpuMsPerRekey.toFixed(2)} ms CPU each)`);
      }
    }
    for (const pair of ["sluice", "strongSwan"] as const) {
      const r = await lossRun(pair, loadSeconds, mbps);
      loss.push(r);
      log(`rekey loss round ${round}: ${describeLoad(r)}`);
    }
  }
  return { rates, loss, settings: { seconds, loadSeconds, mbps } };
}

/** The rekeying tables, as `npm run bench -- ike` prints them. */
export function formatRekeyTable(result: RekeyResult): string {
  const lines = [`child rekeys per second, sluice the initiator (back to back on one IKE SA, ${result.settings.seconds} s per round; median of rounds):`];
  for (const pfs of [true, false]) {
    for (const responder of ["sluice", "strongSwan"] as const) {
      const rounds = result.rates.filter((r) => r.pfs === pfs && r.responder === responder);
      if (rounds.length === 0) continue;
      lines.push(`  sluice → ${responder.padEnd(10)} ${pfs ? "PFS   " : "no PFS"} ${median(rounds.map((r) => r.rate)).toFixed(1).padStart(7)} /s   ${median(rounds.map((r) => r.cpuMsPerRekey)).toFixed(2)} ms CPU each   (${rounds.map((r) => r.rate.toFixed(1)).join(", ")})`);
    }
  }
  lines.push("", `loss across rekeys under load (UDP ${result.settings.mbps} Mbit/s in 1300-byte datagrams for ${result.settings.loadSeconds} s, child rekeys every 5 s from each side in turn, an IKE rekey halfway, PFS; lost = iperf3's count, "beyond the kernel" = not dropped by the kernel for want of a reader):`);
  for (const label of ["sluice ↔ strongSwan", "strongSwan ↔ strongSwan"]) {
    const runs = result.loss.filter((r) => r.plan.label === label);
    if (runs.length === 0) continue;
    lines.push(`  ${label.padEnd(24)} ${runs.map((r) => `${r.sent} sent, ${r.lost} lost (${r.lostUnexplained} beyond the kernel), ${r.loggedA.child + r.loggedA.ike}/${r.loggedB.child + r.loggedB.ike} rekeys logged`).join("; ")}`);
  }
  return lines.join("\n");
}
