// Proves the zero-copy path does not grow the JavaScript heap per packet: a
// million 64-byte packets are sealed in batches of 64 (acquire a slot, write
// the packet, add, submit, release on completion, about 8 batches in flight)
// and each sealed batch is opened again in a batch of its own. The heap is
// measured after a full GC once 100 000 packets warmed everything up, and
// again at the end; a leak of even 16 bytes per packet would add 14 MB over
// the remaining 900 000, so the growth must stay under 4 MB.
//
// Runs in its own file, so its test process measures only this.
import { test } from "node:test";
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import { Rng, SEED } from "../helpers.js";
import { openEngine } from "../fixtures/engineUtil.js";
import type { Engine } from "../../src/engine/engine.js";
import type { Batch } from "../../src/engine/batch.js";
import type { SaHandle } from "../../src/engine/saTable.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

const rng = new Rng(SEED ^ 0x4ea9);
const PACKET = 64;
const BATCH = 64;
const IN_FLIGHT = 8;
const WARM_UP = 100_000;
const TOTAL = 1_000_000;
const GROWTH_LIMIT = 4 * 1024 * 1024;

/**
 * Seals `packets` packets and opens each sealed batch again, allocating
 * nothing per packet or per batch on the way (one callback per direction,
 * one packet buffer, counters in plain numbers).
 */
function run(engine: Engine, out: SaHandle, inb: SaHandle, packets: number, packet: Uint8Array): Promise<{ sealed: number; opened: number; bad: number }> {
  return new Promise((resolve, reject) => {
    const bytes = engine.bytes;
    let sealSubmitted = 0;
    let sealed = 0;
    let opened = 0;
    let bad = 0;
    let failure: unknown;

    const finish = (): void => {
      if (failure !== undefined) reject(failure);
      else resolve({ sealed, opened, bad });
    };

    const onOpened = (batch: Batch): void => {
      for (let i = 0; i < batch.count; i++) {
        // The inner packet is back where it was written, byte for byte (first and last byte checked).
        if (batch.statusCode(i) !== 0 || batch.length(i) !== PACKET || bytes[batch.offset(i)] !== packet[0] || bytes[batch.offset(i) + PACKET - 1] !== packet[PACKET - 1]) bad++;
      }
      opened += batch.count;
      batch.release();
      if (opened === packets) finish();
      else pump();
    };

    const onSealed = (batch: Batch): void => {
      try {
        const open = engine.beginBatch("open");
        if (open === null) throw new Error("no batch region for the open batch");
        for (let i = 0; i < batch.count; i++) {
          if (batch.statusCode(i) !== 0) bad++;
          const slot = engine.acquireSlot();
          if (slot < 0) throw new Error("no slot for the open batch");
          const from = batch.offset(i);
          const length = batch.length(i);
          bytes.copyWithin(engine.espOffset(slot), from, from + length);
          open.add(slot, inb, length);
        }
        sealed += batch.count;
        batch.release();
        engine.submit(open, onOpened);
      } catch (error) {
        failure ??= error;
        batch.release();
      }
      pump();
    };

    const pump = (): void => {
      while (failure === undefined && sealSubmitted < packets && engine.inFlight < IN_FLIGHT) {
        const batch = engine.beginBatch("seal");
        if (batch === null) return;
        const count = Math.min(BATCH, packets - sealSubmitted);
        for (let i = 0; i < count; i++) {
          const slot = engine.acquireSlot();
          bytes.set(packet, engine.packetOffset(slot));
          batch.add(slot, out, PACKET);
        }
        sealSubmitted += count;
        engine.submit(batch, onSealed);
      }
      if (failure !== undefined && engine.inFlight === 0) finish();
    };

    pump();
  });
}

/** The JavaScript heap, and memory held by ArrayBuffers (typed arrays allocated per batch would show there). */
function heapAfterGc(): { heap: number; arrayBuffers: number } {
  gc();
  gc();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, arrayBuffers: usage.arrayBuffers };
}

test(`a million ${PACKET}-byte packets sealed and opened on the zero-copy path grow the heap by less than ${GROWTH_LIMIT >> 20} MB`, { timeout: 120_000 }, async (t) => {
  // Regions: IN_FLIGHT batches in flight plus the seal batch being turned into an open batch.
  const engine = await openEngine(t, { workers: 2, slots: 1024, slotSize: 256, maxInFlight: 2 * IN_FLIGHT });
  const key = rng.bytes(32);
  const salt = rng.bytes(4);
  const out = engine.addSa({ direction: "out", spi: 0x4ea9, key, salt });
  const inb = engine.addSa({ direction: "in", spi: 0x4ea9, key, salt });
  const packet = rng.bytes(PACKET);

  const started = performance.now();
  const warm = await run(engine, out, inb, WARM_UP, packet);
  assert.deepEqual(warm, { sealed: WARM_UP, opened: WARM_UP, bad: 0 });
  const before = heapAfterGc();

  const rest = await run(engine, out, inb, TOTAL - WARM_UP, packet);
  assert.deepEqual(rest, { sealed: TOTAL - WARM_UP, opened: TOTAL - WARM_UP, bad: 0 });
  const after = heapAfterGc();
  const seconds = (performance.now() - started) / 1000;

  const growth = after.heap - before.heap;
  const bufferGrowth = after.arrayBuffers - before.arrayBuffers;
  t.diagnostic(`${TOTAL} packets sealed and opened in ${seconds.toFixed(1)} s; heap ${(before.heap / 2 ** 20).toFixed(2)} MB → ${(after.heap / 2 ** 20).toFixed(2)} MB ` +
    `(${growth >= 0 ? "+" : ""}${(growth / 1024).toFixed(0)} KB, ${(growth / (TOTAL - WARM_UP)).toFixed(2)} B per packet); ArrayBuffers ${bufferGrowth >= 0 ? "+" : ""}${(bufferGrowth / 1024).toFixed(0)} KB`);
  assert.ok(growth < GROWTH_LIMIT, `the heap grew by ${(growth / 2 ** 20).toFixed(2)} MB over ${TOTAL - WARM_UP} packets`);
  assert.ok(bufferGrowth < GROWTH_LIMIT, `ArrayBuffer memory grew by ${(bufferGrowth / 2 ** 20).toFixed(2)} MB over ${TOTAL - WARM_UP} packets`);

  const stats = engine.stats();
  assert.equal(stats.seal.packets, TOTAL);
  assert.equal(stats.open.packets, TOTAL);
  assert.deepEqual(stats.open.drops, {});
  assert.equal(stats.seal.batches, Math.ceil(WARM_UP / BATCH) + Math.ceil((TOTAL - WARM_UP) / BATCH));
  assert.equal(stats.slots.free, stats.slots.total);
  assert.equal(stats.inFlight, 0);
  assert.equal(stats.sas.find((s) => s.direction === "in")!.seq, BigInt(TOTAL));
});
