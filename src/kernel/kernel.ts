/**
 * sluice/kernel: the WASM kernel for callers that drive batches themselves:
 * compile once, instantiate per thread on one shared memory, lay out SA
 * records and descriptors with ./layout, call seal_batch / open_batch.
 *
 * @example
 * ```ts
 * import { kernelModule, createKernelMemory, instantiateKernel, layout } from "sluice/kernel";
 * const memory = createKernelMemory(256);
 * const kernel = instantiateKernel(memory, kernelModule());
 * // write SA records and descriptors (layout.D_*, layout.SA_*) into memory.buffer, then:
 * kernel.seal_batch(descriptorsAt, count);
 * ```
 */
export { kernelModule, createKernelMemory, instantiateKernel, KERNEL_MAX_PAGES, type KernelExports } from "./wasm.js";
export * as layout from "./layout.js";
export { PACKET_STATUSES, statusName, type PacketStatus } from "./status.js";
export { validateSa, writeSaRecord, recordSize, type SaParams, type SaSpec } from "./saRecord.js";
