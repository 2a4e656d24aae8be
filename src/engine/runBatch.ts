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
 *
 * AES-GCM SAs (RFC 4106) take the same passes plus one: the kernel frames
 * (seal) or pre-checks (open) their packets and counts them; when there are
 * any, the AES pass (../kernel/gcm.ts, one native call for the batch) runs
 * their AEAD on the same slots, and opening ends with the kernel's trailer
 * checks (open_finish_batch). ChaCha20 packets of a mixed batch are done
 * after the first pass and left alone by the others.
 */
import type { KernelExports } from "../kernel/wasm.js";
import { GCM_OPEN, GCM_SEAL, type AesGcmPass } from "../kernel/gcm.js";
import { OP_OPEN, OP_SEAL } from "./dispatch.js";
import { scratchAt, type EngineLayout } from "./layout.js";

/** What a thread runs batches with: its kernel instance, its AES pass and a view of the memory. */
export interface BatchRunner {
  kernel: KernelExports;
  gcm: AesGcmPass;
  memory: Uint8Array;
}

export function runBatch(runner: BatchRunner, layout: EngineLayout, op: number, descriptors: number, count: number): void {
  const { kernel } = runner;
  if (op === OP_SEAL) {
    if (kernel.seal_batch(descriptors, count) > 0) runner.gcm.run(runner.memory, descriptors, count, GCM_SEAL);
  } else if (op === OP_OPEN) {
    kernel.set_scratch(scratchAt(layout, descriptors), layout.scratchBytes);
    if (kernel.open_batch_deferred(descriptors, count) > 0) {
      runner.gcm.run(runner.memory, descriptors, count, GCM_OPEN);
      kernel.open_finish_batch(descriptors, count, 0);
    }
  } else {
    throw unknownOp(op);
  }
}

// Built out of line: see slotPool.ts.
function unknownOp(op: number): TypeError {
  return new TypeError(`unknown batch op ${op}`);
}
