/**
 * Running one batch region on a kernel instance: what a worker does with a
 * region it claimed, and what the engine does itself with a batch too small
 * to be worth a worker (engine.ts, "inline batches").
 *
 * Buffer contract: the region's descriptors are filled (and, sealing, their
 * sequence numbers assigned) before the call; each region has its own
 * keystream scratch after its descriptors, so two regions may run at once
 * on different threads. Opening only checks the replay window; the main
 * thread commits it in submission order at delivery (commit_batch).
 */
import type { KernelExports } from "../kernel/wasm.js";
import { OP_OPEN, OP_SEAL } from "./dispatch.js";
import { scratchAt, type EngineLayout } from "./layout.js";

export function runBatch(kernel: KernelExports, layout: EngineLayout, op: number, descriptors: number, count: number): void {
  if (op === OP_SEAL) {
    kernel.seal_batch(descriptors, count);
  } else if (op === OP_OPEN) {
    kernel.set_scratch(scratchAt(layout, descriptors), layout.scratchBytes);
    kernel.open_batch_deferred(descriptors, count);
  } else {
    throw unknownOp(op);
  }
}

// Built out of line: see slotPool.ts.
function unknownOp(op: number): TypeError {
  return new TypeError(`unknown batch op ${op}`);
}
