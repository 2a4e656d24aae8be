// Proves the engine's resource life cycle: backpressure is reached when slots
// or batch regions run out (acquireSlot → -1, beginBatch → null, seal/open
// reject with EngineError "backpressure", stats().backpressure counts it),
// "drain" follows once something is free again, and afterwards everything
// works and no slot is lost; callers that retry on "drain" all get through.
// close() with batches in flight resolves only after every completion ran,
// then refuses work with EngineError "closed" and leaves no key byte (no
// byte at all) in the shared memory. removeSa with packets in flight keeps
// the key until they completed (they still seal correctly), then zeroes the
// record; the removed handle is refused everywhere with a TypeError.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { InboundSa } from "../../src/esp.js";
import { EngineError } from "../../src/engine/errors.js";
import { SA_KEY } from "../../src/kernel/layout.js";
import { Rng, SEED } from "../helpers.js";
import { openEngine, resultOf, equalBytes, indexOfBytes, within, isCode , ENGINE_CIPHERS, randomSaKeys, type SaKeys } from "../fixtures/engineUtil.js";
import type { EspCipher } from "../../src/kernel/cipher.js";
import type { Engine } from "../../src/engine/engine.js";
import type { Batch } from "../../src/engine/batch.js";
import type { SaHandle } from "../../src/engine/saTable.js";

const rng = new Rng(SEED ^ 0x11fec);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

function saKeys(cipher: EspCipher = "chacha20poly1305"): SaKeys {
  return randomSaKeys(rng, cipher);
}

/** Fills a new batch of `op` with `packets` (fresh slots) and returns it, unsubmitted. */
function fill(engine: Engine, op: "seal" | "open", sa: SaHandle, packets: Uint8Array[]): Batch {
  const batch = engine.beginBatch(op);
  assert.ok(batch !== null, "no batch region free");
  for (const data of packets) {
    const slot = engine.acquireSlot();
    assert.ok(slot >= 0, "no slot free");
    engine.bytes.set(data, op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot));
    batch.add(slot, sa, data.length);
  }
  return batch;
}

/** Submits a batch; resolves with the callback's result, after which the batch is released. */
function submitted<T>(engine: Engine, batch: Batch, read: (batch: Batch) => T): Promise<T> {
  return new Promise((resolve, reject) => {
    engine.submit(batch, (done) => {
      try {
        resolve(read(done));
      } catch (error) {
        reject(error);
      } finally {
        done.release();
      }
    });
  });
}

function allZero(bytes: Uint8Array, from = 0, to = bytes.length): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

for (const cipher of ENGINE_CIPHERS) describe(`backpressure (${cipher})`, () => {
  test("slots and batch regions run out, each refusal counts, 'drain' follows, and everything works again", { timeout: 20_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 1, slots: 8, batchSize: 4, maxInFlight: 2 });
    const sa = saKeys(cipher);
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    let drains = 0;
    engine.on("drain", () => drains++);
    const packet = rng.bytes(100);
    const backpressure = (): number => engine.stats().backpressure;

    // 1. Slots run out.
    const slots = Array.from({ length: 8 }, () => engine.acquireSlot());
    assert.equal(new Set(slots).size, 8);
    assert.ok(slots.every((s) => s >= 0 && s < 8));
    assert.equal(engine.acquireSlot(), -1);
    assert.equal(backpressure(), 1);
    await assert.rejects(engine.seal(out, [packet]), isCode("backpressure"));
    assert.equal(backpressure(), 2);
    let drained = once(engine, "drain");
    engine.releaseSlot(slots.pop()!);
    await within(drained, 2000, "no 'drain' after a slot was released");
    assert.equal(drains, 1);
    for (const s of slots) engine.releaseSlot(s);
    assert.throws(() => engine.releaseSlot(slots[0]!), /released twice/);
    assert.equal(engine.stats().slots.free, 8);

    // 2. Batch regions run out.
    const a = engine.beginBatch("seal");
    const b = engine.beginBatch("open");
    assert.ok(a !== null && b !== null);
    assert.equal(engine.beginBatch("seal"), null);
    assert.equal(backpressure(), 3);
    await assert.rejects(engine.seal(out, [packet]), isCode("backpressure"));
    await assert.rejects(engine.open(inb, [new Uint8Array(40)]), isCode("backpressure"));
    assert.equal(backpressure(), 5);
    drained = once(engine, "drain");
    a.release();
    await within(drained, 2000, "no 'drain' after a batch region was released");
    b.release();
    assert.equal(drains, 2);

    // 3. Both, with batches in flight: two full seal batches take every slot and region.
    const inner = Array.from({ length: 8 }, () => rng.bytes(rng.range(0, engine.maxPacket)));
    const first = fill(engine, "seal", out, inner.slice(0, 4));
    const second = fill(engine, "seal", out, inner.slice(4));
    const read = (batch: Batch): Uint8Array[] => Array.from({ length: batch.count }, (_, i) => resultOf(engine, batch, i));
    drained = once(engine, "drain");
    const results = Promise.all([submitted(engine, first, read), submitted(engine, second, read)]);
    assert.equal(engine.acquireSlot(), -1);
    assert.equal(engine.beginBatch("open"), null);
    await assert.rejects(engine.seal(out, [packet]), isCode("backpressure"));
    assert.equal(backpressure(), 8);
    await within(drained, 5000, "no 'drain' after batches in flight completed");
    const esp = (await results).flat();
    assert.equal(drains, 3);

    // 4. Recovered: nothing leaked, the engine seals and opens at full capacity.
    let stats = engine.stats();
    assert.equal(stats.slots.free, 8);
    assert.equal(stats.inFlight, 0);
    const opened = await engine.open(inb, esp);
    assert.deepEqual(opened.statuses, Array(8).fill("ok"));
    opened.packets.forEach((p, i) => assert.ok(equalBytes(p, inner[i]!), `packet ${i} ${seedNote}`));
    const again = await engine.seal(out, inner);
    assert.deepEqual((await engine.open(inb, again)).statuses, Array(8).fill("ok"));
    stats = engine.stats();
    assert.equal(stats.slots.free, 8);
    assert.equal(stats.backpressure, 8);
    assert.equal(stats.seal.packets, 16);
    assert.equal(stats.open.packets, 16);
    assert.equal(drains, 3);
  });

  test("many callers retrying on 'drain' all get through, with distinct sequence numbers", { timeout: 30_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, slots: 16, batchSize: 4, maxInFlight: 4 });
    const sa = saKeys(cipher);
    const out = engine.addSa({ direction: "out", ...sa });
    engine.setMaxListeners(100); // every waiting caller listens for "drain" (and "error", via once())
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
    const chunks = Array.from({ length: 60 }, () => Array.from({ length: rng.range(1, 8) }, () => rng.bytes(rng.range(0, 1400))));
    const sealed = await within(Promise.all(chunks.map(sealWithRetry)), 20_000, "callers waiting for 'drain' were never woken");
    assert.ok(refusals > 0, "the callers never hit backpressure");
    assert.equal(engine.stats().backpressure, refusals);
    const oneShot = new InboundSa({ ...sa, replayWindow: 1024 });
    try {
      const seqs = new Set<bigint>();
      sealed.forEach((esps, c) => esps.forEach((esp, i) => {
        const r = oneShot.open(esp);
        assert.equal(r.status, "ok");
        assert.ok(equalBytes(r.packet, chunks[c]![i]!), `chunk ${c} packet ${i} ${seedNote}`);
        seqs.add(r.seq!);
      }));
      const total = chunks.reduce((n, c) => n + c.length, 0);
      assert.equal(seqs.size, total);
      assert.equal(Math.max(...[...seqs].map(Number)), total);
    } finally {
      oneShot.destroy();
    }
    assert.equal(engine.stats().slots.free, 16);
  });
});

for (const cipher of ENGINE_CIPHERS) describe(`close (${cipher})`, () => {
  test("close() with batches in flight: resolves after every completion, then refuses work, and no key byte is left", { timeout: 20_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, maxInFlight: 16 });
    const sa = saKeys(cipher);
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    assert.ok(indexOfBytes(engine.bytes, sa.key) >= 0, "the key is in the shared memory while the SA lives");

    const events: string[] = [];
    const inner: Uint8Array[][] = [];
    const esp: Uint8Array[][] = [];
    for (let b = 0; b < 6; b++) {
      inner.push(Array.from({ length: 64 }, () => rng.bytes(1400)));
      const batch = fill(engine, "seal", out, inner[b]!);
      engine.submit(batch, (done) => {
        events.push(`batch ${b}`);
        esp[b] = Array.from({ length: done.count }, (_, i) => resultOf(engine, done, i));
        assert.ok(done.status(0) === "ok");
        done.release();
      });
    }
    const convenientInner = Array.from({ length: 100 }, () => rng.bytes(rng.range(0, 1400)));
    const convenient = engine.seal(out, convenientInner);
    const held = fill(engine, "seal", out, [rng.bytes(10)]); // begun before close, never submitted
    assert.ok(engine.inFlight >= 6);

    const closing = engine.close();
    events.push("close called");
    // From now on the engine refuses work.
    assert.throws(() => engine.beginBatch("seal"), isCode("closed"));
    assert.throws(() => engine.addSa({ direction: "out", ...saKeys(cipher) }), isCode("closed"));
    assert.throws(() => engine.submit(held, () => assert.fail("a batch submitted after close() ran")), isCode("closed"));
    await assert.rejects(engine.seal(out, [rng.bytes(10)]), isCode("closed"));
    await assert.rejects(engine.open(inb, [new Uint8Array(40)]), isCode("closed"));
    const closingAgain = engine.close();

    await closing;
    events.push("closed");
    assert.deepEqual(events, ["close called", "batch 0", "batch 1", "batch 2", "batch 3", "batch 4", "batch 5", "closed"]);
    await closingAgain;
    await engine.close();
    assert.equal(engine.inFlight, 0);

    // What was in flight was sealed correctly.
    const sealedLater = await convenient;
    const oneShot = new InboundSa({ ...sa, replayWindow: 1024 });
    try {
      const all = [...esp.flat(), ...sealedLater];
      const expected = [...inner.flat(), ...convenientInner];
      all.forEach((packet, i) => {
        const r = oneShot.open(packet);
        if (r.status !== "ok" || !equalBytes(r.packet, expected[i]!)) assert.fail(`packet ${i} sealed during close() opens as ${r.status} ${seedNote}`);
      });
    } finally {
      oneShot.destroy();
    }

    // The shared memory was wiped: no key, no packet, nothing.
    assert.equal(indexOfBytes(engine.bytes, sa.key), -1, "the SA key is still in the shared memory after close()");
    assert.ok(allZero(engine.bytes), "the shared memory is not all zero after close()");
  });

  test("close() of an idle engine resolves, and is idempotent", async () => {
    const { createEngine } = await import("../../src/engine/engine.js");
    const engine = await createEngine({ workers: 2 });
    const a = engine.close();
    const b = engine.close();
    await Promise.all([a, b]);
    await engine.close();
    assert.throws(() => engine.beginBatch("open"), isCode("closed"));
  });
});

describe("removeSa", () => {
  test("with packets in flight: the key stays until they complete, then the record is zero; the handle is refused", { timeout: 20_000 }, async (t) => {
    const engine = await openEngine(t, { workers: 2, maxSas: 2 });
    const sa = saKeys();
    const out = engine.addSa({ direction: "out", ...sa });
    const inb = engine.addSa({ direction: "in", ...sa });
    const record = out.record;
    const stride = engine.layout.saStride;
    const keyInRecord = (): boolean => equalBytes(engine.bytes.subarray(record + SA_KEY, record + SA_KEY + 32), sa.key);
    assert.ok(keyInRecord());

    const inner: Uint8Array[][] = [];
    const esp: Uint8Array[][] = [];
    const observed: string[] = [];
    const done: Promise<void>[] = [];
    for (let b = 0; b < 3; b++) {
      inner.push(Array.from({ length: 64 }, () => rng.bytes(1400)));
      done.push(submitted(engine, fill(engine, "seal", out, inner[b]!), (batch) => {
        esp[b] = Array.from({ length: batch.count }, (_, i) => resultOf(engine, batch, i));
        // Earlier batches: later ones still need the key. The last: wiped before its callback.
        observed.push(b < 2 ? `batch ${b}: key ${keyInRecord() ? "kept" : "wiped"}` : `batch ${b}: record ${allZero(engine.bytes, record, record + stride) ? "zero" : "not zero"}`);
      }));
    }
    engine.removeSa(out);
    assert.ok(engine.inFlight > 0, "the batches were still in flight at removeSa");
    assert.ok(keyInRecord(), "removeSa wiped the key of an SA with packets in flight");
    // The record is not free for another SA yet (maxSas 2).
    assert.throws(() => engine.addSa({ direction: "out", ...saKeys() }), (e: Error) => e instanceof RangeError && /full/.test(e.message));
    assert.ok(!engine.stats().sas.some((s) => s.spi === sa.spi && s.direction === "out"));

    // The removed handle is refused everywhere.
    assert.throws(() => engine.removeSa(out), TypeError);
    await assert.rejects(engine.seal(out, [rng.bytes(10)]), (e: Error) => e instanceof TypeError && /removed/.test(e.message));
    const batch = engine.beginBatch("seal")!;
    const slot = engine.acquireSlot();
    assert.throws(() => batch.add(slot, out, 10), (e: Error) => e instanceof TypeError && /removed/.test(e.message));
    batch.release();
    engine.releaseSlot(slot);

    await Promise.all(done);
    assert.deepEqual(observed, ["batch 0: key kept", "batch 1: key kept", "batch 2: record zero"]);
    assert.ok(allZero(engine.bytes, record, record + stride), "the removed SA's record is not zero");
    // The key is still in the inbound SA's record (same key), and nowhere else.
    const inRecord = engine.bytes.subarray(inb.record, inb.record + stride);
    assert.equal(indexOfBytes(engine.bytes.subarray(0, inb.record), sa.key), -1, "the removed SA's key is still in the shared memory");
    assert.equal(indexOfBytes(engine.bytes.subarray(inb.record + stride), sa.key), -1, "the removed SA's key is still in the shared memory");
    assert.equal(indexOfBytes(inRecord, sa.key), SA_KEY);

    // They were sealed correctly: the engine's inbound SA and InboundSa open them.
    const opened = await engine.open(inb, esp.flat().slice(0, 128));
    opened.packets.forEach((p, i) => assert.ok(opened.statuses[i] === "ok" && equalBytes(p, inner.flat()[i]!), `packet ${i} ${seedNote}`));
    const oneShot = new InboundSa(sa);
    try {
      esp.flat().forEach((packet, i) => assert.ok(equalBytes(oneShot.open(packet).packet, inner.flat()[i]!), `packet ${i}`));
    } finally {
      oneShot.destroy();
    }

    // The record is free again.
    const next = saKeys();
    const replacement = engine.addSa({ direction: "out", ...next });
    assert.equal(replacement.record, record);
    const [sealed] = await engine.seal(replacement, [rng.bytes(50)]);
    const check = new InboundSa(next);
    try {
      assert.equal(check.open(sealed!).status, "ok");
    } finally {
      check.destroy();
    }
    assert.equal(engine.stats().slots.free, engine.stats().slots.total);
  });

  test("with nothing in flight the record is zeroed at once; with packets only in an unsubmitted batch, at its release", async (t) => {
    const engine = await openEngine(t, { workers: 1, slots: 16 });
    const a = saKeys();
    const sa = engine.addSa({ direction: "out", ...a });
    engine.removeSa(sa);
    assert.ok(allZero(engine.bytes, sa.record, sa.record + engine.layout.saStride));

    const b = saKeys();
    const sb = engine.addSa({ direction: "out", ...b });
    const batch = fill(engine, "seal", sb, [rng.bytes(10), rng.bytes(20)]);
    engine.removeSa(sb);
    assert.ok(!allZero(engine.bytes, sb.record, sb.record + engine.layout.saStride), "wiped while an unsubmitted batch still holds packets of the SA");
    batch.release();
    assert.ok(allZero(engine.bytes, sb.record, sb.record + engine.layout.saStride), "not wiped when the batch holding its packets was released");
    assert.equal(indexOfBytes(engine.bytes, b.key), -1);
    assert.equal(engine.stats().slots.free, 16);
  });
});

