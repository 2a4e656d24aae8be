// Proves the engine survives failing workers (fixtures/faultyWorker.ts wraps
// the real worker and fails on demand): a batch whose worker throws, or whose
// worker thread exits, completes with status "worker-failed" for every packet
// while batches around it seal normally and in order; its slots return to the
// pool; stats count the failure (and, for an exit, the restart); a dead
// worker is replaced, so later batches seal and open correctly even with a
// single worker; a failed open batch commits nothing to the replay window.
// Also documents two ways the engine can stop delivering for good: a worker
// killed several times in a row, and a completion callback that throws.
import { test, describe } from "node:test";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createEngine, type Engine } from "../../src/engine/engine.js";
import { EngineError } from "../../src/engine/errors.js";
import { InboundSa } from "../../src/esp.js";
import { Rng, SEED } from "../helpers.js";
import { openEngine, fixtureWorker, pipeline, resultOf, equalBytes, within, type BatchSpec , ENGINE_CIPHERS, randomSaKeys, type SaKeys } from "../fixtures/engineUtil.js";
import type { EspCipher } from "../../src/kernel/cipher.js";
import { FAULT_ARM_WORD, FAULT_EXIT, FAULT_THROW, MARKER_EXIT, MARKER_THROW, words } from "../fixtures/control.js";
import type { SaHandle } from "../../src/engine/saTable.js";
import type { PacketStatus } from "../../src/kernel/status.js";

const rng = new Rng(SEED ^ 0xfa017);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;
const encoder = new TextEncoder();
const execFileAsync = promisify(execFile);

function saKeys(cipher: EspCipher = "chacha20poly1305"): SaKeys {
  return randomSaKeys(rng, cipher);
}

function marked(marker: string, length = 200): Uint8Array {
  const packet = rng.bytes(length);
  packet.set(encoder.encode(marker));
  return packet;
}

/** Seals and opens `n` packets through the engine and checks them with InboundSa too. */
async function stillWorks(engine: Engine, out: SaHandle, inb: SaHandle, params: SaKeys, n = 100): Promise<void> {
  const inner = Array.from({ length: n }, () => rng.bytes(rng.range(0, 1400)));
  const sealed = await within(engine.seal(out, inner), 10_000, "sealing after a worker failure never completed");
  const opened = await within(engine.open(inb, sealed), 10_000, "opening after a worker failure never completed");
  opened.statuses.forEach((s, i) => assert.ok(s === "ok" && equalBytes(opened.packets[i], inner[i]!), `packet ${i} after the failure: ${s} ${seedNote}`));
  const oneShot = new InboundSa({ ...params, replayWindow: 8192 });
  try {
    sealed.forEach((esp, i) => assert.ok(equalBytes(oneShot.open(esp).packet, inner[i]!), `InboundSa, packet ${i} after the failure`));
  } finally {
    oneShot.destroy();
  }
}

for (const cipher of ENGINE_CIPHERS) describe(`worker failures (${cipher})`, () => {
  for (const kind of ["throw", "exit"] as const) {
    for (const workers of [1, 2]) {
      test(`a seal batch whose worker ${kind === "throw" ? "throws" : "exits"} fails alone, ${workers} worker(s); later batches work`, { timeout: 30_000 }, async (t) => {
        const engine = await openEngine(t, { workers, workerFilename: fixtureWorker("faultyWorker"), inlineBytes: 0 });
        const workerErrors: unknown[] = [];
        engine.on("workerError", (error) => workerErrors.push(error));
        const params = saKeys(cipher);
        const out = engine.addSa({ direction: "out", ...params });
        const inb = engine.addSa({ direction: "in", ...params, replayWindow: 8192 });
        const marker = kind === "throw" ? MARKER_THROW : MARKER_EXIT;

        // Seven batches submitted together; the fourth holds the marker (first packet) and nine plain packets.
        const inner: Uint8Array[][] = [];
        for (let b = 0; b < 7; b++) {
          inner.push(b === 3 ? [marked(marker), ...Array.from({ length: 9 }, () => rng.bytes(300))] : Array.from({ length: 20 }, () => rng.bytes(rng.range(0, 1400))));
        }
        const specs: BatchSpec[] = inner.map((packets) => ({ op: "seal", packets: packets.map((data) => ({ sa: out, data })) }));
        const statuses: PacketStatus[][] = [];
        const seqs: bigint[][] = [];
        const esp: Uint8Array[][] = [];
        const order: number[] = [];
        await within(pipeline(engine, specs, (batch, b) => {
          order.push(b);
          statuses[b] = Array.from({ length: batch.count }, (_, i) => batch.status(i));
          seqs[b] = Array.from({ length: batch.count }, (_, i) => batch.seq(i));
          esp[b] = Array.from({ length: batch.count }, (_, i) => (batch.status(i) === "ok" ? resultOf(engine, batch, i) : new Uint8Array(0)));
        }), 20_000, "a batch never completed after its worker failed");

        assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6]);
        assert.deepEqual(statuses[3], Array(10).fill("worker-failed"));
        for (const b of [0, 1, 2, 4, 5, 6]) assert.deepEqual(statuses[b], Array(20).fill("ok"), `batch ${b}, next to the failed one`);
        // Sequence numbers were given at submission: the failed batch used up 61…70.
        assert.deepEqual(seqs.flat().filter((_, i) => i < 60 || i >= 70), Array.from({ length: 120 }, (_, i) => BigInt(i < 60 ? i + 1 : i + 11)));
        const oneShot = new InboundSa({ ...params, replayWindow: 8192 });
        try {
          for (const b of [0, 1, 2, 4, 5, 6]) {
            esp[b]!.forEach((packet, i) => assert.ok(equalBytes(oneShot.open(packet).packet, inner[b]![i]!), `batch ${b} packet ${i} ${seedNote}`));
          }
        } finally {
          oneShot.destroy();
        }

        let stats = engine.stats();
        assert.equal(stats.workerFailures, 1);
        assert.equal(stats.workerRestarts, kind === "exit" ? 1 : 0);
        assert.equal(workerErrors.length, kind === "exit" ? 1 : 0, "one workerError event per dead worker");
        assert.equal(stats.seal.drops["worker-failed"], 10);
        assert.equal(stats.seal.packets, 120);
        assert.equal(stats.slots.free, stats.slots.total, "the failed batch's slots did not return to the pool");
        assert.equal(stats.inFlight, 0);

        // The convenient path reports it as an EngineError.
        await assert.rejects(within(engine.seal(out, [marked(marker), rng.bytes(10)]), 10_000, "timeout"),
          (e: unknown) => e instanceof EngineError && e.code === "worker-failed");
        stats = engine.stats();
        assert.equal(stats.workerFailures, 2);
        assert.equal(stats.workerRestarts, kind === "exit" ? 2 : 0);
        assert.equal(stats.slots.free, stats.slots.total);

        // And the engine goes on: sealing and opening work (on a new thread, after an exit).
        await stillWorks(engine, out, inb, params);
        assert.equal(engine.stats().slots.free, engine.stats().slots.total);
      });
    }
  }

  for (const fault of [FAULT_EXIT, FAULT_THROW]) {
    test(`an open batch whose worker ${fault === FAULT_EXIT ? "exits" : "throws"} commits nothing: the same packets open afterwards`, { timeout: 30_000 }, async (t) => {
      const engine = await openEngine(t, { workers: 2, workerFilename: fixtureWorker("faultyWorker"), inlineBytes: 0 });
      const params = saKeys(cipher);
      const out = engine.addSa({ direction: "out", ...params });
      const inb = engine.addSa({ direction: "in", ...params });
      const inner = Array.from({ length: 40 }, () => rng.bytes(rng.range(0, 1400)));
      const sealed = await engine.seal(out, inner);

      Atomics.store(words(engine.memory), FAULT_ARM_WORD, fault);
      const failed = await within(engine.open(inb, sealed), 10_000, "the failed open batch never completed");
      assert.deepEqual(failed.statuses, Array(40).fill("worker-failed"));
      assert.ok(failed.packets.every((p) => p === null));
      assert.equal(engine.stats().sas.find((s) => s.direction === "in")!.seq, 0n, "a failed open batch moved the replay window");

      const opened = await within(engine.open(inb, sealed), 10_000, "opening after the failure never completed");
      assert.deepEqual(opened.statuses, Array(40).fill("ok"));
      opened.packets.forEach((p, i) => assert.ok(equalBytes(p, inner[i]!), `packet ${i}`));
      const stats = engine.stats();
      assert.equal(stats.workerFailures, 1);
      assert.equal(stats.workerRestarts, fault === FAULT_EXIT ? 1 : 0);
      assert.equal(stats.open.drops["worker-failed"], 40);
      assert.equal(stats.open.packets, 40);
      assert.equal(stats.slots.free, stats.slots.total);
    });
  }

  // BUG (src/engine/engine.ts #serve): a worker that dies within 1 s of its
  // (re)start six times in a row is never restarted, even when it had started
  // fine and died on a batch; with no worker left, submitted batches are never
  // claimed, so they neither complete nor fail and close() never resolves.
  test("a worker killed by several poison batches in a row: later batches still complete and close() resolves", { timeout: 60_000 }, async () => {
    const engine = await createEngine({ workers: 1, workerFilename: fixtureWorker("faultyWorker"), inlineBytes: 0 });
    engine.on("workerError", () => {});
    let closed = false;
    try {
      const params = saKeys(cipher);
      const out = engine.addSa({ direction: "out", ...params });
      const inb = engine.addSa({ direction: "in", ...params });
      for (let i = 0; i < 8; i++) {
        await assert.rejects(within(engine.seal(out, [marked(MARKER_EXIT)]), 2_000, `poison batch ${i + 1} never completed (worker restarts so far: ${engine.stats().workerRestarts})`),
          (e: unknown) => e instanceof EngineError && e.code === "worker-failed");
      }
      assert.equal(engine.stats().workerRestarts, 8);
      await stillWorks(engine, out, inb, params, 10);
      await within(engine.close(), 5_000, "close() never resolved");
      closed = true;
    } finally {
      // Do not wait forever for an engine that cannot close; its threads do not keep the process alive.
      if (!closed) await within(engine.close(), 2_000, "").catch(() => {});
    }
  });

  // BUG (src/engine/engine.ts #collect / #deliver): an exception from a
  // completion callback escapes #collect (an unhandled rejection), which then
  // neither delivers the batches that finished meanwhile nor waits for more:
  // every batch in flight is stuck and close() never resolves. Run in a child
  // process (fixtures/throwingCallback.ts), since such an engine's workers
  // would keep this process alive.
  test("a completion callback that throws does not stop the delivery of the other batches", { timeout: 30_000 }, async () => {
    const { stdout } = await execFileAsync(process.execPath, [fileURLToPath(new URL("../fixtures/throwingCallback.js", import.meta.url))], { timeout: 20_000 });
    const report = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      delivered: number[]; allDelivered: boolean; inFlightAfterWait: number; closed: boolean; unhandled: string[]; engineErrors: string[];
    };
    const note = `(child report: ${JSON.stringify(report)})`;
    assert.deepEqual(report.delivered, [0, 1, 2, 3], `batches 1…3 finished but were never delivered after batch 0's callback threw ${note}`);
    assert.equal(report.inFlightAfterWait, 0, note);
    assert.ok(report.closed, `close() never resolved ${note}`);
  });
});
