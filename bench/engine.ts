/**
 * The engine suite: packets through the whole engine (slots → submit →
 * workers → in-order completion) on the zero-copy path, with 1 and 2
 * workers, next to the single-thread kernel measured in the same run; and
 * the cost of handing a batch to a worker and back, so the dispatch overhead is visible.
 *
 * The engine is kept full: `inFlight` batches are always submitted; each
 * completion releases its batch and submits a new one with the same slots.
 * Sealing in place again and again is fine for timing: the kernel does not
 * care what bytes it seals. AES-256-GCM rows (RFC 4106; the AES pass in the
 * workers, one native call per batch) follow at 1420 B, their ratio taken
 * to the same batch path on the main thread.
 */
import { randomBytes } from "node:crypto";
import { createEngine, type Engine } from "../src/engine/engine.js";
import type { SaHandle } from "../src/engine/saTable.js";
import { createBatchRunner, BATCH } from "./sluiceBatch.js";
import { median } from "./measure.js";
import type { EspCipher } from "../src/kernel/cipher.js";

export interface EngineRow {
  suite: "engine";
  size: number;
  impl: string;
  workers: number;
  batchSize: number;
  packetsPerSecond: number;
  gbitPerSecond: number;
  /** Throughput divided by the single-thread kernel's at the same size (and cipher). */
  kernelRatio: number;
  /** Absent: ChaCha20-Poly1305. */
  cipher?: EspCipher;
}

export interface DispatchRow {
  suite: "dispatch";
  /** One 1-packet batch at a time: submit → worker → in-order completion, microseconds (includes waking both threads). */
  roundTripUs: number;
  /** Per 1-packet batch with 8 in flight on one worker, microseconds of wall time. */
  pipelinedUs: number;
  /** A default batch (64 × 1420 B seal) in the single-thread kernel, microseconds. */
  batchUs: number;
  /**
   * Under load, the share of a default batch's time the engine adds on top of
   * the kernel: 1 − (engine with 1 worker ÷ kernel on the main thread), 1420 B.
   */
  overhead: number;
}

export interface EngineSuiteOptions {
  rounds: number;
  /** Milliseconds per measurement. */
  timeMs: number;
}

const SIZES = [64, 1420];

/** Keeps the engine full for `ms` and returns packets/s. */
async function sealThroughput(engine: Engine, sa: SaHandle, size: number, batchSize: number, inFlight: number, ms: number): Promise<number> {
  let packets = 0;
  let running = true;
  let outstanding = 0;
  let finished: () => void = () => {};
  const done = new Promise<void>((resolve) => (finished = resolve));
  const submitOne = (): void => {
    const batch = engine.beginBatch("seal");
    if (batch === null) throw new Error("engine bench: out of batch regions");
    for (let i = 0; i < batchSize; i++) {
      const slot = engine.acquireSlot();
      if (slot < 0) throw new Error("engine bench: out of slots");
      batch.add(slot, sa, size);
    }
    outstanding++;
    engine.submit(batch, (completed) => {
      packets += completed.count;
      completed.release();
      outstanding--;
      if (running) submitOne();
      else if (outstanding === 0) finished();
    });
  };
  for (let i = 0; i < inFlight; i++) submitOne();
  await new Promise((resolve) => setTimeout(resolve, ms / 4)); // warm-up
  const start = process.hrtime.bigint();
  const before = packets;
  await new Promise((resolve) => setTimeout(resolve, ms));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const counted = packets - before;
  running = false;
  await done;
  return counted / elapsed;
}

function kernelThroughput(size: number, ms: number, cipher: EspCipher = "chacha20poly1305"): number {
  const runner = createBatchRunner(size, new Uint8Array(randomBytes(32)), new Uint8Array(randomBytes(4)), cipher);
  for (let i = 0; i < 50; i++) runner.seal();
  let packets = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() < end) {
    runner.seal();
    packets += BATCH;
  }
  return packets / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function dispatchCost(rounds: number): Promise<Omit<DispatchRow, "overhead">> {
  // inlineBytes 0: a 1-packet batch would otherwise run on this thread (EngineOptions.inlineBytes), and this measures the hand-off.
  const engine = await createEngine({ workers: 1, slots: 256, maxInFlight: 16, inlineBytes: 0 });
  try {
    const sa = engine.addSa({ direction: "out", spi: 1, key: new Uint8Array(randomBytes(32)), salt: new Uint8Array(randomBytes(4)) });
    const once = (): Promise<void> => new Promise((resolve) => {
      const batch = engine.beginBatch("seal")!;
      const slot = engine.acquireSlot();
      batch.add(slot, sa, 0);
      engine.submit(batch, (b) => { b.release(); resolve(); });
    });
    const samples: number[] = [];
    for (let i = 0; i < 200; i++) await once();
    for (let r = 0; r < rounds * 200; r++) {
      const t0 = process.hrtime.bigint();
      await once();
      samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    // Pipelined: many empty-ish batches in flight, wall time per batch.
    const pipelined: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const n = 2000;
      const t0 = process.hrtime.bigint();
      let inFlight = 0, sent = 0;
      await new Promise<void>((resolve) => {
        const pump = (): void => {
          while (inFlight < 8 && sent < n) {
            inFlight++; sent++;
            once().then(() => { inFlight--; if (sent === n && inFlight === 0) resolve(); else pump(); });
          }
        };
        pump();
      });
      pipelined.push(Number(process.hrtime.bigint() - t0) / 1e3 / n);
    }
    const batchUs = (1e6 / kernelThroughput(1420, 300)) * 64;
    return { suite: "dispatch", roundTripUs: median(samples), pipelinedUs: median(pipelined), batchUs };
  } finally {
    await engine.close();
  }
}

export async function runEngineSuite(options: EngineSuiteOptions, log: (line: string) => void = () => {}): Promise<{ rows: EngineRow[]; dispatch: DispatchRow }> {
  const rows: EngineRow[] = [];
  for (const size of SIZES) {
    const kernel: number[] = [];
    const byWorkers = new Map<number, number[]>([[1, []], [2, []]]);
    const batchSize = size <= 256 ? 256 : 64;
    for (let round = 0; round < options.rounds; round++) {
      log(`engine ${size} B: round ${round + 1}/${options.rounds}`);
      kernel.push(kernelThroughput(size, options.timeMs));
      for (const workers of [1, 2]) {
        const inFlight = workers * 4;
        const engine = await createEngine({ workers, batchSize, maxInFlight: inFlight, slots: inFlight * batchSize });
        try {
          const sa = engine.addSa({ direction: "out", spi: 1, key: new Uint8Array(randomBytes(32)), salt: new Uint8Array(randomBytes(4)) });
          byWorkers.get(workers)!.push(await sealThroughput(engine, sa, size, batchSize, inFlight, options.timeMs));
        } finally {
          await engine.close();
        }
      }
    }
    const kernelPps = median(kernel);
    rows.push({ suite: "engine", size, impl: "kernel, main thread", workers: 0, batchSize: BATCH, packetsPerSecond: kernelPps, gbitPerSecond: (kernelPps * size * 8) / 1e9, kernelRatio: 1 });
    for (const [workers, samples] of byWorkers) {
      const pps = median(samples);
      rows.push({ suite: "engine", size, impl: `engine, ${workers} worker${workers > 1 ? "s" : ""}`, workers, batchSize, packetsPerSecond: pps, gbitPerSecond: (pps * size * 8) / 1e9, kernelRatio: pps / kernelPps });
    }
  }
  rows.push(...(await aesRows(options, log)));
  log("engine: dispatch cost");
  const at1420 = rows.find((r) => r.size === 1420 && r.workers === 1)!;
  const dispatch: DispatchRow = { ...(await dispatchCost(options.rounds)), overhead: 1 - at1420.kernelRatio };
  return { rows, dispatch };
}

/** AES-256-GCM at 1420 B: the batch path on the main thread, then the engine with 1 and 2 workers. */
async function aesRows(options: EngineSuiteOptions, log: (line: string) => void): Promise<EngineRow[]> {
  const size = 1420, batchSize = 64, cipher = "aes256gcm16";
  const kernel: number[] = [];
  const byWorkers = new Map<number, number[]>([[1, []], [2, []]]);
  for (let round = 0; round < options.rounds; round++) {
    log(`engine AES-256-GCM ${size} B: round ${round + 1}/${options.rounds}`);
    kernel.push(kernelThroughput(size, options.timeMs, cipher));
    for (const workers of [1, 2]) {
      const inFlight = workers * 4;
      const engine = await createEngine({ workers, batchSize, maxInFlight: inFlight, slots: inFlight * batchSize });
      try {
        const sa = engine.addSa({ direction: "out", spi: 1, cipher, key: new Uint8Array(randomBytes(32)), salt: new Uint8Array(randomBytes(4)) });
        byWorkers.get(workers)!.push(await sealThroughput(engine, sa, size, batchSize, inFlight, options.timeMs));
      } finally {
        await engine.close();
      }
    }
  }
  const kernelPps = median(kernel);
  const rows: EngineRow[] = [{ suite: "engine", cipher, size, impl: "AES-256-GCM batch, main thread", workers: 0, batchSize: BATCH, packetsPerSecond: kernelPps, gbitPerSecond: (kernelPps * size * 8) / 1e9, kernelRatio: 1 }];
  for (const [workers, samples] of byWorkers) {
    const pps = median(samples);
    rows.push({ suite: "engine", cipher, size, impl: `engine AES-256-GCM, ${workers} worker${workers > 1 ? "s" : ""}`, workers, batchSize, packetsPerSecond: pps, gbitPerSecond: (pps * size * 8) / 1e9, kernelRatio: pps / kernelPps });
  }
  return rows;
}
