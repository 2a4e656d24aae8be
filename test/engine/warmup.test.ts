// Proves Engine.warmUp (src/engine/warmUp.ts): it leaves no trace. The
// counters in stats() (both directions, before and after other traffic), the
// live SAs, the free slots and batch regions are what they were; SAs added
// afterwards seal from sequence number 1 and open as usual; a closed engine
// refuses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { EngineError } from "../../src/engine/errors.js";
import { openEngine, ENGINE_CIPHERS } from "../fixtures/engineUtil.js";
import { createEngine } from "../../src/engine/engine.js";

test("warmUp() counts nothing, keeps no SA, slot or batch region, and leaves earlier counters alone", async (t) => {
  const engine = await openEngine(t, { workers: 1 });
  const empty = engine.stats();
  const free = { slots: engine.freeSlots, batches: engine.freeBatches };
  await engine.warmUp();
  assert.deepEqual(engine.stats(), empty);
  assert.deepEqual({ slots: engine.freeSlots, batches: engine.freeBatches }, free);

  for (const cipher of ENGINE_CIPHERS) {
    const key = randomBytes(32);
    const salt = randomBytes(4);
    const out = engine.addSa({ spi: 0x100, cipher, key, salt, direction: "out" });
    const into = engine.addSa({ spi: 0x100, cipher, key, salt, direction: "in" });
    const packets = [randomBytes(84), randomBytes(1400)];
    const sealed = await engine.seal(out, packets);
    assert.equal(engine.saSeq(out), 2n, `${cipher}: a new SA seals from 1`);
    assert.equal(new DataView(sealed[0]!.buffer, sealed[0]!.byteOffset).getUint32(4), 1);
    const opened = await engine.open(into, sealed);
    assert.deepEqual(opened.statuses, ["ok", "ok"]);
    assert.deepEqual(opened.packets.map((p) => Buffer.from(p!)), packets);
  }
  const before = engine.stats();
  await engine.warmUp();
  assert.deepEqual(engine.stats(), before);
});

test("warmUp() on a closed engine rejects with EngineError closed", async () => {
  const engine = await createEngine({ workers: 1 });
  await engine.close();
  assert.throws(() => engine.warmUp(), (error: unknown) => error instanceof EngineError && error.code === "closed");
});
