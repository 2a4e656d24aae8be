// Proves the multi-threaded engine (src/engine) seals and opens exactly what
// the one-shot ESP API (src/esp.ts) does: every inner packet size 0…1500
// round-trips through the engine with 1, 2 and 4 workers, the engine's ESP
// packets are byte for byte those OutboundSa makes with the same key, salt
// and SPI and open with InboundSa, and OutboundSa's open in the engine; mixed
// zero-copy batches (random sizes, several SAs in one batch, next header 4
// and 41) do the same. Also: packets of the largest size a slot holds
// round-trip, bad options and calls fail with errors that name the problem,
// and Batch.add refuses what its slot cannot hold.
//
// Related files: engine-order (in-order completion under load),
// engine-replay (concurrent anti-replay), engine-lifecycle (backpressure,
// close, removeSa), engine-faults (dying workers), engine-heap (no growth
// over a million packets), engine-convenient (seal/open of any number of
// packets, pipelined).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createEngine } from "../../src/engine/engine.js";
import { OutboundSa, InboundSa } from "../../src/esp.js";
import { Rng, SEED } from "../helpers.js";
import { openEngine, pipeline, resultOf, equalBytes, type BatchSpec, type PacketSpec , ENGINE_CIPHERS, randomSaKeys, type SaKeys } from "../fixtures/engineUtil.js";
import type { EspCipher } from "../../src/kernel/cipher.js";
import type { SaHandle } from "../../src/engine/saTable.js";

const rng = new Rng(SEED ^ 0xe591e);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

function saKeys(cipher: EspCipher = "chacha20poly1305"): SaKeys {
  return randomSaKeys(rng, cipher);
}

for (const cipher of ENGINE_CIPHERS) describe(`engine round trips, checked against the one-shot ESP API (${cipher})`, () => {
  const sizes = Array.from({ length: 1501 }, (_, n) => n);

  for (const workers of [1, 2, 4]) {
    test(`every inner size 0…1500 with ${workers} worker(s): engine.seal = OutboundSa.seal, opens in the engine and in InboundSa`, async (t) => {
      const engine = await openEngine(t, { workers });
      const sa = saKeys(cipher);
      const out = engine.addSa({ direction: "out", ...sa });
      const inb = engine.addSa({ direction: "in", ...sa, replayWindow: 2048 });
      const packets = sizes.map((n) => rng.bytes(n));

      const sealed = await engine.seal(out, packets);
      assert.equal(sealed.length, packets.length);
      const oneShotOut = new OutboundSa(sa);
      const oneShotIn = new InboundSa({ ...sa, replayWindow: 2048 });
      try {
        for (let i = 0; i < packets.length; i++) {
          // The IV is the sequence number, so the same SA sealing the same packets gives the same bytes.
          if (!equalBytes(sealed[i], oneShotOut.seal(packets[i]!))) assert.fail(`engine ESP packet ${i} (inner ${sizes[i]} B) differs from OutboundSa's ${seedNote}`);
          const r = oneShotIn.open(sealed[i]!);
          if (r.status !== "ok" || !equalBytes(r.packet, packets[i]!) || r.nextHeader !== 4 || r.seq !== BigInt(i + 1)) {
            assert.fail(`InboundSa opened engine packet ${i} (inner ${sizes[i]} B) as ${r.status}, seq ${r.seq} ${seedNote}`);
          }
        }
      } finally {
        oneShotOut.destroy();
        oneShotIn.destroy();
      }

      const opened = await engine.open(inb, sealed);
      for (let i = 0; i < packets.length; i++) {
        if (opened.statuses[i] !== "ok" || !equalBytes(opened.packets[i], packets[i]!)) {
          assert.fail(`engine opened its own packet ${i} (inner ${sizes[i]} B) as ${opened.statuses[i]} ${seedNote}`);
        }
      }

      // And the other way: OutboundSa seals, the engine opens.
      const other = saKeys(cipher);
      const fromOneShot = new OutboundSa(other);
      const inbOther = engine.addSa({ direction: "in", ...other, replayWindow: 2048 });
      let esp: Uint8Array[];
      try {
        esp = packets.map((p) => fromOneShot.seal(p));
      } finally {
        fromOneShot.destroy();
      }
      const openedOther = await engine.open(inbOther, esp);
      for (let i = 0; i < packets.length; i++) {
        if (openedOther.statuses[i] !== "ok" || !equalBytes(openedOther.packets[i], packets[i]!)) {
          assert.fail(`engine opened OutboundSa packet ${i} (inner ${sizes[i]} B) as ${openedOther.statuses[i]} ${seedNote}`);
        }
      }

      const stats = engine.stats();
      const totalBytes = sizes.reduce((a, b) => a + b, 0);
      assert.equal(stats.seal.packets, packets.length);
      assert.equal(stats.seal.bytes, totalBytes);
      assert.equal(stats.open.packets, 2 * packets.length);
      assert.equal(stats.open.bytes, 2 * totalBytes);
      assert.deepEqual(stats.seal.drops, {});
      assert.deepEqual(stats.open.drops, {});
      assert.equal(stats.inFlight, 0);
      assert.equal(stats.slots.free, stats.slots.total);
      assert.equal(stats.sas.find((s) => s.direction === "out")!.seq, BigInt(packets.length));
    });
  }

  for (const workers of [1, 2, 4]) {
    test(`mixed zero-copy batches with ${workers} worker(s): random sizes, three SAs per batch, next header 4 and 41`, async (t) => {
      const engine = await openEngine(t, { workers });
      // Three SAs per batch, of three ciphers: ChaCha20 and AES packets share batches.
      const params = [saKeys(cipher), saKeys("aes128gcm16"), saKeys("chacha20poly1305")];
      const outs = params.map((p) => engine.addSa({ direction: "out", ...p }));
      const ins = params.map((p) => engine.addSa({ direction: "in", ...p }));

      interface Item { sa: number; inner: Uint8Array; nextHeader: number; esp?: Uint8Array; seq?: bigint }
      const batches: Item[][] = [];
      for (let b = 0; b < 60; b++) {
        batches.push(Array.from({ length: rng.range(1, 64) }, () => ({
          sa: rng.int(3),
          inner: rng.bytes(rng.int(4) === 0 ? rng.range(0, 40) : rng.range(0, 1500)),
          nextHeader: rng.int(4) === 0 ? 41 : 4,
        })));
      }
      const sealSpecs: BatchSpec[] = batches.map((items) => ({
        op: "seal",
        packets: items.map((it): PacketSpec => ({ sa: outs[it.sa]!, data: it.inner, nextHeader: it.nextHeader })),
      }));
      await pipeline(engine, sealSpecs, (batch, index) => {
        batches[index]!.forEach((it, i) => {
          assert.equal(batch.status(i), "ok", `seal batch ${index} packet ${i}`);
          it.esp = resultOf(engine, batch, i);
          it.seq = batch.seq(i);
        });
      });

      // Per SA, sequence numbers run 1, 2, 3… in submission order, and InboundSa opens every packet.
      const oneShot = params.map((p) => new InboundSa(p));
      try {
        const next = [1n, 1n, 1n];
        for (const items of batches) {
          for (const it of items) {
            assert.equal(it.seq, next[it.sa]!++, `sequence number of SA ${it.sa} ${seedNote}`);
            const r = oneShot[it.sa]!.open(it.esp!);
            if (r.status !== "ok" || !equalBytes(r.packet, it.inner) || r.nextHeader !== it.nextHeader) {
              assert.fail(`InboundSa opened an engine packet (SA ${it.sa}, ${it.inner.length} B, next header ${it.nextHeader}) as ${r.status} ${seedNote}`);
            }
          }
        }
      } finally {
        for (const sa of oneShot) sa.destroy();
      }

      // The engine opens them again, in batches mixing the SAs the same way.
      const openSpecs: BatchSpec[] = batches.map((items) => ({
        op: "open",
        packets: items.map((it): PacketSpec => ({ sa: ins[it.sa]!, data: it.esp! })),
      }));
      await pipeline(engine, openSpecs, (batch, index) => {
        batches[index]!.forEach((it, i) => {
          assert.equal(batch.status(i), "ok", `open batch ${index} packet ${i} ${seedNote}`);
          assert.ok(equalBytes(resultOf(engine, batch, i), it.inner), `open batch ${index} packet ${i}: inner bytes ${seedNote}`);
          assert.equal(batch.nextHeader(i), it.nextHeader);
          assert.equal(batch.seq(i), it.seq);
        });
      });
      const stats = engine.stats();
      const count = batches.reduce((n, items) => n + items.length, 0);
      assert.equal(stats.seal.packets, count);
      assert.equal(stats.open.packets, count);
      assert.equal(stats.slots.free, stats.slots.total);
      for (const s of stats.sas) assert.equal(s.packets, batches.flat().filter((it) => params[it.sa]!.spi === s.spi).length);
    });
  }

  test("the largest inner packet a slot holds round-trips: engine.open takes every ESP packet engine.seal made", async (t) => {
    // maxPacket = slotSize − 64 (headroom) − 21 (most trailer); its ESP packet is up to maxPacket + 37 bytes
    // and fits a slot exactly (placed 16 bytes before the inner packet). engine.open must accept it.
    const engine = await openEngine(t, { workers: 1, slotSize: 256, slots: 16 });
    const sa = saKeys(cipher);
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    const packets = Array.from({ length: 8 }, (_, i) => rng.bytes(engine.maxPacket - 7 + i));
    const sealed = await engine.seal(out, packets);
    const failures: string[] = [];
    for (let i = 0; i < packets.length; i++) {
      try {
        const r = await engine.open(inb, [sealed[i]!]);
        if (r.statuses[0] !== "ok" || !equalBytes(r.packets[0], packets[i]!)) failures.push(`inner ${packets[i]!.length} B: ${r.statuses[0]}`);
      } catch (error) {
        failures.push(`inner ${packets[i]!.length} B (ESP ${sealed[i]!.length} B): ${(error as Error).message}`);
      }
    }
    assert.deepEqual(failures, [], `maxPacket ${engine.maxPacket}, slotSize 256`);
  });
});

describe("engine validation: errors name the option or parameter", () => {
  test("bad options reject with a RangeError naming the option, before any worker starts", async () => {
    await assert.rejects(createEngine({ workers: 0 }), (e: Error) => e instanceof RangeError && /\bworkers\b/.test(e.message));
    await assert.rejects(createEngine({ workers: 1.5 }), (e: Error) => e instanceof RangeError && /\bworkers\b/.test(e.message));
    await assert.rejects(createEngine({ batchSize: "x" as unknown as number }), (e: Error) => e instanceof RangeError && /\bbatchSize\b/.test(e.message));
    await assert.rejects(createEngine({ slotSize: 100 }), (e: Error) => e instanceof RangeError && /\bslotSize\b/.test(e.message));
    await assert.rejects(createEngine({ slots: -1 }), (e: Error) => e instanceof RangeError && /\bslots\b/.test(e.message));
    await assert.rejects(createEngine({ maxInFlight: 0 }), (e: Error) => e instanceof RangeError && /\bmaxInFlight\b/.test(e.message));
    await assert.rejects(createEngine({ maxSas: 0 }), (e: Error) => e instanceof RangeError && /\bmaxSas\b/.test(e.message));
    await assert.rejects(createEngine({ maxReplayWindow: 32 }), (e: Error) => e instanceof RangeError && /\bmaxReplayWindow\b/.test(e.message));
    // More memory than wasm32 addresses.
    await assert.rejects(createEngine({ slots: 1 << 20, slotSize: 65536 }), (e: Error) => e instanceof RangeError && /memory/.test(e.message));
  });

  test("addSa, removeSa, seal and open reject bad calls with errors naming the problem", async (t) => {
    const engine = await openEngine(t, { workers: 1, slots: 64, maxReplayWindow: 1024 });
    const sa = saKeys();
    assert.throws(() => engine.addSa({ ...sa, direction: "sideways" as "in" }), (e: Error) => e instanceof TypeError && /direction/.test(e.message));
    assert.throws(() => engine.addSa({ ...sa } as never), (e: Error) => e instanceof TypeError && /direction/.test(e.message));
    assert.throws(() => engine.addSa({ ...sa, direction: "in", replayWindow: 2048 }),
      (e: Error) => e instanceof RangeError && /replayWindow/.test(e.message) && /1024/.test(e.message));
    assert.throws(() => engine.addSa({ ...sa, direction: "in", replayWindow: 100 }), (e: Error) => e instanceof RangeError && /replayWindow/.test(e.message));
    assert.throws(() => engine.addSa({ ...sa, direction: "out", key: new Uint8Array(16) }), (e: Error) => e instanceof TypeError && /\bkey\b/.test(e.message));
    assert.throws(() => engine.addSa({ ...sa, direction: "out", spi: 0 }), (e: Error) => e instanceof RangeError && /\bspi\b/.test(e.message));

    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    engine.removeSa(inb);
    assert.throws(() => engine.removeSa(inb), (e: Error) => e instanceof TypeError && /already removed/.test(e.message));
    const inb2 = engine.addSa({ direction: "in", ...sa });

    await assert.rejects(engine.seal(out, [new Uint8Array(engine.maxPacket + 1)]),
      (e: Error) => e instanceof RangeError && /packets\[0\]/.test(e.message) && e.message.includes(String(engine.maxPacket)));
    await assert.rejects(engine.seal(inb2, [new Uint8Array(10)]), (e: Error) => e instanceof TypeError && /inbound/.test(e.message) && /sealing/.test(e.message));
    await assert.rejects(engine.open(out, [new Uint8Array(40)]), (e: Error) => e instanceof TypeError && /outbound/.test(e.message) && /opening/.test(e.message));
    await assert.rejects(engine.seal(out, [new Uint8Array(4), "no" as unknown as Uint8Array]), (e: Error) => e instanceof TypeError && /packets\[1\]/.test(e.message));
    await assert.rejects(engine.seal(out, "no" as unknown as Uint8Array[]), TypeError);
    await assert.rejects(engine.seal({} as SaHandle, [new Uint8Array(4)]), TypeError);
    assert.throws(() => engine.beginBatch("both" as "seal"), (e: Error) => e instanceof TypeError && /op/.test(e.message));

    // Nothing was taken by the refused calls.
    const stats = engine.stats();
    assert.equal(stats.slots.free, stats.slots.total);
    assert.equal(stats.inFlight, 0);
    assert.equal(stats.seal.batches + stats.open.batches, 0);
    // And the engine still works.
    const [esp] = await engine.seal(out, [new Uint8Array([1, 2, 3])]);
    assert.deepEqual((await engine.open(inb2, [esp!])).statuses, ["ok"]);
  });

  // BUG (src/engine/batch.ts Batch.add): the zero-copy path checks the SA but
  // neither the length nor the slot, so a length beyond what the slot holds
  // makes the kernel seal over the next slot's packet (another caller's,
  // perhaps another SA's), and a slot outside the pool reaches the kernel.
  test("Batch.add refuses a length its slot cannot hold, and a slot that is not the engine's", async (t) => {
    const engine = await openEngine(t, { workers: 1, slotSize: 256, slots: 4 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    const espLimit = engine.layout.slotSize - (engine.espOffset(0) - engine.layout.slotsAt); // from espOffset to the slot's end
    const failures: string[] = [];
    /** Adds one packet to a fresh batch; a RangeError is the right answer. */
    const attempt = (what: string, op: "seal" | "open", slot: number | "fresh", length: number): void => {
      const batch = engine.beginBatch(op)!;
      const own = slot === "fresh" ? engine.acquireSlot() : slot;
      try {
        batch.add(own, op === "seal" ? out : inb, length);
        failures.push(`${what}: accepted`);
        if (slot === "fresh") batch.release(); // the batch holds our slot now; a foreign slot could not be released
      } catch (error) {
        if (!(error instanceof RangeError)) failures.push(`${what}: ${String(error)}`);
        batch.release();
        if (slot === "fresh") engine.releaseSlot(own);
      }
    };
    attempt(`seal of ${engine.maxPacket + 1} B (slots hold ${engine.maxPacket}; the trailer and ICV would overwrite the next slot)`, "seal", "fresh", engine.maxPacket + 1);
    attempt(`open of ${espLimit + 1} B (an ESP packet in a slot holds at most ${espLimit})`, "open", "fresh", espLimit + 1);
    attempt(`slot ${engine.layout.slotCount} (beyond the pool)`, "seal", engine.layout.slotCount, 10);
    attempt("slot -1", "seal", -1, 10);
    assert.deepEqual(failures, []);
  });
});
