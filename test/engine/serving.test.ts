// engine.serving(): resolves once every worker's serve loop runs, not before.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { openEngine, fixtureWorker } from "../fixtures/engineUtil.js";
import { LATE_WORKER_MS } from "../fixtures/control.js";

test("serving() waits for workers that boot late, gives up at its timeout, and is at once true afterwards", async (t) => {
  const started = performance.now();
  const engine = await openEngine(t, { workers: 2, workerFilename: fixtureWorker("lateWorker"), inlineBytes: 0 });
  assert.equal(await engine.serving(50), false, "the workers are still asleep in their module's load");
  assert.equal(await engine.serving(10_000), true);
  assert.ok(performance.now() - started >= LATE_WORKER_MS - 20, `serving resolved after ${(performance.now() - started).toFixed(0)} ms`);
  const t0 = performance.now();
  assert.equal(await engine.serving(0), true);
  assert.ok(performance.now() - t0 < 20);
  // And the workers it waited for serve.
  const sa = engine.addSa({ direction: "out", spi: 7, key: new Uint8Array(randomBytes(32)), salt: new Uint8Array(4) });
  const sealed = await engine.seal(sa, [new Uint8Array(100)]);
  assert.equal(sealed.length, 1);
});

test("serving() is false once the engine closes", async () => {
  const { createEngine } = await import("../../src/engine/engine.js");
  const engine = await createEngine({ workers: 1, workerFilename: fixtureWorker("lateWorker") });
  const waiting = engine.serving(10_000);
  await engine.close();
  assert.equal(await waiting, false);
});
