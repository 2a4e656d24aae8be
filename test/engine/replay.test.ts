// Proves anti-replay holds when several workers open packets of one SA at
// once (workers open with open_batch_deferred, the main thread commits each
// batch in submission order with commit_batch): N packets sealed by the
// engine are fired at it in concurrent open batches, each packet 1–3 times,
// reordered locally, with copies of a packet in the same batch and in
// different batches that run at the same time. A plain sequential model of
// the window (fixtures/engineUtil.ts ReferenceWindow) fed the same stream in
// submission order is the oracle:
//
// - a packet is "ok" in the engine exactly when the model accepts it, so
//   each sequence number is accepted at most once, and none inside the
//   window is dropped by mistake;
// - a copy the model calls "replay" is "replay";
// - a packet the model calls "too-old" is "too-old" if its number was never
//   accepted before, else "replay" or "too-old" (a worker's early check may
//   see the copy as a replay before the window moved past it); with ESN it
//   may also be "auth" (RFC 4303 A.2 puts a number below the window into the
//   next 2^32 epoch, so its ICV fails; InboundSa does the same).
//
// With reordering inside the window every distinct packet is accepted
// exactly once; with reordering beyond it (window 64) the model says which
// ones are too old, and the engine must agree.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Rng, SEED } from "../helpers.js";
import { openEngine, pipeline, resultOf, equalBytes, ReferenceWindow, type BatchSpec, type WindowStatus , ENGINE_CIPHERS, randomSaKeys } from "../fixtures/engineUtil.js";
import type { EspCipher } from "../../src/kernel/cipher.js";
import type { PacketStatus } from "../../src/kernel/status.js";

const rng = new Rng(SEED ^ 0x7e91a7);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

interface Scenario {
  workers: number;
  packets: number;
  replayWindow: number;
  /** Packets are shuffled within consecutive blocks of this many. */
  shuffleBlock: number;
  /** A packet's extra copies land up to this many stream positions from it, either side. */
  copyDistance: number;
  esn: boolean;
  cipher: EspCipher;
  /** Whether the reordering stays inside the window (every packet must be accepted once). */
  insideWindow: boolean;
}

async function concurrentReplay(t: import("node:test").TestContext, s: Scenario): Promise<void> {
  const engine = await openEngine(t, { workers: s.workers, slots: 2048, slotSize: 512 });
  const sa = { ...randomSaKeys(rng, s.cipher), esn: s.esn };
  const out = engine.addSa({ direction: "out", ...sa });
  const inb = engine.addSa({ direction: "in", ...sa, replayWindow: s.replayWindow });
  const inner = Array.from({ length: s.packets }, () => rng.bytes(rng.range(0, 200)));
  const sealed = await engine.seal(out, inner); // sealed[i] has sequence number i + 1

  // The stream: 1…N shuffled within blocks, then 1–3 copies of each, each copy near the packet's place.
  const order = Array.from({ length: s.packets }, (_, i) => i + 1);
  for (let at = -rng.int(s.shuffleBlock); at < order.length; at += s.shuffleBlock) {
    const from = Math.max(0, at);
    const block = order.slice(from, at + s.shuffleBlock);
    rng.shuffle(block);
    order.splice(from, block.length, ...block);
  }
  const placed: { seq: number; key: number }[] = [];
  order.forEach((seq, position) => {
    placed.push({ seq, key: position });
    const copies = rng.range(1, 3);
    for (let c = 1; c < copies; c++) placed.push({ seq, key: position + rng.range(-s.copyDistance, s.copyDistance) + 0.5 });
  });
  placed.sort((a, b) => a.key - b.key);
  const stream = placed.map((p) => p.seq);

  // Batches of 1…64 packets, submitted back to back so that several are open at once.
  const batchOf: number[] = [];
  const specs: BatchSpec[] = [];
  for (let at = 0; at < stream.length;) {
    const size = Math.min(rng.range(1, 64), stream.length - at);
    specs.push({ op: "open", packets: stream.slice(at, at + size).map((seq) => ({ sa: inb, data: sealed[seq - 1]! })) });
    for (let i = 0; i < size; i++) batchOf.push(specs.length - 1);
    at += size;
  }

  // Preconditions: the stream does what the scenario says.
  const positions = new Map<number, number[]>();
  stream.forEach((seq, at) => positions.set(seq, [...(positions.get(seq) ?? []), at]));
  let sameBatch = 0;
  let nearbyBatches = 0;
  for (const ats of positions.values()) {
    const batches = ats.map((at) => batchOf[at]!);
    if (new Set(batches).size < batches.length) sameBatch++;
    if (batches.some((b) => batches.some((c) => c !== b && Math.abs(c - b) < engine.layout.maxInFlight))) nearbyBatches++;
  }
  assert.ok(sameBatch > 0 && nearbyBatches > 0, `stream has copies in one batch (${sameBatch}) and in batches in flight together (${nearbyBatches})`);
  const model = new ReferenceWindow(s.replayWindow);
  const expected: WindowStatus[] = stream.map((seq) => model.accept(seq));
  const modelTooOld = expected.filter((e) => e === "too-old").length;
  if (s.insideWindow) assert.equal(modelTooOld, 0, "precondition: the reordering stays inside the window");
  else assert.ok(modelTooOld > 0, "precondition: the reordering goes beyond the window");

  // Fire the stream.
  const got: PacketStatus[] = [];
  let wrongBytes = 0;
  await pipeline(engine, specs, (batch) => {
    for (let i = 0; i < batch.count; i++) {
      const status = batch.status(i);
      const seq = stream[got.length]!;
      got.push(status);
      if (status === "ok" && !equalBytes(resultOf(engine, batch, i), inner[seq - 1]!)) wrongBytes++;
    }
  });
  assert.equal(got.length, stream.length);
  assert.equal(wrongBytes, 0, `packets opened "ok" to the wrong bytes ${seedNote}`);

  // Compare with the model.
  const problems: string[] = [];
  const acceptedBefore = new Set<number>();
  const acceptedCount = new Map<number, number>();
  stream.forEach((seq, at) => {
    const want = expected[at]!;
    const have = got[at]!;
    // Below the window, ESN infers the next 2^32 epoch (RFC 4303 A.2), so the ICV fails: "auth", as InboundSa says too.
    // Which of "auth" and "too-old" depends on the window a worker saw, so both are allowed then.
    const old: PacketStatus[] = s.esn ? ["too-old", "auth"] : ["too-old"];
    const allowed: PacketStatus[] = want === "ok" ? ["ok"] : want === "replay" ? ["replay"] : acceptedBefore.has(seq) ? ["replay", ...old] : old;
    if (!allowed.includes(have)) problems.push(`#${at} seq ${seq} (batch ${batchOf[at]}): engine "${have}", model "${want}"`);
    if (have === "ok") acceptedCount.set(seq, (acceptedCount.get(seq) ?? 0) + 1);
    if (want === "ok") acceptedBefore.add(seq);
  });
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} packets differ from the sequential model ${seedNote}`);
  for (const [seq, n] of acceptedCount) if (n !== 1) assert.fail(`seq ${seq} accepted ${n} times ${seedNote}`);
  if (s.insideWindow) {
    for (let seq = 1; seq <= s.packets; seq++) if (acceptedCount.get(seq) !== 1) assert.fail(`seq ${seq} (inside the window) was never accepted ${seedNote}`);
  }

  const okCount = got.filter((g) => g === "ok").length;
  const stats = engine.stats();
  assert.equal(stats.open.packets, okCount);
  assert.equal((stats.open.drops.replay ?? 0) + (stats.open.drops["too-old"] ?? 0) + (stats.open.drops.auth ?? 0), stream.length - okCount);
  if (!s.esn) assert.equal(stats.open.drops.auth, undefined);
  assert.equal(stats.sas.find((x) => x.direction === "in")!.seq, BigInt(s.packets), "the window's top is the highest number");
  assert.equal(stats.slots.free, stats.slots.total);
  t.diagnostic(`${stream.length} packets in ${specs.length} batches: ${okCount} ok, ${stats.open.drops.replay ?? 0} replay, ${stats.open.drops["too-old"] ?? 0} too-old, ${stats.open.drops.auth ?? 0} auth; ` +
    `${sameBatch} packets with copies in one batch, ${nearbyBatches} in batches in flight together`);
}

for (const cipher of ENGINE_CIPHERS) describe(`concurrent anti-replay against a sequential model (${cipher})`, () => {
  for (const workers of [2, 4]) {
    test(`${workers} workers, 3000 packets × 1–3 copies, reordered inside a 512-packet window: each accepted exactly once`, { timeout: 30_000 }, (t) =>
      concurrentReplay(t, { workers, packets: 3000, replayWindow: 512, shuffleBlock: 128, copyDistance: 96, esn: false, insideWindow: true, cipher }));
  }
  for (const [workers, esn] of [[2, false], [4, true]] as const) {
    test(`${workers} workers${esn ? ", ESN" : ""}, 3000 packets × 1–3 copies, reordered beyond a 64-packet window: too-old exactly where the model says`, { timeout: 30_000 }, (t) =>
      concurrentReplay(t, { workers, packets: 3000, replayWindow: 64, shuffleBlock: 100, copyDistance: 40, esn, insideWindow: false, cipher }));
  }
});
