// Proves inline batches (EngineOptions.inlineBytes): a batch whose packets'
// input bytes total at most inlineBytes runs on the main thread's kernel
// instance instead of a worker, and is delivered from a microtask, in order
// with the batches the workers run.
//
// - An inline batch seals byte for byte what a worker seals (same SA, same
//   starting sequence number; also ESN across 2^32 and an exhausted counter),
//   what OutboundSa seals and what @noble/ciphers computes, and opens the same.
// - The routing: at most inlineBytes runs inline, one byte more on a worker
//   (custom 1000 and the default 4096), inlineBytes 0 never runs inline.
//   Which thread ran a batch is told apart two ways: the engine's own
//   stats().{seal,open}.inline counters, and the tracing worker fixture's
//   count of batches the workers ran (fixtures/tracingWorker.ts), which an
//   inline batch does not touch.
// - Order: long interleaved sequences of worker and inline seal batches for
//   one SA, submitted without awaiting (against backpressure), complete in
//   submission order with sequence numbers strictly increasing in delivery
//   order, and then open once each ("ok") and never again ("replay").
// - Anti-replay: one ESP packet in two inline batches submitted back to back
//   (both checked against the window before either commits) is "ok" then
//   "replay"; the same against a worker batch, in both orders.
// - No re-entrancy: onComplete of an inline batch never runs inside
//   submit(), also when submitted from another batch's onComplete, and runs
//   before the next macrotask (a microtask).
// - A slow worker batch (fixtures/faultyWorker.ts "SLOW!") holds back the
//   inline seal batches submitted after it, but not inline open batches.
// - A bad inlineBytes is a RangeError naming it, and starts no worker thread.
//
// Related files: engine (round trips), engine-order (in-order delivery of
// worker batches), engine-replay (concurrent anti-replay).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync, readdirSync } from "node:fs";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { createEngine, type Engine } from "../../src/engine/engine.js";
import { OutboundSa, InboundSa } from "../../src/esp.js";
import { Rng, SEED, concat, toHex } from "../helpers.js";
import { openEngine, fixtureWorker, resultOf, equalBytes, within } from "../fixtures/engineUtil.js";
import { MARKER_SLOW, SLOW_MS, TRACE_COUNTER_WORD, words } from "../fixtures/control.js";
import type { Batch } from "../../src/engine/batch.js";
import type { SaHandle } from "../../src/engine/saTable.js";
import type { PacketStatus } from "../../src/kernel/status.js";

const rng = new Rng(SEED ^ 0x1a11e);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

interface SaKeys { spi: number; key: Uint8Array; salt: Uint8Array }

function saKeys(): SaKeys {
  return { spi: rng.range(1, 0xffffffff), key: rng.bytes(32), salt: rng.bytes(4) };
}

interface Pkt {
  sa: SaHandle;
  /** Seal: the inner packet; open: the ESP packet. */
  data: Uint8Array;
  /** Seal only: 4 (default) or 41. */
  nextHeader?: number;
}

/** A delivered batch, copied out of the engine before release. */
interface Done {
  statuses: PacketStatus[];
  /** ESP packet (seal) or inner packet (open) when "ok", else null. */
  results: (Uint8Array | null)[];
  seqs: bigint[];
  nextHeaders: number[];
}

function copyOut(engine: Engine, batch: Batch): Done {
  const done: Done = { statuses: [], results: [], seqs: [], nextHeaders: [] };
  for (let i = 0; i < batch.count; i++) {
    const status = batch.status(i);
    done.statuses.push(status);
    done.results.push(status === "ok" ? resultOf(engine, batch, i) : null);
    done.seqs.push(batch.seq(i));
    done.nextHeaders.push(batch.op === "open" && status === "ok" ? batch.nextHeader(i) : 0);
  }
  return done;
}

/**
 * Builds one batch and submits it now, synchronously (so several calls in a
 * row are submitted back to back with no await between them). The tests size
 * their engines so that there is no backpressure here. `onDelivered` runs
 * inside the engine's onComplete, before the batch is released.
 */
function submitNow(engine: Engine, op: "seal" | "open", packets: Pkt[], onDelivered?: (done: Done) => void): Promise<Done> {
  const batch = engine.beginBatch(op);
  if (batch === null) throw new Error("unexpected backpressure: no free batch region");
  for (const p of packets) {
    const slot = engine.acquireSlot();
    if (slot < 0) throw new Error("unexpected backpressure: no free slot");
    engine.bytes.set(p.data, op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot));
    if (!batch.add(slot, p.sa, p.data.length, p.nextHeader)) throw new Error("batch over batchSize");
  }
  return new Promise<Done>((resolve) => {
    engine.submit(batch, (b) => {
      const done = copyOut(engine, b);
      b.release();
      onDelivered?.(done);
      resolve(done);
    });
  });
}

/** Batches the workers finished so far (tracingWorker and faultyWorker count them). */
function workerBatches(engine: Engine): number {
  return Atomics.load(words(engine.memory), TRACE_COUNTER_WORD);
}

interface Counts { seal: { inline: number; batches: number }; open: { inline: number; batches: number }; worker: number }

function counts(engine: Engine): Counts {
  const s = engine.stats();
  return {
    seal: { inline: s.seal.inline, batches: s.seal.batches },
    open: { inline: s.open.inline, batches: s.open.batches },
    worker: workerBatches(engine),
  };
}

/**
 * Runs one batch and tells where it ran. Both witnesses must agree: the
 * engine's inline counter and the tracing worker's count of batches run.
 */
async function runRouted(engine: Engine, op: "seal" | "open", packets: Pkt[]): Promise<{ route: "inline" | "worker"; done: Done }> {
  const before = counts(engine);
  const done = await within(submitNow(engine, op, packets), 10_000, `${op} batch never delivered`);
  const after = counts(engine);
  const inline = after[op].inline - before[op].inline;
  const worker = after.worker - before.worker;
  assert.equal(after[op].batches - before[op].batches, 1, `stats().${op}.batches counts the batch once`);
  assert.ok((inline === 1 && worker === 0) || (inline === 0 && worker === 1),
    `the batch ran exactly once, and the counters agree where: stats().${op}.inline +${inline}, batches the workers ran +${worker}`);
  return { route: inline === 1 ? "inline" : "worker", done };
}

/** ESP (RFC 4303) with ChaCha20-Poly1305 (RFC 7634), sealed with @noble/ciphers: IV = the 64-bit sequence number. */
function nobleEsp(sa: SaKeys & { esn?: boolean }, seq: bigint, inner: Uint8Array, nextHeader = 4): Uint8Array {
  const pad = (4 - ((inner.length + 2) & 3)) & 3;
  const plain = new Uint8Array(inner.length + pad + 2);
  plain.set(inner);
  for (let i = 0; i < pad; i++) plain[inner.length + i] = i + 1;
  plain[inner.length + pad] = pad;
  plain[inner.length + pad + 1] = nextHeader;
  const header = new Uint8Array(16);
  const view = new DataView(header.buffer);
  view.setUint32(0, sa.spi);
  view.setUint32(4, Number(seq & 0xffffffffn));
  view.setBigUint64(8, seq);
  const nonce = concat(sa.salt, header.subarray(8, 16));
  let aad: Uint8Array;
  if (sa.esn) {
    aad = new Uint8Array(12);
    const a = new DataView(aad.buffer);
    a.setUint32(0, sa.spi);
    a.setUint32(4, Number(seq >> 32n));
    a.setUint32(8, Number(seq & 0xffffffffn));
  } else {
    aad = header.subarray(0, 8);
  }
  return concat(header, chacha20poly1305(sa.key, nonce, aad).encrypt(plain));
}

/** The sequence number field of an ESP packet (bytes 4…8, big-endian). */
function wireSeq(esp: Uint8Array): number {
  return new DataView(esp.buffer, esp.byteOffset, esp.byteLength).getUint32(4);
}

/** The inner packet size that makes an ESP packet of exactly `esp` bytes (a multiple of 4, at least 36). */
function innerForEsp(esp: number): number {
  return esp - 16 - 16 - 2;
}

/** ESP packets from a peer's OutboundSa (sequence numbers 1, 2, 3…). */
function peerSeal(sa: SaKeys, inner: Uint8Array[]): Uint8Array[] {
  const peer = new OutboundSa(sa);
  try {
    return inner.map((p) => peer.seal(p));
  } finally {
    peer.destroy();
  }
}

describe("inline batches: the same bytes as on a worker", () => {
  test("a small seal and open batch run inline and give the ESP packets a worker gives, OutboundSa gives and @noble/ciphers computes", async (t) => {
    const tracing = fixtureWorker("tracingWorker");
    const inlineEngine = await openEngine(t, { workers: 1, workerFilename: tracing }); // default inlineBytes (4096)
    const workerEngine = await openEngine(t, { workers: 1, workerFilename: tracing, inlineBytes: 0 });

    const cases = [
      { name: "starting at seq 41", esn: false, start: 41n, count: 6 },
      { name: "ESN, across 2^32", esn: true, start: 0xfffffffen, count: 5 },
      { name: "a counter running out (seq-exhausted)", esn: false, start: 0xfffffffdn, count: 4 },
    ];
    for (const c of cases) {
      const sa = { ...saKeys(), esn: c.esn };
      const inner = Array.from({ length: c.count }, () => rng.bytes(rng.range(0, 500)));
      const nextHeaders = inner.map(() => (rng.int(3) === 0 ? 41 : 4));
      const packetsFor = (out: SaHandle): Pkt[] => inner.map((data, i) => ({ sa: out, data, nextHeader: nextHeaders[i]! }));

      const outInline = inlineEngine.addSa({ direction: "out", ...sa, seq: c.start });
      const outWorker = workerEngine.addSa({ direction: "out", ...sa, seq: c.start });
      const viaInline = await runRouted(inlineEngine, "seal", packetsFor(outInline));
      const viaWorker = await runRouted(workerEngine, "seal", packetsFor(outWorker));
      assert.equal(viaInline.route, "inline", `${c.name}: ${inner.reduce((n, p) => n + p.length, 0)} B ran on a worker with inlineBytes 4096`);
      assert.equal(viaWorker.route, "worker", `${c.name}: ran inline with inlineBytes 0`);

      // Same statuses, sequence numbers and bytes, packet for packet.
      assert.deepEqual(viaInline.done.statuses, viaWorker.done.statuses, `${c.name}: statuses`);
      const limit = c.esn ? 0xffffffffffffffffn : 0xffffffffn;
      const expectedStatuses = inner.map((_, i): PacketStatus => (c.start + BigInt(i + 1) <= limit ? "ok" : "seq-exhausted"));
      assert.deepEqual(viaInline.done.statuses, expectedStatuses, `${c.name}: statuses`);
      const oneShot = new OutboundSa({ ...sa, seq: c.start });
      try {
        for (let i = 0; i < c.count; i++) {
          if (viaInline.done.statuses[i] !== "ok") continue;
          const seq = c.start + BigInt(i + 1);
          assert.equal(viaInline.done.seqs[i], seq, `${c.name}: packet ${i} seq`);
          assert.equal(viaWorker.done.seqs[i], seq, `${c.name}: packet ${i} seq (worker)`);
          const esp = viaInline.done.results[i]!;
          assert.equal(toHex(esp), toHex(viaWorker.done.results[i]!), `${c.name}: packet ${i}: inline and worker ESP packets differ ${seedNote}`);
          assert.equal(toHex(esp), toHex(oneShot.seal(inner[i]!, nextHeaders[i]!)), `${c.name}: packet ${i}: differs from OutboundSa ${seedNote}`);
          assert.equal(toHex(esp), toHex(nobleEsp(sa, seq, inner[i]!, nextHeaders[i]!)), `${c.name}: packet ${i}: differs from @noble/ciphers ${seedNote}`);
        }
      } finally {
        oneShot.destroy();
      }

      // They open: inline, on a worker, and (from sequence number 0) in InboundSa; a second inline open is a replay.
      // The engine's inbound SAs start where the outbound one did: with ESN, a window at 0 would put 0xffffffff in
      // the epoch before 0 (RFC 4303 A.2).
      const sealedOk = viaInline.done.results.filter((r): r is Uint8Array => r !== null);
      const innerOk = inner.filter((_, i) => viaInline.done.statuses[i] === "ok");
      const headersOk = nextHeaders.filter((_, i) => viaInline.done.statuses[i] === "ok");
      const inInline = inlineEngine.addSa({ direction: "in", ...sa, seq: c.start });
      const inWorker = workerEngine.addSa({ direction: "in", ...sa, seq: c.start });
      const openInline = await runRouted(inlineEngine, "open", sealedOk.map((data) => ({ sa: inInline, data })));
      const openWorker = await runRouted(workerEngine, "open", sealedOk.map((data) => ({ sa: inWorker, data })));
      assert.equal(openInline.route, "inline", `${c.name}: open ran on a worker`);
      assert.equal(openWorker.route, "worker", `${c.name}: open ran inline with inlineBytes 0`);
      const inboundSa = c.esn ? undefined : new InboundSa(sa);
      try {
        for (let i = 0; i < sealedOk.length; i++) {
          for (const [where, done] of [["inline", openInline.done], ["worker", openWorker.done]] as const) {
            assert.equal(done.statuses[i], "ok", `${c.name}: ${where} open of packet ${i} ${seedNote}`);
            assert.ok(equalBytes(done.results[i], innerOk[i]!), `${c.name}: ${where} open of packet ${i}: inner bytes ${seedNote}`);
            assert.equal(done.nextHeaders[i], headersOk[i]);
            assert.equal(done.seqs[i], c.start + BigInt(i + 1));
          }
          if (inboundSa === undefined) continue;
          const r = inboundSa.open(sealedOk[i]!);
          assert.equal(r.status, "ok", `${c.name}: InboundSa open of packet ${i}`);
          assert.ok(equalBytes(r.packet, innerOk[i]!));
        }
      } finally {
        inboundSa?.destroy();
      }
      const again = await runRouted(inlineEngine, "open", sealedOk.map((data) => ({ sa: inInline, data })));
      assert.equal(again.route, "inline");
      assert.deepEqual(again.done.statuses, sealedOk.map(() => "replay"), `${c.name}: second inline open`);
    }

    // The engine-wide counters: every batch on inlineEngine ran inline, none on workerEngine did.
    const si = inlineEngine.stats();
    const sw = workerEngine.stats();
    assert.equal(si.seal.inline, cases.length);
    assert.equal(si.seal.batches, cases.length);
    assert.equal(si.open.inline, 2 * cases.length);
    assert.equal(si.open.batches, 2 * cases.length);
    assert.equal(workerBatches(inlineEngine), 0, "no batch reached a worker");
    assert.equal(sw.seal.inline + sw.open.inline, 0);
    assert.equal(workerBatches(workerEngine), 2 * cases.length);
    assert.equal(si.seal.packets, sw.seal.packets);
    assert.deepEqual(si.seal.drops, sw.seal.drops);
    assert.deepEqual(si.seal.drops, { "seq-exhausted": 2 });
    assert.equal(si.slots.free, si.slots.total);
    assert.equal(si.inFlight, 0);
  });
});

describe("inline batches: which batches run inline", () => {
  test("inlineBytes 1000: a batch of 1000 input bytes runs inline, 1001 on a worker (seal and open)", async (t) => {
    const engine = await openEngine(t, { workers: 1, workerFilename: fixtureWorker("tracingWorker"), inlineBytes: 1000 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const sizesOf = (sizes: number[]): Pkt[] => sizes.map((n) => ({ sa: out, data: rng.bytes(n) }));
    const sealCases: { sizes: number[]; route: "inline" | "worker" }[] = [
      { sizes: [1000], route: "inline" },
      { sizes: [1001], route: "worker" },
      { sizes: [400, 400, 200], route: "inline" },
      { sizes: [400, 400, 201], route: "worker" },
      { sizes: [999], route: "inline" },
      { sizes: [0], route: "inline" },
      { sizes: Array.from({ length: 40 }, () => 25), route: "inline" },
      { sizes: [...Array.from({ length: 40 }, () => 25), 1], route: "worker" },
    ];
    let seq = 0n;
    for (const c of sealCases) {
      const { route, done } = await runRouted(engine, "seal", sizesOf(c.sizes));
      assert.equal(route, c.route, `seal of ${c.sizes.length} packets, ${c.sizes.reduce((a, b) => a + b, 0)} B in all`);
      assert.deepEqual(done.statuses, c.sizes.map(() => "ok"));
      assert.deepEqual(done.seqs, c.sizes.map(() => ++seq));
    }

    // Opening counts the ESP packets' bytes. ESP packets are multiples of 4 long: 1001 B is a 1000 B one and a 1 B runt.
    const peer = saKeys();
    const inb = engine.addSa({ direction: "in", ...peer });
    const inner = [innerForEsp(1000), innerForEsp(1000), innerForEsp(996), innerForEsp(1004)].map((n) => rng.bytes(n));
    const esp = peerSeal(peer, inner);
    assert.deepEqual(esp.map((e) => e.length), [1000, 1000, 996, 1004]);
    const openCases: { packets: Uint8Array[]; route: "inline" | "worker"; statuses: PacketStatus[] }[] = [
      { packets: [esp[0]!], route: "inline", statuses: ["ok"] },
      { packets: [esp[1]!, new Uint8Array([0x55])], route: "worker", statuses: ["ok", "truncated"] },
      { packets: [esp[2]!, new Uint8Array(4)], route: "inline", statuses: ["ok", "truncated"] },
      { packets: [esp[3]!], route: "worker", statuses: ["ok"] },
    ];
    for (const c of openCases) {
      const { route, done } = await runRouted(engine, "open", c.packets.map((data) => ({ sa: inb, data })));
      assert.equal(route, c.route, `open of ${c.packets.map((p) => p.length).join(" + ")} B`);
      assert.deepEqual(done.statuses, c.statuses);
    }
    const stats = engine.stats();
    assert.equal(stats.seal.inline, sealCases.filter((c) => c.route === "inline").length);
    assert.equal(stats.open.inline, 2);
    assert.equal(workerBatches(engine), sealCases.filter((c) => c.route === "worker").length + 2);
  });

  test("the default inlineBytes is 4096: 4096 input bytes inline, 4097 on a worker", async (t) => {
    const engine = await openEngine(t, { workers: 1, workerFilename: fixtureWorker("tracingWorker") });
    const out = engine.addSa({ direction: "out", ...saKeys() });
    const batch = (sizes: number[]): Pkt[] => sizes.map((n) => ({ sa: out, data: rng.bytes(n) }));
    assert.equal((await runRouted(engine, "seal", batch([1900, 1900, 296]))).route, "inline");
    assert.equal((await runRouted(engine, "seal", batch([1900, 1900, 297]))).route, "worker");
    // The convenient path takes the same route.
    const before = counts(engine);
    await engine.seal(out, [rng.bytes(1000), rng.bytes(1000)]);
    const after = counts(engine);
    assert.equal(after.seal.inline - before.seal.inline, 1, "engine.seal of 2000 B ran inline");
    assert.equal(after.worker, before.worker);
  });

  test("inlineBytes 0: no batch runs inline, not even one of a single empty packet", async (t) => {
    const engine = await openEngine(t, { workers: 1, workerFilename: fixtureWorker("tracingWorker"), inlineBytes: 0 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    const sealed: Uint8Array[] = [];
    for (const sizes of [[0], [1], [0, 0, 0], [40, 2]]) {
      const { route, done } = await runRouted(engine, "seal", sizes.map((n) => ({ sa: out, data: rng.bytes(n) })));
      assert.equal(route, "worker", `seal of ${sizes.join(" + ")} B`);
      sealed.push(...done.results.map((r) => r!));
    }
    for (const esp of sealed) {
      const { route, done } = await runRouted(engine, "open", [{ sa: inb, data: esp }]);
      assert.equal(route, "worker", `open of ${esp.length} B`);
      assert.deepEqual(done.statuses, ["ok"]);
    }
    const stats = engine.stats();
    assert.equal(stats.seal.inline, 0);
    assert.equal(stats.open.inline, 0);
    assert.equal(workerBatches(engine), 4 + sealed.length);
  });

  // Found by this test: inlineBytes was validated after the Piscina pool was
  // created, so a bad value rejected but left a worker thread running.
  test("a bad inlineBytes rejects with a RangeError naming it, before any worker starts", async (t) => {
    const bad: unknown[] = [-1, 1.5, "64", 2 ** 20 + 1, Number.NaN];
    const countThreads = existsSync("/proc/self/task") ? (): number => readdirSync("/proc/self/task").length : undefined;
    // Let the threads of a started-and-closed engine (here and in earlier tests) settle first.
    await (await createEngine({ workers: 1 })).close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = countThreads?.();
    for (const value of bad) {
      await assert.rejects(createEngine({ workers: 1, inlineBytes: value as number }),
        (e: Error) => e instanceof RangeError && /\binlineBytes\b/.test(e.message), `inlineBytes ${String(value)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (countThreads === undefined) {
      t.diagnostic("no /proc/self/task: thread count not checked");
      return;
    }
    const after = countThreads();
    assert.ok(after <= before!, `${bad.length} rejected createEngine calls left ${after - before!} more threads running (${before} before, ${after} after)`);
  });
});

describe("inline batches: in order with the workers' batches", () => {
  test("zero-copy, one SA: 100 interleaved worker and inline seal batches submitted without awaiting: callbacks in submission order, sequence numbers increasing in delivery order, each opens once", { timeout: 60_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, maxInFlight: 4, slots: 1024, workerFilename: fixtureWorker("tracingWorker") });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const BATCHES = 100;
    // Large: 16–24 packets of 1000–1400 B (over 4096 B: a worker). Small: 1–3 packets of 0–1300 B (at most 3900 B: inline).
    const kinds = Array.from({ length: BATCHES }, (_, b): "large" | "small" => (b < 2 ? (b === 0 ? "large" : "small") : rng.int(2) === 0 ? "large" : "small"));
    const inner = kinds.map((kind) => kind === "large"
      ? Array.from({ length: rng.range(16, 24) }, () => rng.bytes(rng.range(1000, 1400)))
      : Array.from({ length: rng.range(1, 3) }, () => rng.bytes(rng.range(0, 1300))));
    const small = kinds.filter((k) => k === "small").length;

    const delivered: number[] = [];
    const deliveredSeqs: number[] = [];
    const esp: Uint8Array[] = [];   // in delivery order
    const espInner: Uint8Array[] = [];
    const problems: string[] = [];
    let waits = 0;
    let heldBehindWorker = 0;       // inline batches submitted while a worker batch ahead of them was undelivered
    let workerOutstanding = 0;
    for (let index = 0; index < BATCHES; index++) {
      let batch = engine.beginBatch("seal");
      while (batch === null) {
        waits++;
        await within(once(engine, "drain"), 10_000, `no "drain" while waiting to submit batch ${index}`);
        batch = engine.beginBatch("seal");
      }
      for (const data of inner[index]!) {
        const slot = engine.acquireSlot();
        assert.ok(slot >= 0, "enough slots for every batch region");
        engine.bytes.set(data, engine.packetOffset(slot));
        batch.add(slot, out, data.length);
      }
      if (kinds[index] === "small" && workerOutstanding > 0) heldBehindWorker++;
      if (kinds[index] === "large") workerOutstanding++;
      engine.submit(batch, (b) => {
        try {
          if (kinds[index] === "large") workerOutstanding--;
          if (b.op !== "seal") problems.push(`a ${b.op} batch was delivered`);
          delivered.push(index);
          for (let i = 0; i < b.count; i++) {
            if (b.status(i) !== "ok") problems.push(`batch ${index} packet ${i}: ${b.status(i)}`);
            const packet = resultOf(engine, b, i);
            const onWire = wireSeq(packet);
            if (BigInt(onWire) !== b.seq(i)) problems.push(`batch ${index} packet ${i}: seq ${onWire} on the wire, ${b.seq(i)} in the descriptor`);
            deliveredSeqs.push(onWire);
            esp.push(packet);
            espInner.push(inner[index]![i]!);
          }
        } finally {
          b.release();
        }
      });
    }
    await within(engine.idle(), 20_000, "the batches were never all delivered");

    assert.deepEqual(problems.slice(0, 10), [], `${problems.length} problems ${seedNote}`);
    assert.deepEqual(delivered, Array.from({ length: BATCHES }, (_, b) => b), `callbacks out of submission order ${seedNote}`);
    for (let i = 1; i < deliveredSeqs.length; i++) {
      if (!(deliveredSeqs[i]! > deliveredSeqs[i - 1]!)) assert.fail(`sequence numbers not increasing in delivery order: ${deliveredSeqs[i - 1]} then ${deliveredSeqs[i]} (packet ${i}) ${seedNote}`);
    }
    assert.deepEqual(deliveredSeqs, Array.from({ length: deliveredSeqs.length }, (_, i) => i + 1));
    const stats = engine.stats();
    assert.equal(stats.seal.batches, BATCHES);
    assert.equal(stats.seal.inline, small, "every small batch ran inline");
    assert.equal(workerBatches(engine), BATCHES - small, "every large batch ran on a worker");
    assert.ok(waits > 0, "precondition: submissions ran into backpressure, so completions interleaved with them");
    assert.ok(heldBehindWorker > 0, "precondition: some inline batch was submitted behind a worker batch not yet delivered");
    t.diagnostic(`${esp.length} packets in ${BATCHES} batches (${small} inline); ${waits} waits for "drain"; ${heldBehindWorker} inline batches submitted behind an undelivered worker batch`);

    // Every packet opens in InboundSa ...
    const check = new InboundSa({ ...sa, replayWindow: 4096 });
    try {
      esp.forEach((packet, i) => {
        const r = check.open(packet);
        if (r.status !== "ok" || !equalBytes(r.packet, espInner[i]!)) assert.fail(`InboundSa opened packet ${i} as ${r.status} ${seedNote}`);
      });
    } finally {
      check.destroy();
    }

    // ... and in the engine, in mixed inline (1–2 ESP packets) and worker (16–32) open batches, twice:
    // shuffled within blocks of 64 the first time (each number accepted exactly once), all shuffled the second (all replays).
    const inb = engine.addSa({ direction: "in", ...sa, replayWindow: 4096 });
    const openPass = async (order: number[]): Promise<{ statuses: Map<number, PacketStatus[]>; inline: number; worker: number }> => {
      const statuses = new Map<number, PacketStatus[]>();
      const before = counts(engine);
      const openOrder: number[] = [];
      const wrong: string[] = [];
      for (let at = 0, b = 0; at < order.length; b++) {
        const size = Math.min(b % 2 === 0 ? rng.range(1, 2) : rng.range(16, 32), order.length - at);
        const members = order.slice(at, at + size);
        at += size;
        let batch = engine.beginBatch("open");
        while (batch === null) {
          await within(once(engine, "drain"), 10_000, "no drain (open)");
          batch = engine.beginBatch("open");
        }
        for (const k of members) {
          const slot = engine.acquireSlot();
          assert.ok(slot >= 0);
          engine.bytes.set(esp[k]!, engine.espOffset(slot));
          batch.add(slot, inb, esp[k]!.length);
        }
        const index = b;
        engine.submit(batch, (done) => {
          try {
            openOrder.push(index);
            members.forEach((k, i) => {
              const status = done.status(i);
              statuses.set(k + 1, [...(statuses.get(k + 1) ?? []), status]);
              if (status === "ok" && !equalBytes(resultOf(engine, done, i), espInner[k]!)) wrong.push(`seq ${k + 1}`);
            });
          } finally {
            done.release();
          }
        });
      }
      await within(engine.idle(), 20_000, "open batches never all delivered");
      assert.deepEqual(openOrder, Array.from({ length: openOrder.length }, (_, i) => i), "open callbacks out of submission order");
      assert.deepEqual(wrong, [], "opened to the wrong bytes");
      const after = counts(engine);
      return { statuses, inline: after.open.inline - before.open.inline, worker: after.worker - before.worker };
    };
    const blockShuffled = Array.from({ length: esp.length }, (_, i) => i);
    for (let at = 0; at < blockShuffled.length; at += 64) {
      const block = rng.shuffle(blockShuffled.slice(at, at + 64));
      blockShuffled.splice(at, block.length, ...block);
    }
    const first = await openPass(blockShuffled);
    const notOnce: string[] = [];
    for (let seq = 1; seq <= esp.length; seq++) {
      const s = first.statuses.get(seq);
      if (s === undefined || s.length !== 1 || s[0] !== "ok") notOnce.push(`seq ${seq}: ${JSON.stringify(s)}`);
    }
    assert.deepEqual(notOnce.slice(0, 10), [], `${notOnce.length} sequence numbers not accepted exactly once ${seedNote}`);
    assert.ok(first.inline > 0 && first.worker > 0, `precondition: both inline (${first.inline}) and worker (${first.worker}) open batches`);

    const second = await openPass(rng.shuffle(Array.from({ length: esp.length }, (_, i) => i)));
    const notReplay: string[] = [];
    for (let seq = 1; seq <= esp.length; seq++) {
      const s = second.statuses.get(seq);
      if (s === undefined || s.length !== 1 || s[0] !== "replay") notReplay.push(`seq ${seq}: ${JSON.stringify(s)}`);
    }
    assert.deepEqual(notReplay.slice(0, 10), [], `${notReplay.length} packets opened a second time not reported as "replay" ${seedNote}`);
    assert.ok(second.inline > 0 && second.worker > 0, `precondition: both inline (${second.inline}) and worker (${second.worker}) open batches`);
    const final = engine.stats();
    assert.equal(final.open.packets, esp.length);
    assert.equal(final.open.drops.replay, esp.length);
    assert.equal(final.slots.free, final.slots.total);
    assert.equal(final.sas.find((s) => s.direction === "in")!.seq, BigInt(esp.length));
  });

  test("one ESP packet opened in two inline batches submitted back to back: \"ok\", then \"replay\"; the same against a worker batch, either way round", async (t) => {
    const engine = await openEngine(t, { workers: 1, maxInFlight: 8, workerFilename: fixtureWorker("tracingWorker") });
    const peer = saKeys();
    const inb = engine.addSa({ direction: "in", ...peer, replayWindow: 1024 });
    // Packets 0…4: 100 B inner (inline alone); 5…10: 1400 B inner, three of which make a worker batch.
    const inner = [...Array.from({ length: 5 }, () => rng.bytes(100)), ...Array.from({ length: 6 }, () => rng.bytes(1400))];
    const esp = peerSeal(peer, inner);
    const pkt = (k: number): Pkt => ({ sa: inb, data: esp[k]! });
    const order: string[] = [];
    const log = (name: string) => (): void => { order.push(name); };

    // Two inline batches of packet 0, back to back: both are checked against the window before either commits.
    let before = counts(engine);
    const a = submitNow(engine, "open", [pkt(0)], log("a"));
    const b = submitNow(engine, "open", [pkt(0)], log("b"));
    const [da, db] = await within(Promise.all([a, b]), 10_000, "not delivered");
    assert.deepEqual([da.statuses, db.statuses], [["ok"], ["replay"]], "same packet in two inline batches back to back");
    assert.ok(equalBytes(da.results[0], inner[0]!));
    let after = counts(engine);
    assert.equal(after.open.inline - before.open.inline, 2, "both ran inline");
    assert.equal(after.worker, before.worker);

    // Three inline batches: packet 1 twice in one batch, then again in the next.
    const c = submitNow(engine, "open", [pkt(1), pkt(2), pkt(1)], log("c"));
    const d = submitNow(engine, "open", [pkt(2), pkt(1)], log("d"));
    const e = submitNow(engine, "open", [pkt(0)], log("e"));
    const [dc, dd, de] = await within(Promise.all([c, d, e]), 10_000, "not delivered");
    assert.deepEqual([dc.statuses, dd.statuses, de.statuses], [["ok", "ok", "replay"], ["replay", "replay"], ["replay"]]);

    // A worker batch holding packet 5, then an inline batch of packet 5: the worker's copy is the first, so it is the one accepted.
    before = counts(engine);
    const w1 = submitNow(engine, "open", [pkt(5), pkt(6), pkt(7)], log("w1"));
    const i1 = submitNow(engine, "open", [pkt(5)], log("i1"));
    // An inline batch of packet 8, then a worker batch holding packet 8: the inline copy is the first.
    const i2 = submitNow(engine, "open", [pkt(8)], log("i2"));
    const w2 = submitNow(engine, "open", [pkt(9), pkt(8), pkt(10)], log("w2"));
    const [dw1, di1, di2, dw2] = await within(Promise.all([w1, i1, i2, w2]), 10_000, "not delivered");
    after = counts(engine);
    assert.equal(after.open.inline - before.open.inline, 2, "i1 and i2 ran inline");
    assert.equal(after.worker - before.worker, 2, "w1 and w2 ran on the worker");
    assert.deepEqual(dw1.statuses, ["ok", "ok", "ok"], "worker batch before the inline copy");
    assert.deepEqual(di1.statuses, ["replay"], "inline copy after a worker batch holding it");
    assert.deepEqual(di2.statuses, ["ok"], "inline copy before a worker batch holding it");
    assert.deepEqual(dw2.statuses, ["ok", "replay", "ok"], "worker batch after the inline copy");
    assert.deepEqual(order, ["a", "b", "c", "d", "e", "w1", "i1", "i2", "w2"], "delivery order");

    const stats = engine.stats();
    assert.equal(stats.open.drops.replay, 1 + 1 + 2 + 1 + 1 + 1);
    assert.equal(stats.open.packets, 11 - 2); // packets 3 and 4 were never opened
    assert.equal(stats.sas.find((s) => s.direction === "in")!.seq, 11n);
  });
});

describe("inline batches: never re-entrant", () => {
  test("onComplete of an inline batch never runs inside submit(), also when submitted from another onComplete, and runs before the next macrotask", async (t) => {
    const engine = await openEngine(t, { workers: 1, maxInFlight: 16, workerFilename: fixtureWorker("tracingWorker") });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    let insideSubmit = false;
    const violations: string[] = [];
    let delivered = 0;

    /** Submits a one-packet batch, flagging the call; `then` runs in the callback (after the check). */
    const submitFlagged = (op: "seal" | "open", data: Uint8Array, name: string, then?: (batch: Batch) => void): void => {
      const batch = engine.beginBatch(op)!;
      const slot = engine.acquireSlot();
      engine.bytes.set(data, op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot));
      batch.add(slot, op === "seal" ? out : inb, data.length);
      insideSubmit = true;
      try {
        engine.submit(batch, (b) => {
          if (insideSubmit) violations.push(`${name}: onComplete ran inside submit()`);
          delivered++;
          try {
            then?.(b);
          } finally {
            b.release();
          }
        });
      } finally {
        insideSubmit = false;
      }
    };

    // 1. An inline seal batch on an idle engine (nothing ahead of it in order).
    const sealed: Uint8Array[] = [];
    let macrotaskRan = false;
    let deliveredBeforeMacrotask = false;
    setImmediate(() => (macrotaskRan = true));
    submitFlagged("seal", rng.bytes(64), "seal on an idle engine", (b) => {
      deliveredBeforeMacrotask = !macrotaskRan;
      sealed.push(resultOf(engine, b, 0));
    });
    assert.equal(delivered, 0, "delivered inside submit()");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(delivered, 1, "an inline batch was not delivered before the next macrotask");
    assert.ok(deliveredBeforeMacrotask, "an inline batch was delivered after a macrotask (setImmediate) queued at submission, not from a microtask");

    // 2. An inline open batch on an idle engine.
    submitFlagged("open", sealed[0]!, "open on an idle engine", (b) => assert.equal(b.status(0), "ok"));
    assert.equal(delivered, 1, "delivered inside submit()");
    await within(engine.idle(), 10_000, "not delivered");
    assert.equal(delivered, 2);

    // 3. A read loop: each onComplete submits the next inline batch, 30 deep, seal and open alternating.
    const chainDone = new Promise<void>((resolve) => {
      const step = (k: number): void => {
        if (k === 30) return resolve();
        const op = k % 2 === 0 ? "seal" : "open";
        const data = op === "seal" ? rng.bytes(rng.range(0, 200)) : sealed[sealed.length - 1]!;
        submitFlagged(op, data, `chained ${op} ${k}`, (b) => {
          if (op === "seal") sealed.push(resultOf(engine, b, 0));
          else if (b.status(0) !== "ok") violations.push(`chained open ${k}: ${b.status(0)}`);
          step(k + 1);
        });
      };
      step(0);
    });
    await within(chainDone, 10_000, "the chain of inline batches stalled");
    await within(engine.idle(), 10_000, "not idle");

    // 4. Inline batches queued behind a worker batch: when it is delivered, they are not delivered from inside a submit() either.
    const big = Array.from({ length: 4 }, () => rng.bytes(1400));
    const w = engine.beginBatch("seal")!;
    for (const data of big) {
      const slot = engine.acquireSlot();
      engine.bytes.set(data, engine.packetOffset(slot));
      w.add(slot, out, data.length);
    }
    const workerDelivered = new Promise<void>((resolve) => engine.submit(w, (b) => {
      // Submitting from inside the worker batch's onComplete, while inline batches wait behind it.
      submitFlagged("seal", rng.bytes(10), "submitted from a worker batch's onComplete");
      b.release();
      resolve();
    }));
    for (let k = 0; k < 5; k++) submitFlagged("seal", rng.bytes(50), `inline seal ${k} behind a worker batch`);
    await within(workerDelivered, 10_000, "worker batch not delivered");
    await within(engine.idle(), 10_000, "not idle");

    assert.deepEqual(violations, []);
    const stats = engine.stats();
    assert.equal(stats.seal.inline + stats.open.inline, 2 + 30 + 6);
    assert.equal(workerBatches(engine), 1);
  });

  test("close() right after submitting an inline batch delivers it first", async (t) => {
    const engine = await openEngine(t, { workers: 1 });
    const out = engine.addSa({ direction: "out", ...saKeys() });
    let status: PacketStatus | undefined;
    const batch = engine.beginBatch("seal")!;
    const slot = engine.acquireSlot();
    batch.add(slot, out, 20);
    engine.submit(batch, (b) => {
      status = b.status(0);
      b.release();
    });
    await within(engine.close(), 10_000, "close() never resolved with an inline batch in flight");
    assert.equal(status, "ok");
    assert.equal(engine.stats().seal.inline, 1);
  });
});

describe("inline batches behind a slow worker batch", () => {
  // faultyWorker is the real kernel worker plus markers; inline batches run on
  // the main thread's kernel and never see it, so the two combine directly.
  test("inline seal batches submitted after a slow worker seal batch are delivered after it; an inline open batch is not held by it", { timeout: 30_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, workerFilename: fixtureWorker("faultyWorker"), inlineBytes: 1000 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const peer = saKeys();
    const inb = engine.addSa({ direction: "in", ...peer });
    const [peerEsp] = peerSeal(peer, [rng.bytes(60)]);

    // A slow packet of 1200 B (over inlineBytes: a worker) starting with the marker.
    const slow = rng.bytes(1200);
    slow.set(new TextEncoder().encode(MARKER_SLOW));
    const log: { name: string; at: number; seqs: bigint[]; statuses: PacketStatus[] }[] = [];
    const started = performance.now();
    const record = (name: string) => (done: Done): void => {
      log.push({ name, at: performance.now() - started, seqs: done.seqs, statuses: done.statuses });
    };
    const before = counts(engine);
    const all = [
      submitNow(engine, "seal", [{ sa: out, data: rng.bytes(30) }], record("inline 0")),
      submitNow(engine, "seal", [{ sa: out, data: slow }], record("slow")),
      submitNow(engine, "seal", [{ sa: out, data: rng.bytes(100) }], record("inline 1")),
      submitNow(engine, "seal", [{ sa: out, data: rng.bytes(300) }, { sa: out, data: rng.bytes(300) }], record("inline 2")),
      submitNow(engine, "open", [{ sa: inb, data: peerEsp! }], record("inline open")),
      submitNow(engine, "seal", [{ sa: out, data: rng.bytes(1000) }], record("inline 3")),
    ];
    await within(Promise.all(all), 10_000, "not delivered");
    const after = counts(engine);
    assert.equal(after.seal.inline - before.seal.inline, 4, "four seal batches ran inline");
    assert.equal(after.open.inline - before.open.inline, 1, "the open batch ran inline");
    assert.equal(after.worker - before.worker, 1, "only the slow batch ran on a worker");

    const names = log.map((l) => l.name);
    assert.deepEqual(names.filter((n) => n !== "inline open"), ["inline 0", "slow", "inline 1", "inline 2", "inline 3"], "seal deliveries out of submission order");
    assert.ok(names.indexOf("inline open") < names.indexOf("slow"), `the inline open batch waited for the slow seal batch (another direction): ${names.join(", ")}`);
    const byName = new Map(log.map((l) => [l.name, l]));
    const slowAt = byName.get("slow")!.at;
    assert.ok(slowAt >= SLOW_MS * 0.9, `the slow batch was delivered at ${slowAt.toFixed(0)} ms, before it could have finished`);
    for (const name of ["inline 1", "inline 2", "inline 3"]) {
      const at = byName.get(name)!.at;
      assert.ok(at >= SLOW_MS * 0.9, `${name} delivered at ${at.toFixed(0)} ms, before the slow batch ahead of it finished`);
    }
    assert.deepEqual(log.filter((l) => l.name !== "inline open").map((l) => l.seqs), [[1n], [2n], [3n], [4n, 5n], [6n]], "sequence numbers in submission order");
    for (const l of log) assert.deepEqual(l.statuses, l.statuses.map(() => "ok"), `${l.name}: statuses`);
    t.diagnostic(log.map((l) => `${l.name} at ${l.at.toFixed(0)} ms`).join("; "));
  });
});
