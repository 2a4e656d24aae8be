// Poly1305 (RFC 8439 §2.5) in radix 2^32.
//
// Design: WASM has a 64×64→64 multiply but no 128-bit product. The
// accumulator h is four 32-bit limbs plus a small fifth (bits 128 and up),
// and the key r four 32-bit limbs. Clamping (§2.5.1) leaves every r limb
// below 2^28 and r1…r3 multiples of 4, so a limb product stays below 2^61
// and a sum of five below 2^64: no 128-bit arithmetic is needed. A product
// that lands at 2^128 or beyond wraps around: 2^130 ≡ 5 (mod p), so
// r_j · 2^128 ≡ (r_j / 4) · 5 = r_j + (r_j >> 2) =: wrap_j for j ≥ 1.
// One block costs 20 multiplies and the message words are added as loaded;
// radix 2^26 ("donna-32", what this file used before) needs 25 and a
// shift-and-mask split of every block, and the multiplier is the port the
// stitched ChaCha20 rounds compete for (chacha20.ts, keystreamGroup).
//
// Limb invariant between blocks: h0, h2, h3 < 2^32, h1 < 2^32 + 2, h4 < 4.
// With a message block added each is below 2^33 + 2 (h4 ≤ 4), which keeps
// every column sum below 2^63.3 (see the bounds in absorb).
//
// State lives in module globals: per instance, hence per thread, even though
// every worker shares linear memory. One MAC computation at a time per thread:
// polyInit, then polyBlocks / polyWords in message order, then polyFinish.

const W: u64 = 0xffffffff;

// Key r (clamped, §2.5.1), its wrap-around multiples, the pad s, and accumulator h.
export let r0: u64 = 0; export let r1: u64 = 0; export let r2: u64 = 0; export let r3: u64 = 0;
// wrap_j = r_j + (r_j >> 2), computed once per key here: as locals derived
// from r, V8 (11.3) sinks them into the block loop and recomputes them per block.
export let wrap1: u64 = 0; export let wrap2: u64 = 0; export let wrap3: u64 = 0;
export let h0: u64 = 0; export let h1: u64 = 0; export let h2: u64 = 0; export let h3: u64 = 0; export let h4: u64 = 0;
let pad0: u64 = 0, pad1: u64 = 0; // s as two little-endian 64-bit halves

/** §2.5: r from the first 16 key bytes (clamped), s from the last 16; h = 0. */
export function polyInit(rLo: u64, rHi: u64, sLo: u64, sHi: u64): void {
  // Clamping (§2.5.1): 0x0ffffffc0ffffffc0ffffffc0fffffff.
  r0 = rLo & 0x0fffffff;
  r1 = (rLo >> 32) & 0x0ffffffc;
  r2 = rHi & 0x0ffffffc;
  r3 = (rHi >> 32) & 0x0ffffffc;
  wrap1 = r1 + (r1 >> 2);
  wrap2 = r2 + (r2 >> 2);
  wrap3 = r3 + (r3 >> 2);
  pad0 = sLo;
  pad1 = sHi;
  h0 = 0; h1 = 0; h2 = 0; h3 = 0; h4 = 0;
}

/**
 * Absorbs one 16-byte block given as two little-endian 64-bit halves, with
 * `hibit` = 1 for a full block (the appended 0x01 byte of §2.5 is bit 128,
 * i.e. bit 0 of h4) and 0 for a final block already padded.
 */
// @ts-ignore: decorator
@inline function absorb(lo: u64, hi: u64, hibit: u64): void {
  let a0 = h0 + (lo & W);
  let a1 = h1 + (lo >> 32);
  let a2 = h2 + (hi & W);
  let a3 = h3 + (hi >> 32);
  let a4 = h4 + hibit;
  const k0 = r0, k1 = r1, k2 = r2, k3 = r3;
  const w1 = wrap1, w2 = wrap2, w3 = wrap3;
  // h = h · r mod 2^130 − 5. Column k collects a_i · r_j with i + j = k;
  // i + j ≥ 4 wraps to column i + j − 4 with wrap_j (w_j here) for r_j.
  // a4 · r0 stays in column 4. Bounds (a_i < 2^33 + 2, r_j < 2^28,
  // w_j < 1.25 · 2^28): d0 < 4.75 · 2^61, d1…d3 < 5 · 2^61 plus a carry
  // below 2^32, all below 2^64.
  const d0 = a0 * k0 + a1 * w3 + a2 * w2 + a3 * w1;
  let d1 = a0 * k1 + a1 * k0 + a2 * w3 + a3 * w2 + a4 * w1;
  let d2 = a0 * k2 + a1 * k1 + a2 * k0 + a3 * w3 + a4 * w2;
  let d3 = a0 * k3 + a1 * k2 + a2 * k1 + a3 * k0 + a4 * w3;
  let d4 = a4 * k0;
  // Carry up to column 4, keep its two low bits (bits 128, 129), fold the
  // rest (multiples of 2^130) into column 0 times 5, and carry that once.
  d1 += d0 >> 32; a0 = d0 & W;
  d2 += d1 >> 32; a1 = d1 & W;
  d3 += d2 >> 32; a2 = d2 & W;
  d4 += d3 >> 32; a3 = d3 & W;
  a4 = d4 & 3;
  a0 += (d4 >> 2) * 5;
  a1 += a0 >> 32; a0 &= W;
  h0 = a0; h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

/** Sets h (for code that ran the block arithmetic on locals, e.g. keystreamGroup). */
// @ts-ignore: decorator
@inline export function polySetAccumulator(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64): void {
  h0 = a0; h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

/** Absorbs len / 16 full blocks from m (len a multiple of 16). */
export function polyBlocks(m: usize, len: usize): void {
  // The same arithmetic as absorb(), on locals: globals would be reloaded
  // every block. keystreamGroup has a third copy (AssemblyScript cannot
  // return the five limbs from one inlined function).
  const end = m + len;
  const k0 = r0, k1 = r1, k2 = r2, k3 = r3;
  const w1 = wrap1, w2 = wrap2, w3 = wrap3;
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  while (m < end) {
    a0 += <u64>load<u32>(m);
    a1 += <u64>load<u32>(m, 4);
    a2 += <u64>load<u32>(m, 8);
    a3 += <u64>load<u32>(m, 12);
    a4 += 1;
    const d0 = a0 * k0 + a1 * w3 + a2 * w2 + a3 * w1;
    let d1 = a0 * k1 + a1 * k0 + a2 * w3 + a3 * w2 + a4 * w1;
    let d2 = a0 * k2 + a1 * k1 + a2 * k0 + a3 * w3 + a4 * w2;
    let d3 = a0 * k3 + a1 * k2 + a2 * k1 + a3 * k0 + a4 * w3;
    let d4 = a4 * k0;
    d1 += d0 >> 32; a0 = d0 & W;
    d2 += d1 >> 32; a1 = d1 & W;
    d3 += d2 >> 32; a2 = d2 & W;
    d4 += d3 >> 32; a3 = d3 & W;
    a4 = d4 & 3;
    a0 += (d4 >> 2) * 5;
    a1 += a0 >> 32; a0 &= W;
    m += 16;
  }
  h0 = a0; h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

/** Absorbs one full block given as four little-endian words (AAD, lengths). */
export function polyWords(w0: u32, w1: u32, w2: u32, w3: u32): void {
  absorb(<u64>w0 | (<u64>w1 << 32), <u64>w2 | (<u64>w3 << 32), 1);
}

/**
 * Absorbs the last n bytes (0 < n < 16) of a message. With `zeroPad` (the
 * AEAD's pad16, §2.8) they form a full block padded with zeros; otherwise
 * (plain Poly1305, §2.5) a 0x01 byte follows them and the block is shorter.
 */
export function polyTail(m: usize, n: usize, zeroPad: bool): void {
  let lo: u64 = 0, hi: u64 = 0;
  for (let i: usize = 0; i < n; i++) {
    const b = <u64>load<u8>(m + i);
    if (i < 8) lo |= b << (i << 3);
    else hi |= b << ((i - 8) << 3);
  }
  if (zeroPad) {
    absorb(lo, hi, 1);
  } else {
    if (n < 8) lo |= <u64>1 << (n << 3);
    else hi |= <u64>1 << ((n - 8) << 3);
    absorb(lo, hi, 0);
  }
}

/** Absorbs a message of any length the AEAD way: full blocks, then zero padding. */
export function polyPadded(m: usize, len: usize): void {
  const full = len & ~(<usize>15);
  polyBlocks(m, full);
  if (len > full) polyTail(m + full, len - full, true);
}

// The last tag computed, as two little-endian 64-bit halves.
export let tagLo: u64 = 0;
export let tagHi: u64 = 0;

/**
 * §2.5: tag = (h mod p + s) mod 2^128, left in tagLo / tagHi (registers, not
 * shared memory, so a tag being verified is never visible to another thread).
 * Branch-free: the final subtraction of p is selected with a mask.
 */
export function polyFinish(): void {
  // Carry fully (only h1 can exceed 32 bits). Then h4 <= 4, so
  // h < 2^130 + 2^128 < 2p and one conditional subtraction of p suffices.
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  a2 += a1 >> 32; a1 &= W;
  a3 += a2 >> 32; a2 &= W;
  a4 += a3 >> 32; a3 &= W;

  // g = h + 5 − 2^130; use g when it did not go negative, i.e. h >= p.
  let g0 = a0 + 5;
  let g1 = a1 + (g0 >> 32); g0 &= W;
  let g2 = a2 + (g1 >> 32); g1 &= W;
  let g3 = a3 + (g2 >> 32); g2 &= W;
  const g4 = a4 + (g3 >> 32); g3 &= W;
  const useG = 0 - (g4 >> 2); // all ones when g4 >= 4, i.e. g >= 2^130
  const useH = ~useG;
  a0 = (a0 & useH) | (g0 & useG);
  a1 = (a1 & useH) | (g1 & useG);
  a2 = (a2 & useH) | (g2 & useG);
  a3 = (a3 & useH) | (g3 & useG);

  // h mod 2^128, plus s (mod 2^128).
  const lo = a0 | (a1 << 32);
  const hi = a2 | (a3 << 32);
  const sumLo = lo + pad0;
  const carry: u64 = sumLo < lo ? 1 : 0;
  tagLo = sumLo;
  tagHi = hi + pad1 + carry;
}

/** Writes the last tag as 16 bytes at out. */
export function storeTag(out: usize): void {
  store<u64>(out, tagLo);
  store<u64>(out, tagHi, 8);
}

/** Constant-time comparison of the last tag with the 16 bytes at expected. */
export function tagMatches(expected: usize): bool {
  const diff = (tagLo ^ load<u64>(expected)) | (tagHi ^ load<u64>(expected, 8));
  // Fold to one bit without a data-dependent branch.
  return <bool>(<u32>(((diff | (0 - diff)) >> 63) ^ 1));
}
