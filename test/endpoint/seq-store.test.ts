// Sequence-number reservations (src/endpoint/seqStore.ts): a number is used
// only under a durable bound; within half a block of it the bound is extended
// in the background, without waiting for the disk; past it, at once; and no
// save ever lowers what is on disk except a clean stop's exact counter.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Reservation, SeqStore } from "../../src/endpoint/seqStore.js";
import { waitUntil } from "../fixtures/observe.js";

const LIMIT = (1n << 64n) - 1n;
const ID = "out-00001001-0123456789abcdef";

interface Fresh {
  dir: string;
  store: SeqStore;
  /** The bound in the SA's file. */
  onDisk: () => bigint;
}

/** Runs `body` on a store in a new directory, removed afterwards. */
async function inFreshStore(body: (fresh: Fresh) => void | Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-seq-"));
  try {
    await body({ dir, store: new SeqStore(dir), onDisk: () => BigInt(readFileSync(join(dir, ID), "utf8").trim()) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}



test("past the durable bound: saved before ensure() returns", () => inFreshStore(({ store, onDisk }) => {
  const r = new Reservation(store, ID, 64n, LIMIT);
  assert.equal(r.bound, 0n, "nothing on disk yet");
  r.ensure(1n);
  assert.equal(onDisk(), 65n);
  assert.equal(r.bound, 65n);
  r.ensure(200n);
  assert.equal(onDisk(), 264n);
}));

test("within half a block of the bound: extended in the background, durable before it is needed", () => inFreshStore(async ({ store, onDisk }) => {
  const r = new Reservation(store, ID, 64n, LIMIT);
  r.ensure(1n);
  r.ensure(20n); // 20 + 32 <= 65: nothing to do
  assert.equal(onDisk(), 65n);
  r.ensure(40n); // 40 + 32 > 65, and 40 <= 65: background
  assert.equal(onDisk(), 65n, "ensure() did not wait for the disk");
  assert.equal(r.bound, 65n, "the bound counts as durable only once it is");
  r.ensure(41n); // one save in flight at a time
  await waitUntil(() => r.bound === 104n, "the background save to become durable", 10000);
  assert.equal(onDisk(), 104n);
}));

test("a synchronous save that overtook a background one is not undone by it", () => inFreshStore(async ({ store, onDisk }) => {
  const r = new Reservation(store, ID, 64n, LIMIT);
  r.ensure(1n);
  r.ensure(40n); // background, to 104
  r.ensure(150n); // past 65: at once, to 214
  assert.equal(onDisk(), 214n);
  await store.idle();
  assert.equal(onDisk(), 214n, "the older background save did not replace the newer bound");
  assert.equal(r.bound, 214n);
}));

test("after close(), a background save in flight does not replace the file (a clean stop's exact counter stays)", () => inFreshStore(async ({ store, onDisk }) => {
  const r = new Reservation(store, ID, 64n, LIMIT);
  r.ensure(1n);
  r.ensure(40n); // background, to 104
  r.close();
  store.save(ID, 41n); // what Endpoint.stop writes: the exact counter
  await store.idle();
  assert.equal(onDisk(), 41n);
  r.ensure(50n); // closed: no background save
  r.ensure(500n); // closed: not even a synchronous one
  await store.idle();
  assert.equal(onDisk(), 41n);
}));

test("the bound stops at the SA's limit", () => inFreshStore(async ({ store, onDisk }) => {
  const r = new Reservation(store, ID, 64n, 100n);
  r.ensure(60n);
  assert.equal(onDisk(), 100n, "60 + 64 capped at 100");
  r.ensure(90n); // within half a block, but nothing above the limit to reserve
  await store.idle();
  assert.equal(onDisk(), 100n);
}));

test("a replacement reservation's background save is not disturbed by a closed one's still in flight (a reload)", () => inFreshStore(async ({ dir, store, onDisk }) => {
  const old = new Reservation(store, ID, 64n, LIMIT);
  old.ensure(1n); // 65, at once
  old.ensure(40n); // background, to 104
  old.close(); // the peer is replaced: its save must not land
  const replacement = new Reservation(store, ID, 64n, LIMIT);
  assert.equal(replacement.bound, 65n);
  replacement.ensure(50n); // background, to 114
  await waitUntil(() => replacement.bound === 114n, "the replacement's background save to become durable", 10000);
  await store.idle();
  assert.equal(onDisk(), 114n);
  assert.equal(store.load(ID), 114n, "the file is whole");
  assert.deepEqual(readdirSync(dir).filter((name) => name !== ID), [], "no temporary file left behind");
}));
