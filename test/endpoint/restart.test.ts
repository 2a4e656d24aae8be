// Restart without nonce reuse. Endpoint A is killed with SIGKILL in the
// middle of a transfer (a ping every 10 ms and a UDP stream A → B through the
// tunnel) and started again with the same config and state directory, while
// tcpdump records the A–B link. In the capture no (SPI, sequence number) pair
// sent by A appears twice (a repeat is a repeated ChaCha20-Poly1305 nonce
// under the same key), and every number A sent after the restart lies above
// everything it sent before. B's packets from before the crash, replayed at
// the restarted A from a third namespace, are all refused and none reaches
// A's TUN. Traffic B → A resumes once B's numbers pass what the restarted A
// reserved (the documented price of a crash: at most IN_BLOCK numbers).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { missingRequirements, TwoEndpoints, writeRecords, sleep, type Metrics } from "../fixtures/twoEndpoints.js";
import { espPackets, type EspPacket } from "../fixtures/pcap.js";
import { IN_BLOCK } from "../../src/endpoint/seqStore.js";

const skip = missingRequirements();

describe("endpoint: SIGKILL and restart", { skip: skip ?? false }, () => {
  let f: TwoEndpoints;

  before(async () => {
    f = await TwoEndpoints.create({ third: true });
    let ok = false;
    for (let i = 0; i < 10 && !ok; i++) ok = (await f.ping("a", f.inner.b4, { count: 1, wait: 1 })).received === 1;
    assert.ok(ok, "the tunnel does not carry a ping before the test");
  });

  after(async () => {
    await f?.cleanup();
  });

  test("no (SPI, sequence number) is sent twice across a crash, and B's pre-crash packets are refused after it", { timeout: 60000 }, async (t) => {
    const inSeq = (m: Metrics): number => m.sa("sluice_sa_sequence", f.spiBA, "in");
    const inRefused = (m: Metrics): number => ["replay", "too-old", "auth"].reduce((n, r) => n + m.sa("sluice_sa_drops_total", f.spiBA, "in", r), 0);
    const tunRx = async (): Promise<number> => Number((await f.sh(f.ns.a, `cat /sys/class/net/${f.tun.a}/statistics/rx_packets`)).trim());

    const capture = await f.capture("a", f.veth.a, ["udp", "port", "4500"], { name: "restart" });
    // The transfer: a ping A → B every 10 ms (so B answers) and a stream of 500-byte datagrams A → B at 10k/s.
    const ping = f.pingBackground("a", f.inner.b4, { interval: 0.01, wait: 1 });
    const stream = f.netTool(f.ns.a, "udp", f.inner.b4, "9", "40000", "500", "10000");
    await sleep(1200);
    const beforeKill = await f.metrics("a");
    assert.ok(beforeKill.sa("sluice_sa_packets_total", f.spiAB, "out") > 1000, "the transfer did not get going before the kill");
    const killTime = Date.now() / 1000;
    const killed = await f.stop("a", "SIGKILL");
    assert.equal(killed.signal, "SIGKILL");
    await ping.stop();
    for (let i = 0; i < 100 && (await f.tunExists("a")); i++) await sleep(20);
    assert.equal(await f.tunExists("a"), false, "A's TUN outlived the killed process");
    await sleep(200);

    // Again, with the same config and state directory, while the stream is still sending.
    const restartTime = Date.now() / 1000;
    const restarted = await f.start("a");
    const peerLine = restarted.logs().find((l) => l.event === "peer");
    assert.ok(peerLine, `no "peer" line from the restarted endpoint:\n${restarted.stdout}`);
    const resumeOut = BigInt(String(peerLine.resumeOut));
    const resumeIn = BigInt(String(peerLine.resumeIn));
    assert.ok(resumeOut > 0n && resumeIn > 0n, `the restarted endpoint found no reservations: ${JSON.stringify(peerLine)}`);

    // A's inbound SA refuses every number up to resumeIn: B catches up by sending that many (to a port
    // nobody listens on, in A's namespace), through the tunnel. Then B → A carries traffic again.
    const afterRestart = await f.metrics("a");
    for (let round = 0; round < 6; round++) {
      const bSeq = BigInt((await f.metrics("b")).sa("sluice_sa_sequence", f.spiBA, "out"));
      if (bSeq > resumeIn + 100n) break;
      await f.netToolRun(f.ns.b, ["udp", f.inner.a4, "9", String(Number(resumeIn - bSeq) + 2000), "16", "100000"], 30000);
    }
    const caughtUp = await f.metrics("a");
    const refusedAfterRestart = inRefused(caughtUp) - inRefused(afterRestart);
    t.diagnostic(`restart: A resumed sealing at ${resumeOut + 1n}, accepting above ${resumeIn}; B's numbers refused after the restart: ${refusedAfterRestart}`);
    assert.ok(refusedAfterRestart <= Number(IN_BLOCK) + 2048, `the restarted A refused ${refusedAfterRestart} of B's new packets, more than a reservation block (${IN_BLOCK})`);
    const pingAfter = await f.ping("a", f.inner.b4, { count: 20, interval: 0.02, wait: 1 });
    assert.ok(pingAfter.received >= 19, `after the restart and B's catch-up, ping A → B: ${pingAfter.received}/20\n${pingAfter.output}`);
    const streamDone = await stream.waitForEvent("done", 30000);
    t.diagnostic(`stream A → B: ${String(streamDone.sent)} datagrams, ${String(streamDone.errors)} refused locally while A was down`);

    // The capture: every number A sent, before and after the crash.
    await sleep(100);
    const { pcap, dropped } = await capture.stop();
    const packets = espPackets(pcap);
    const sentByA = packets.filter((p) => p.src === f.outer.a);
    assert.ok(sentByA.every((p) => p.spi === f.spiAB), "A sent with an SPI other than its outbound SA's");
    const pre = sentByA.filter((p) => p.time < restartTime);
    const post = sentByA.filter((p) => p.time >= restartTime);
    t.diagnostic(`capture: ${packets.length} ESP packets (${packets.filter((p) => p.segments > 1).length} in UDP GSO super-packets), ${pre.length} from A before the restart, ${post.length} after; tcpdump dropped ${dropped}`);
    assert.ok(pre.length >= 1000 && post.length >= 1000, `too few of A's packets captured to judge: ${pre.length} before, ${post.length} after the restart`);
    const seen = new Map<number, EspPacket>();
    const repeats: string[] = [];
    for (const p of sentByA) {
      const first = seen.get(p.seq);
      if (first) repeats.push(`seq ${p.seq} at ${first.time.toFixed(6)} and ${p.time.toFixed(6)}`);
      else seen.set(p.seq, p);
    }
    assert.deepEqual(repeats.slice(0, 10), [], `A sent ${repeats.length} (SPI 0x${f.spiAB.toString(16)}, sequence number) pairs twice`);
    const maxPre = pre.reduce((m, p) => Math.max(m, p.seq), 0);
    const minPost = post.reduce((m, p) => Math.min(m, p.seq), Number.POSITIVE_INFINITY);
    assert.ok(BigInt(maxPre) <= resumeOut, `A sent ${maxPre} before the crash but resumed at ${resumeOut + 1n}`);
    assert.ok(BigInt(minPost) > resumeOut, `after the restart A sent ${minPost}, not above its reservation ${resumeOut}`);
    // B was not restarted: its numbers are unique too.
    const fromB = packets.filter((p) => p.src === f.outer.b).map((p) => p.seq);
    assert.equal(new Set(fromB).size, fromB.length, "B sent a sequence number twice");
    const bPre = packets.filter((p) => p.src === f.outer.b && p.time < killTime && p.payload.length === p.length);
    assert.ok(BigInt(bPre.reduce((m, p) => Math.max(m, p.seq), 0)) <= resumeIn, "the restarted A's inbound reservation is below a number B sent before the crash");

    // Replays of B's pre-crash packets at the restarted A, from a third namespace, with nothing else running.
    assert.ok(bPre.length >= 50, `only ${bPre.length} of B's pre-crash packets captured`);
    await sleep(200);
    const beforeReplay = await f.metrics("a");
    const rxBefore = await tunRx();
    const path = join(f.dir, "replay.bin");
    writeRecords(path, bPre.map((p) => p.payload));
    const sent = await f.netToolRun(f.ns.c, ["send", f.outer.aFromC, String(f.outer.port), path, "5000"]);
    assert.equal(sent.sent, bPre.length);
    const deadline = Date.now() + 5000;
    let afterReplay = await f.metrics("a");
    while (inRefused(afterReplay) - inRefused(beforeReplay) < bPre.length && Date.now() < deadline) {
      await sleep(50);
      afterReplay = await f.metrics("a");
    }
    const rxAfter = await tunRx();
    const reasons = Object.fromEntries(["replay", "too-old", "auth"].map((r) => [r, afterReplay.sa("sluice_sa_drops_total", f.spiBA, "in", r) - beforeReplay.sa("sluice_sa_drops_total", f.spiBA, "in", r)]));
    // With ESN, a number more than a window below the top is taken for the next 2^32 and fails the ICV ("auth").
    t.diagnostic(`replayed ${bPre.length} of B's pre-crash packets at the restarted A: refused as ${JSON.stringify(reasons)}`);
    assert.equal(inRefused(afterReplay) - inRefused(beforeReplay), bPre.length, `${bPre.length} pre-crash packets replayed, ${inRefused(afterReplay) - inRefused(beforeReplay)} refused`);
    assert.equal(afterReplay.sa("sluice_sa_packets_total", f.spiBA, "in") - beforeReplay.sa("sluice_sa_packets_total", f.spiBA, "in"), 0, "a replayed pre-crash packet was accepted");
    assert.equal(inSeq(afterReplay), inSeq(beforeReplay), "a replayed packet moved A's replay window");
    assert.equal(rxAfter - rxBefore, 0, "something reached A's TUN while only replays were sent");

    // The restarted A is healthy.
    assert.equal(afterReplay.get("sluice_engine_worker_restarts_total"), 0);
    const back = await f.ping("b", f.inner.a4, { count: 3, interval: 0.1 });
    assert.equal(back.received, 3, back.output);
  });

  // seqStore.ts: "the price is that up to IN_BLOCK of the peer's next numbers are refused once after a
  // crash". After a clean stop there is no crash to pay for: the endpoint knows exactly what it sent and
  // accepted, and a restart should resume there. Otherwise a planned restart (an upgrade, a config change)
  // cuts B → A until B has sent up to 65536 packets: under a second at 1 Gbit/s, hours for an interactive
  // session or a monitoring ping.
  test("after a clean SIGTERM stop, a restart resumes where it stopped: B → A flows at once, no nonce reused", { timeout: 30000 }, async (t) => {
    const warm = await f.ping("a", f.inner.b4, { count: 20, interval: 0.01 });
    assert.equal(warm.received, 20, warm.output);
    const before_ = await f.metrics("a");
    const bBefore = await f.metrics("b");
    const lastOut = BigInt(before_.sa("sluice_sa_sequence", f.spiAB, "out"));
    const bOut = BigInt(bBefore.sa("sluice_sa_sequence", f.spiBA, "out"));
    const stopped = await f.stop("a", "SIGTERM");
    assert.deepEqual({ code: stopped.code, signal: stopped.signal }, { code: 0, signal: null });
    const restarted = await f.start("a");
    const peerLine = restarted.logs().find((l) => l.event === "peer")!;
    const resumeOut = BigInt(String(peerLine.resumeOut));
    const resumeIn = BigInt(String(peerLine.resumeIn));
    t.diagnostic(`clean restart: A had sent up to ${lastOut} and B up to ${bOut}; A resumed sealing after ${resumeOut} and accepting above ${resumeIn}`);
    assert.ok(resumeOut >= lastOut, `A resumed sealing at ${resumeOut + 1n}, at or below ${lastOut} which it had already sent: a repeated nonce`);
    const pingAfter = await f.ping("a", f.inner.b4, { count: 5, interval: 0.1, wait: 1 });
    const m = await f.metrics("a");
    const refused = ["replay", "too-old", "auth"].map((r) => `${r} ${m.sa("sluice_sa_drops_total", f.spiBA, "in", r)}`).join(", ");
    assert.ok(resumeIn <= bOut, `after a clean stop A refuses B's next ${resumeIn - bOut} packets (it accepts only above ${resumeIn}; B is at ${bOut})`);
    assert.ok(pingAfter.received >= 4, `after a clean restart B's answers are refused (${pingAfter.received}/5 came back; A's inbound drops: ${refused})`);
  });
});
