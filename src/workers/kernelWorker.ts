/**
 * The Piscina worker: one kernel instance on the engine's shared memory.
 * It receives the compiled module and the memory once (workerData); a task
 * names only where its descriptors are and how many. No packet byte is ever
 * posted to or from this thread.
 */
import { workerData } from "node:worker_threads";
import { instantiateKernel } from "../kernel/wasm.js";
import { scratchAt } from "../engine/layout.js";

/** What the engine sends each worker once. */
export interface KernelWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  batchSize: number;
  scratchBytes: number;
}

/** One batch: `count` descriptors starting at byte `descriptors`. "noop" starts a worker, or measures dispatch. */
export interface KernelTask {
  op: "seal" | "open" | "noop";
  descriptors: number;
  count: number;
}

const data = workerData as KernelWorkerData;
const kernel = instantiateKernel(data.memory, data.module);

/** Runs one batch; the statuses are in the descriptors. Returns the count. */
export default function runBatch(task: KernelTask): number {
  const { op, descriptors, count } = task;
  if (op === "seal") {
    kernel.seal_batch(descriptors, count);
  } else if (op === "open") {
    // Each batch region has its own keystream scratch, so concurrent batches never share one.
    kernel.set_scratch(scratchAt(data, descriptors), data.scratchBytes);
    kernel.open_batch_deferred(descriptors, count);
  } else if (op !== "noop") {
    throw new TypeError(`unknown kernel task ${typeof op === "string" ? op : typeof op}`);
  }
  return count;
}
