/**
 * The calling thread's own kernel instance, for the synchronous one-shot APIs
 * (sluice/crypto, sluice/esp). It has a memory of its own, laid out as
 *
 *   [0, 128)          scratch header: key, nonce, descriptor of the current call
 *   [128, 128 + OPEN_SCRATCH)  the kernel's keystream scratch for opening (set_scratch)
 *   [.., heapTop)     SA records of live OutboundSa / InboundSa objects
 *   [heapTop, …)      scratch for the packet of the current call, grown on demand
 *
 * Every call copies its input in and its output out, so nothing here is
 * retained between calls except SA records. Key bytes of a call are zeroed
 * before it returns; an SA record's key when the SA is destroyed.
 */
import { createKernelMemory, instantiateKernel, type KernelExports } from "./wasm.js";

export const SCRATCH_KEY = 0;
export const SCRATCH_NONCE = 32;
export const SCRATCH_DESCRIPTOR = 64;
const HEADER_BYTES = 128;
/** Keystream scratch: enough to open a 64 KiB packet stitched (aead.ts, scratchNeeded). */
export const OPEN_SCRATCH_BYTES = 65536 + 512;
const PAGE = 65536;

export class LocalKernel {
  readonly memory: WebAssembly.Memory;
  readonly kernel: KernelExports;
  /** A view of the whole memory; replaced whenever the memory grows. */
  bytes: Uint8Array;
  view: DataView;
  private heapTop = HEADER_BYTES + OPEN_SCRATCH_BYTES;
  /** The memory's size, tracked here: reading memory.buffer of a shared memory allocates. */
  private capacity: number;
  private readonly freeRecords = new Map<number, number[]>();

  constructor() {
    this.memory = createKernelMemory(4);
    this.kernel = instantiateKernel(this.memory);
    this.kernel.set_scratch(HEADER_BYTES, OPEN_SCRATCH_BYTES);
    this.bytes = new Uint8Array(this.memory.buffer);
    this.view = new DataView(this.memory.buffer);
    this.capacity = this.bytes.length;
  }

  /** Reserves a zeroed, 64-byte aligned record of `size` bytes that outlives calls. */
  allocRecord(size: number): number {
    const reused = this.freeRecords.get(size)?.pop();
    if (reused !== undefined) return reused;
    const at = align(this.heapTop, 64);
    this.heapTop = at + size;
    this.ensure(this.heapTop);
    // Fresh memory here was the scratch of earlier calls: packets, whose
    // bytes in a replay bitmap would be sequence numbers already "seen".
    this.bytes.fill(0, at, at + size);
    return at;
  }

  /** Zeroes a record (its key with it) and keeps it for reuse. */
  freeRecord(at: number, size: number): void {
    this.bytes.fill(0, at, at + size);
    let list = this.freeRecords.get(size);
    if (list === undefined) this.freeRecords.set(size, (list = []));
    list.push(at);
  }

  /** The start of `size` bytes of scratch, valid until the next call. */
  scratch(size: number): number {
    const at = align(this.heapTop, 64);
    this.ensure(at + size);
    return at;
  }

  private ensure(end: number): void {
    if (end <= this.capacity) return;
    this.memory.grow(Math.ceil((end - this.capacity) / PAGE));
    this.bytes = new Uint8Array(this.memory.buffer);
    this.view = new DataView(this.memory.buffer);
    this.capacity = this.bytes.length;
  }
}

export function align(n: number, to: number): number {
  return (n + to - 1) & ~(to - 1);
}

let local: LocalKernel | undefined;

/** This thread's kernel instance, created on first use. */
export function localKernel(): LocalKernel {
  return (local ??= new LocalKernel());
}
