/**
 * Fresh result arrays for the allocating one-shot calls (sluice/crypto,
 * sluice/esp, the engine's convenient path), cut from 64 KiB slabs the way
 * Buffer.allocUnsafe cuts small Buffers from its 8 KiB pool.
 *
 * Why: every `new Uint8Array(n)` above 64 bytes is an ArrayBuffer with a
 * backing store of its own, a calloc on this thread that V8's ArrayBuffer
 * sweeper frees on a background thread; the two contend for glibc's arena
 * lock, and where a futex wait is dear (a VM) that costs more than sealing
 * the packet: on a 2-core AMD EPYC VM, 1.3–2.6 µs per 1436-byte result
 * against 1.8 µs for the seal itself. A view into a slab costs ~0.2 µs, and
 * the slab's one allocation is shared by ~45 results of 1420 bytes.
 *
 * Sizes, measured interleaved on that machine: 64 KiB and 32 KiB slabs tie;
 * 8 KiB (Buffer's pool size) amortizes too little, and 128 KiB or more is
 * above glibc's mmap threshold, so each slab is an mmap, page faults and a
 * munmap. Results above 8 KiB get an array of their own: the allocation is a
 * small part of their cost, and a slab wastes at most 8 KiB at its end.
 *
 * Ownership: no byte of a slab is handed out twice, so a result is the
 * caller's to keep and write; it is a plain Uint8Array (not a Buffer, not
 * shared memory). Its `.buffer`, like a pooled Buffer's, also holds other
 * results of this thread; a caller who hands `.buffer` on, or must not keep
 * 64 KiB alive with one small result, passes an `output` of its own instead.
 */

const SLAB_BYTES = 65536;
/** Larger results are allocated on their own. */
const POOLED_MAX = SLAB_BYTES / 8;

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/** A new zeroed array of the caller's own, `length` bytes (for results a native call writes in place). */
export function ownedArray(length: number): Uint8Array {
  if (length > POOLED_MAX) return new Uint8Array(length);
  if (used + length > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const array = new Uint8Array(slab, used, length);
  // 8-byte aligned, as Buffer's pool is: a caller may lay a wider view over the result.
  used = (used + length + 7) & ~7;
  return array;
}

/** A new array of the caller's own holding a copy of `bytes`. */
export function ownedCopy(bytes: Uint8Array): Uint8Array {
  const copy = ownedArray(bytes.length);
  copy.set(bytes);
  return copy;
}
