// Proves the convenient path (engine.seal / engine.open, src/engine/convenient.ts)
// takes any number of packets: 1, 64, 2,000 and 100,000 come back in order
// (sealed packet i carries sequence number i + 1 and opens, in InboundSa, to
// inner packet i), with never more in flight than the call's window (all of
// a call that fits the engine, else half its batch regions), and all slots
// back afterwards. Opening a long stream with forged, truncated, replayed
// and foreign packets gives exactly the statuses a sequential InboundSa
// gives. Concurrent callers: two long calls run side by side; many retrying
// on "drain" all get through, each in order, with distinct sequence numbers.
// Backpressure: a call whose window is not free is refused at once (counted,
// nothing sealed) and goes through after "drain"; a long call leaves room
// for the zero-copy path. A seal that runs out of sequence numbers stops
// early and throws; close() and removeSa mid-call reject the call once its
// batches in flight are back, with every slot returned.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { OutboundSa, InboundSa, type PacketStatus } from "../../src/esp.js";
import { EngineError } from "../../src/engine/errors.js";
import { callWindow } from "../../src/engine/convenient.js";
import { Rng, SEED } from "../helpers.js";
import { openEngine, equalBytes, within, isCode } from "../fixtures/engineUtil.js";
import type { Engine } from "../../src/engine/engine.js";
import type { Batch } from "../../src/engine/batch.js";
import type { SaHandle } from "../../src/engine/saTable.js";

const rng = new Rng(SEED ^ 0xc0a7e);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

function saKeys(): { spi: number; key: Uint8Array; salt: Uint8Array } {
  return { spi: rng.range(1, 0xffffffff), key: rng.bytes(32), salt: rng.bytes(4) };
}

/** Inner packets of random lengths up to `max` (small ones keep 100,000 packets cheap). */
function innerPackets(count: number, max: number): Uint8Array[] {
  return Array.from({ length: count }, () => rng.bytes(rng.range(0, max)));
}

/**
 * Samples, every turn of the event loop until stopped, how many batch regions
 * and slots are taken: the most seen at once.
 */
function watchHeld(engine: Engine): { stop(): { batches: number; slots: number } } {
  let batches = 0, slots = 0, running = true;
  const sample = (): void => {
    batches = Math.max(batches, engine.layout.maxInFlight - engine.freeBatches);
    slots = Math.max(slots, engine.layout.slotCount - engine.freeSlots);
    if (running) setImmediate(sample);
  };
  sample();
  return { stop: () => ((running = false), { batches, slots }) };
}

/** Opens each ESP packet in a one-shot InboundSa of the same SA: it must be inner[i] with sequence number firstSeq + i. */
function assertInOrder(sa: ReturnType<typeof saKeys>, esp: Uint8Array[], inner: Uint8Array[], what: string): void {
  const oneShot = new InboundSa({ ...sa, replayWindow: 1024 });
  try {
    assert.equal(esp.length, inner.length, `${what}: one result per packet`);
    for (let i = 0; i < esp.length; i++) {
      const r = oneShot.open(esp[i]!);
      if (r.status !== "ok" || r.seq !== BigInt(i + 1) || !equalBytes(r.packet, inner[i]!)) {
        assert.fail(`${what}: result ${i} opened as ${r.status} with seq ${r.seq}, expected inner packet ${i} with seq ${i + 1} ${seedNote}`);
      }
    }
  } finally {
    oneShot.destroy();
  }
}

describe("engine.seal / engine.open of any number of packets", () => {
  for (const count of [1, 64, 2000, 100_000]) {
    test(`${count} packets: in order, bounded, every slot back`, { timeout: 120_000 }, async (t) => {
      const engine = await openEngine(t, { workers: 2, slots: 4096, batchSize: 64, maxInFlight: 8 });
      const sa = saKeys();
      const out = engine.addSa({ direction: "out", ...sa });
      const inb = engine.addSa({ direction: "in", ...sa, replayWindow: 1024 });
      const inner = innerPackets(count, count > 10_000 ? 300 : 1400);
      const window = callWindow(engine.layout, count);

      const watch = watchHeld(engine);
      const esp = await engine.seal(out, inner);
      const held = watch.stop();
      assertInOrder(sa, esp, inner, `seal of ${count}`);
      assert.ok(held.batches <= window.batches, `${held.batches} batch regions held at once, the window is ${window.batches}`);
      assert.ok(held.slots <= window.batches * window.chunk, `${held.slots} slots held at once, the window is ${window.batches * window.chunk}`);
      if (count > engine.layout.batchSize * engine.layout.maxInFlight) {
        assert.equal(window.batches, engine.layout.maxInFlight / 2, "a long call gets half the batch regions");
      }

      const watchOpen = watchHeld(engine);
      const opened = await engine.open(inb, esp);
      const heldOpen = watchOpen.stop();
      assert.ok(heldOpen.batches <= window.batches, `opening held ${heldOpen.batches} batch regions at once`);
      for (let i = 0; i < count; i++) {
        if (opened.statuses[i] !== "ok" || !equalBytes(opened.packets[i], inner[i]!)) {
          assert.fail(`open of ${count}: packet ${i} came back ${opened.statuses[i]} ${seedNote}`);
        }
      }
      const stats = engine.stats();
      assert.equal(stats.slots.free, stats.slots.total);
      assert.equal(stats.inFlight, 0);
      assert.equal(stats.backpressure, 0);
      assert.equal(stats.seal.packets, count);
      assert.equal(stats.open.packets, count);
      assert.equal(engine.saSeq(out), BigInt(count));
    });
  }

  test("opening a long stream gives the statuses a sequential InboundSa gives", { timeout: 60_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 512, batchSize: 32, maxInFlight: 8 });
    const sa = saKeys();
    const inb = engine.addSa({ direction: "in", ...sa, replayWindow: 4096 });
    const sender = new OutboundSa(sa);
    const foreign = new OutboundSa(saKeys());
    const stream: Uint8Array[] = [];
    try {
      for (let i = 0; i < 3000; i++) {
        const esp = sender.seal(rng.bytes(rng.range(0, 1400)));
        const roll = rng.range(0, 99);
        if (roll < 4) esp[rng.range(16, esp.length - 1)]! ^= 1 << rng.range(0, 7); // forged: auth
        stream.push(roll === 4 ? esp.subarray(0, rng.range(0, 15)) : esp); // truncated
        if (roll === 5) stream.push(foreign.seal(rng.bytes(100))); // another SA's SPI
        // A copy a few packets later, in the same batch or one opened at the same time: replay.
        if (roll >= 6 && roll < 10) stream.splice(stream.length - rng.range(0, 3), 0, esp);
      }
    } finally {
      sender.destroy();
      foreign.destroy();
    }
    const model = new InboundSa({ ...sa, replayWindow: 4096 });
    const expected: PacketStatus[] = stream.map((esp) => model.open(esp).status);
    model.destroy();
    assert.ok(new Set(expected).size >= 5, `precondition: the stream has ok, auth, truncated, unknown-sa and replay packets, got ${[...new Set(expected)]}`);

    const { statuses, packets } = await engine.open(inb, stream);
    assert.equal(statuses.length, stream.length);
    for (let i = 0; i < stream.length; i++) {
      if (statuses[i] !== expected[i]) assert.fail(`packet ${i}: ${statuses[i]}, InboundSa says ${expected[i]} ${seedNote}`);
      assert.equal(packets[i] === null, statuses[i] !== "ok");
    }
    assert.equal(engine.freeSlots, engine.layout.slotCount);
  });
});

describe("concurrent callers", () => {
  test("two long calls run side by side, each in order, without backpressure", { timeout: 60_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 4096, batchSize: 64, maxInFlight: 8 });
    const a = saKeys(), b = saKeys();
    const outA = engine.addSa({ direction: "out", ...a });
    const outB = engine.addSa({ direction: "out", ...b });
    const innerA = innerPackets(3000, 1400), innerB = innerPackets(3000, 1400);
    const [espA, espB] = await Promise.all([engine.seal(outA, innerA), engine.seal(outB, innerB)]);
    assertInOrder(a, espA, innerA, "caller A");
    assertInOrder(b, espB, innerB, "caller B");
    assert.equal(engine.stats().backpressure, 0);
    assert.equal(engine.freeSlots, 4096);
  });

  test("many callers retrying on 'drain' all get through, each in order, with distinct sequence numbers", { timeout: 60_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 256, batchSize: 16, maxInFlight: 8 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    engine.setMaxListeners(100);
    let refusals = 0;
    async function sealWithRetry(packets: Uint8Array[]): Promise<Uint8Array[]> {
      for (;;) {
        try {
          return await engine.seal(out, packets);
        } catch (error) {
          if (!(error instanceof EngineError) || error.code !== "backpressure") throw error;
          refusals++;
          await once(engine, "drain");
        }
      }
    }
    // Short calls that fit the engine and long ones that are pipelined, all at once.
    const calls = Array.from({ length: 12 }, (_, i) => innerPackets(i % 3 === 0 ? rng.range(300, 2000) : rng.range(1, 100), 1400));
    const sealed = await within(Promise.all(calls.map(sealWithRetry)), 50_000, "callers waiting for 'drain' were never woken");
    assert.ok(refusals > 0, "precondition: the callers met backpressure");
    assert.equal(engine.stats().backpressure, refusals);

    const oneShot = new InboundSa({ ...sa, replayWindow: 65536 });
    try {
      const seqs = new Set<bigint>();
      sealed.forEach((esps, c) => {
        assert.equal(esps.length, calls[c]!.length);
        let last = 0n;
        esps.forEach((esp, i) => {
          const r = oneShot.open(esp);
          assert.equal(r.status, "ok", `call ${c} packet ${i} ${seedNote}`);
          assert.ok(equalBytes(r.packet, calls[c]![i]!), `call ${c} packet ${i}: not its inner packet ${seedNote}`);
          assert.ok(r.seq! > last, `call ${c}: packet ${i} has seq ${r.seq} after ${last}: out of order ${seedNote}`);
          last = r.seq!;
          seqs.add(r.seq!);
        });
      });
      const total = calls.reduce((n, c) => n + c.length, 0);
      assert.equal(seqs.size, total);
      assert.equal(engine.saSeq(out), BigInt(total));
    } finally {
      oneShot.destroy();
    }
    assert.equal(engine.freeSlots, 256);
  });
});

describe("backpressure and stopping", () => {
  test("a call whose window is not free is refused at once, seals nothing, and goes through after 'drain'", { timeout: 20_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 1, slots: 64, batchSize: 8, maxInFlight: 4 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const held: Batch[] = [];
    for (let i = 0; i < 3; i++) held.push(engine.beginBatch("seal")!); // one region left; a long call's window is 2
    const inner = innerPackets(500, 1000);
    await assert.rejects(engine.seal(out, inner), isCode("backpressure"));
    // A short call fits the one region left: not refused.
    const garbage = await engine.open(engine.addSa({ direction: "in", ...sa }), [rng.bytes(100)]);
    assert.notEqual(garbage.statuses[0], "ok");
    assert.equal(engine.stats().backpressure, 1);
    assert.equal(engine.saSeq(out), 0n, "nothing was sealed");
    assert.equal(engine.freeSlots, 64, "no slot was taken");
    const drained = once(engine, "drain");
    for (const batch of held) batch.release();
    await within(drained, 2000, "no 'drain' after the regions came back");
    assertInOrder(sa, await engine.seal(out, inner), inner, "after drain");
  });

  test("a long call leaves half the engine to others: the zero-copy path gets a batch, a second long call too, a third is refused", { timeout: 30_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 1024, batchSize: 16, maxInFlight: 8 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const first = engine.seal(out, innerPackets(5000, 1400));
    const batch = engine.beginBatch("seal");
    assert.ok(batch !== null, "the zero-copy path found no batch region while a long call ran");
    batch.release();
    const second = engine.seal(out, innerPackets(5000, 1400));
    await assert.rejects(engine.seal(out, innerPackets(5000, 1400)), isCode("backpressure"));
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.length + b.length, 10_000);
    assert.equal(engine.saSeq(out), 10_000n);
    assert.equal(engine.freeSlots, 1024);
  });

  test("a seal that runs out of sequence numbers stops early and throws seq-exhausted", { timeout: 20_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 1024, batchSize: 16, maxInFlight: 8 });
    const out = engine.addSa({ direction: "out", ...saKeys(), seq: 0xffffffffn - 100n });
    await assert.rejects(engine.seal(out, innerPackets(5000, 200)), isCode("seq-exhausted"));
    const stats = engine.stats();
    const window = callWindow(engine.layout, 5000);
    const exhausted = stats.seal.drops["seq-exhausted"] ?? 0;
    assert.ok(exhausted > 0 && exhausted <= window.batches * window.chunk, `${exhausted} packets failed: it went on past the first failing batch`);
    assert.equal(stats.seal.packets, 100, "the 100 numbers left were used");
    assert.equal(stats.slots.free, 1024);
    assert.equal(stats.inFlight, 0);
  });

  test("close() mid-call rejects the call with 'closed' once its batches are back, without sealing the rest", { timeout: 30_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 1024, batchSize: 16, maxInFlight: 8 });
    const out = engine.addSa({ direction: "out", ...saKeys() });
    const call = engine.seal(out, innerPackets(100_000, 1400));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const closed = engine.close();
    await assert.rejects(within(call, 10_000, "the call never settled after close()"), isCode("closed"));
    await within(closed, 10_000, "close() waited for the rest of the call");
    assert.ok(engine.stats().seal.packets < 100_000, "the rest was sealed anyway");
  });

  test("removeSa mid-call rejects the call once its batches are back, every slot returned", { timeout: 30_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 1024, batchSize: 16, maxInFlight: 8 });
    const sa = saKeys();
    const inb = engine.addSa({ direction: "in", ...sa, replayWindow: 1024 });
    const sender = new OutboundSa(sa);
    const esp = Array.from({ length: 20_000 }, () => sender.seal(rng.bytes(rng.range(0, 1400))));
    sender.destroy();
    const call = engine.open(inb, esp);
    await new Promise((resolve) => setTimeout(resolve, 10));
    engine.removeSa(inb);
    await assert.rejects(within(call, 10_000, "the call never settled after removeSa"), (e) => e instanceof TypeError && /was removed/.test(e.message));
    assert.equal(engine.freeSlots, 1024);
    assert.equal(engine.inFlight, 0);
  });

  test("a bad packet anywhere in a long array is refused before anything is sealed", async (t) => {
    const engine = await openEngine(t, { workers: 1 });
    const out: SaHandle = engine.addSa({ direction: "out", ...saKeys() });
    const inner: unknown[] = innerPackets(2000, 100);
    inner[1999] = "not bytes";
    await assert.rejects(engine.seal(out, inner as Uint8Array[]), (e) => e instanceof TypeError && /packets\[1999\] must be a Uint8Array, got string/.test(e.message));
    inner[1999] = new Uint8Array(engine.maxPacket + 1);
    await assert.rejects(engine.seal(out, inner as Uint8Array[]), (e) => e instanceof RangeError && /packets\[1999\]/.test(e.message));
    assert.equal(engine.saSeq(out), 0n);
  });
});
