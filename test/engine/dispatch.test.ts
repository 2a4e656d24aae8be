// Proves the wake-up rules of the control block (src/engine/dispatch.ts):
// a worker's completion wakes the main thread only when it waits
// (MAIN_WAITING, taken from 1 to 0 by exactly one completion) and fewer than
// two batches still wait to be claimed; the completion that leaves fewer
// does it. Driven here on a bare control block, one step at a time; the
// engine tests (engine-order, engine-inline, engine-convenient …) prove
// that every batch is still delivered, in order, under load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ControlBlock, COMPLETE_GEN, MAIN_WAITING, OP_SEAL, STATE_DONE, controlBytes } from "../../src/engine/dispatch.js";

function block(regions: number): ControlBlock {
  return new ControlBlock(new SharedArrayBuffer(controlBytes(regions)), 0, regions);
}

test("a completion wakes a waiting main thread once, and only when fewer than two batches wait to be claimed", async () => {
  const control = block(4);
  const w = control.words;
  for (let region = 0; region < 4; region++) control.submit(region, OP_SEAL, 1, region);
  const first = control.claim(0);
  control.awaitingCompletion();
  const woken = Atomics.waitAsync(w, COMPLETE_GEN, 0);
  assert.equal(woken.async, true);
  let wakes = 0;
  void (woken.value as Promise<string>).then(() => wakes++);

  control.complete(first, true); // 3 still wait to be claimed: no wake-up
  assert.equal(Atomics.load(w, MAIN_WAITING), 1);
  control.complete(control.claim(0), true); // 2 wait: none yet
  assert.equal(Atomics.load(w, MAIN_WAITING), 1);
  control.complete(control.claim(0), true); // 1 waits: this one wakes it
  assert.equal(Atomics.load(w, MAIN_WAITING), 0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(wakes, 1);
  assert.equal(Atomics.load(w, COMPLETE_GEN), 3, "every completion counts, woken or not");
  for (const region of [0, 1, 2]) assert.equal(control.state(region), STATE_DONE);

  control.complete(control.claim(0), true); // nobody waits now: nothing to take
  assert.equal(Atomics.load(w, MAIN_WAITING), 0);
});

test("a lone completion wakes the waiting main thread at once; without a waiter it leaves MAIN_WAITING alone", () => {
  const control = block(2);
  const w = control.words;
  control.submit(0, OP_SEAL, 1, 0);
  control.complete(control.claim(1), true);
  assert.equal(Atomics.load(w, MAIN_WAITING), 0);
  control.submit(1, OP_SEAL, 1, 1);
  control.awaitingCompletion();
  control.complete(control.claim(1), true);
  assert.equal(Atomics.load(w, MAIN_WAITING), 0, "taken by the completion that woke it");
});
