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
 * // AES-GCM SAs (record field SA_CIPHER): seal_batch returns how many await the AES pass
 * // if (pending > 0) aesGcmPass().run(new Uint8Array(memory.buffer), descriptorsAt, count, GCM_SEAL);
 * ```
 */
export { kernelModule, createKernelMemory, instantiateKernel, KERNEL_MAX_PAGES, type KernelExports } from "./wasm.js";
export * as layout from "./layout.js";
export { PACKET_STATUSES, statusName, type PacketStatus } from "./status.js";
export { validateSa, writeSaRecord, recordSize, type SaParams, type SaSpec } from "./saRecord.js";
export { ESP_CIPHERS, cipherKeyBytes, type EspCipher } from "./cipher.js";
export { aesGcmPass, GCM_SEAL, GCM_OPEN, type AesGcmPass } from "./gcm.js";
