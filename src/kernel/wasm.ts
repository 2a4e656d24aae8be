/**
 * Loading the WASM kernel. The module is compiled once per thread and can be
 * sent to workers; every instance imports the one shared memory it is given.
 */
import { readFileSync } from "node:fs";

/** The kernel's exports; addresses are byte offsets into the shared memory. */
export interface KernelExports {
  chacha20_xor(key: number, nonce: number, counter: number, src: number, dst: number, len: number): void;
  poly1305_mac(key: number, msg: number, len: number, out: number): void;
  aead_seal(key: number, nonce: number, aad: number, aadLen: number, src: number, dst: number, len: number, tag: number): void;
  aead_open(key: number, nonce: number, aad: number, aadLen: number, src: number, dst: number, len: number, tag: number): number;
  /** Per-instance scratch for opening (keystream kept until the tag verified); 0 bytes = unstitched. */
  set_scratch(at: number, len: number): void;
  /** Returns 1 when the packet (AES-GCM SA) was framed only and awaits the AES pass. */
  esp_seal(descriptor: number): number;
  /** Returns 1 when the packet (AES-GCM SA) was only checked and awaits the AES pass. */
  esp_open(descriptor: number): number;
  /** Each returns how many packets (of AES-GCM SAs) await the AES pass (./gcm.ts). */
  seal_batch(descriptors: number, count: number): number;
  open_batch(descriptors: number, count: number): number;
  /** Opens without committing sequence numbers (several threads per SA); commit_batch commits. */
  open_batch_deferred(descriptors: number, count: number): number;
  /**
   * After the AES pass of opening: trailer checks of the AES-GCM packets, and
   * with commit (1) their replay re-check and commit (single-threaded callers).
   */
  open_finish_batch(descriptors: number, count: number, commit: number): void;
  /** Re-checks and commits a deferred batch's sequence numbers, on the one thread owning the windows. */
  commit_batch(descriptors: number, count: number): void;
  /** Gives each descriptor its SA's next outbound sequence number (0 when exhausted). */
  assign_seq(descriptors: number, count: number): void;
  next_seq(sa: number): bigint;
  replay_accept(sa: number, seqLow: number): number;
  replay_check(sa: number, seqLow: number): number;
  replay_checked_seq(): bigint;
  replay_commit(sa: number, seq: bigint): void;
}

/** Pages (64 KiB) the kernel's memory import may grow to: 4 GiB, all of wasm32. */
export const KERNEL_MAX_PAGES = 65536;

let compiled: WebAssembly.Module | undefined;

/** The compiled kernel, compiled on first use. */
export function kernelModule(): WebAssembly.Module {
  if (compiled === undefined) {
    const bytes = readFileSync(new URL("../../../build/sluice.wasm", import.meta.url));
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

/** Creates a shared memory the kernel can import. */
export function createKernelMemory(initialPages: number, maximumPages = KERNEL_MAX_PAGES): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
}

/** Instantiates the kernel on a memory (synchronously; the module is small). */
export function instantiateKernel(memory: WebAssembly.Memory, module: WebAssembly.Module = kernelModule()): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}
