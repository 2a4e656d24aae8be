/**
 * The Piscina worker: one kernel instance on the engine's shared memory.
 * It receives the compiled module and the memory once (workerData), then runs
 * one long task, `serve`, which takes batches from the engine's control
 * block (src/engine/dispatch.ts) until told to stop. A batch is only
 * { op, descriptors, count } in shared words; no packet byte is ever posted
 * to or from this thread.
 */
import { workerData } from "node:worker_threads";
import { instantiateKernel } from "../kernel/wasm.js";
import { descriptorsAt, type EngineLayout } from "../engine/layout.js";
import { ControlBlock, STOP, SUBMIT_GEN } from "../engine/dispatch.js";
import { runBatch, type BatchRunner } from "../engine/runBatch.js";
import { aesGcmPass } from "../kernel/gcm.js";

/** What the engine sends each worker once. */
export interface KernelWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  layout: EngineLayout;
}

/** The one task each worker runs. */
export interface ServeTask {
  /** This worker's number, recorded in the regions it takes. */
  worker: number;
}

const data = workerData as KernelWorkerData;
const runner: BatchRunner = {
  kernel: instantiateKernel(data.memory, data.module),
  gcm: aesGcmPass(),
  memory: new Uint8Array(data.memory.buffer),
};
const control = new ControlBlock(data.memory.buffer, data.layout.controlAt, data.layout.maxInFlight);

/** Runs one batch region. Exported for tests that wrap the worker. */
export function runRegion(region: number): void {
  runBatch(runner, data.layout, control.op(region), descriptorsAt(data.layout, region), control.count(region));
}

/**
 * Serves batches until the engine stops. A batch that throws (a trap in the
 * kernel) fails alone; the loop goes on. If the thread dies, Piscina replaces
 * it and the engine fails the region this worker held.
 */
export default function serve(task: ServeTask, run: (region: number) => void = runRegion): number {
  let served = 0;
  const words = control.words;
  control.serving();
  for (;;) {
    const generation = Atomics.load(words, SUBMIT_GEN);
    const region = control.claim(task.worker);
    if (region >= 0) {
      let ok = true;
      try {
        run(region);
      } catch {
        ok = false;
      }
      control.complete(region, ok);
      served++;
      continue;
    }
    if (Atomics.load(words, STOP) === 1) {
      runner.gcm.sweep(runner.memory);
      return served;
    }
    // Idle: AES keys of SAs removed meanwhile leave this thread's cache.
    runner.gcm.sweep(runner.memory);
    control.sleep(generation);
  }
}
