// Poly1305 (RFC 8439 §2.5) with 26-bit limbs.
//
// Design: WASM has a 64×64→64 multiply but no 128-bit product, so the
// accumulator h and the key r are split into five 26-bit limbs ("donna-32"):
// every limb product fits in 52 bits and a sum of five in 55, leaving room
// for lazy carries. `polyBlocks` is the straightforward one-block-at-a-time
// loop, the readable reference; `polyBlocks2x` (poly1305x2.ts) carries two
// blocks per step in SIMD and is checked against it by the tests.
//
// State lives in module globals: per instance, hence per thread, even though
// every worker shares linear memory. One MAC computation at a time per thread:
// polyInit, then polyBlocks / polyWords in message order, then polyFinish.

const M: u64 = 0x3ffffff;

// Key r (clamped, §2.5.1), its multiples by 5, the pad s, and accumulator h.
export let r0: u64 = 0; export let r1: u64 = 0; export let r2: u64 = 0; export let r3: u64 = 0; export let r4: u64 = 0;
export let h0: u64 = 0; export let h1: u64 = 0; export let h2: u64 = 0; export let h3: u64 = 0; export let h4: u64 = 0;
let pad0: u64 = 0, pad1: u64 = 0; // s as two little-endian 64-bit halves

/** §2.5: r from the first 16 key bytes (clamped), s from the last 16; h = 0. */
export function polyInit(rLo: u64, rHi: u64, sLo: u64, sHi: u64): void {
  // Clamping (§2.5.1) then splitting into 26-bit limbs.
  rLo &= 0x0ffffffc0fffffff;
  rHi &= 0x0ffffffc0ffffffc;
  r0 = rLo & M;
  r1 = (rLo >> 26) & M;
  r2 = ((rLo >> 52) | (rHi << 12)) & M;
  r3 = (rHi >> 14) & M;
  r4 = (rHi >> 40) & M;
  pad0 = sLo;
  pad1 = sHi;
  h0 = 0; h1 = 0; h2 = 0; h3 = 0; h4 = 0;
}

/**
 * Absorbs one 16-byte block given as two little-endian 64-bit halves, with
 * `hibit` = 1 << 24 for a full block (the appended 0x01 byte of §2.5 lands at
 * bit 128, i.e. bit 24 of limb 4) and 0 for a final block already padded.
 */
// @ts-ignore: decorator
@inline function absorb(lo: u64, hi: u64, hibit: u64): void {
  let a0 = h0 + (lo & M);
  let a1 = h1 + ((lo >> 26) & M);
  let a2 = h2 + (((lo >> 52) | (hi << 12)) & M);
  let a3 = h3 + ((hi >> 14) & M);
  let a4 = h4 + ((hi >> 40) | hibit);
  const s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;
  // h = h * r mod 2^130 - 5: limb k collects a_i * r_j with i + j = k, and
  // the terms with i + j >= 5 wrap around multiplied by 5 (2^130 ≡ 5).
  const d0 = a0 * r0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
  let d1 = a0 * r1 + a1 * r0 + a2 * s4 + a3 * s3 + a4 * s2;
  let d2 = a0 * r2 + a1 * r1 + a2 * r0 + a3 * s4 + a4 * s3;
  let d3 = a0 * r3 + a1 * r2 + a2 * r1 + a3 * r0 + a4 * s4;
  let d4 = a0 * r4 + a1 * r3 + a2 * r2 + a3 * r1 + a4 * r0;
  // Partial carry: limbs end below 2^26 except h1, which may exceed it a bit.
  let c = d0 >> 26; a0 = d0 & M;
  d1 += c; c = d1 >> 26; a1 = d1 & M;
  d2 += c; c = d2 >> 26; a2 = d2 & M;
  d3 += c; c = d3 >> 26; a3 = d3 & M;
  d4 += c; c = d4 >> 26; a4 = d4 & M;
  a0 += c * 5; c = a0 >> 26; a0 &= M;
  a1 += c;
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
  // every block, and r * 5 recomputed with them.
  const end = m + len;
  const k0 = r0, k1 = r1, k2 = r2, k3 = r3, k4 = r4;
  const s1 = k1 * 5, s2 = k2 * 5, s3 = k3 * 5, s4 = k4 * 5;
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  while (m < end) {
    const lo = load<u64>(m), hi = load<u64>(m, 8);
    a0 += lo & M;
    a1 += (lo >> 26) & M;
    a2 += ((lo >> 52) | (hi << 12)) & M;
    a3 += (hi >> 14) & M;
    a4 += (hi >> 40) | (1 << 24);
    const d0 = a0 * k0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
    let d1 = a0 * k1 + a1 * k0 + a2 * s4 + a3 * s3 + a4 * s2;
    let d2 = a0 * k2 + a1 * k1 + a2 * k0 + a3 * s4 + a4 * s3;
    let d3 = a0 * k3 + a1 * k2 + a2 * k1 + a3 * k0 + a4 * s4;
    let d4 = a0 * k4 + a1 * k3 + a2 * k2 + a3 * k1 + a4 * k0;
    let c = d0 >> 26; a0 = d0 & M;
    d1 += c; c = d1 >> 26; a1 = d1 & M;
    d2 += c; c = d2 >> 26; a2 = d2 & M;
    d3 += c; c = d3 >> 26; a3 = d3 & M;
    d4 += c; c = d4 >> 26; a4 = d4 & M;
    a0 += c * 5; c = a0 >> 26; a0 &= M;
    a1 += c;
    m += 16;
  }
  h0 = a0; h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

/** Absorbs one full block given as four little-endian words (AAD, lengths). */
export function polyWords(w0: u32, w1: u32, w2: u32, w3: u32): void {
  absorb(<u64>w0 | (<u64>w1 << 32), <u64>w2 | (<u64>w3 << 32), 1 << 24);
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
    absorb(lo, hi, 1 << 24);
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
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  let c = a1 >> 26; a1 &= M;
  a2 += c; c = a2 >> 26; a2 &= M;
  a3 += c; c = a3 >> 26; a3 &= M;
  a4 += c; c = a4 >> 26; a4 &= M;
  a0 += c * 5; c = a0 >> 26; a0 &= M;
  a1 += c;

  // g = h + 5 - 2^130; use g when it did not go negative, i.e. h >= p.
  let g0 = a0 + 5; c = g0 >> 26; g0 &= M;
  let g1 = a1 + c; c = g1 >> 26; g1 &= M;
  let g2 = a2 + c; c = g2 >> 26; g2 &= M;
  let g3 = a3 + c; c = g3 >> 26; g3 &= M;
  let g4 = a4 + c - (1 << 26);
  const useG = (g4 >> 63) - 1; // all ones when g4 >= 0
  const useH = ~useG;
  a0 = (a0 & useH) | (g0 & useG);
  a1 = (a1 & useH) | (g1 & useG);
  a2 = (a2 & useH) | (g2 & useG);
  a3 = (a3 & useH) | (g3 & useG);
  a4 = (a4 & useH) | (g4 & useG);

  // Back to 2 × 64 bits (mod 2^128), then add s.
  const lo = a0 | (a1 << 26) | (a2 << 52);
  const hi = (a2 >> 12) | (a3 << 14) | (a4 << 40);
  const sumLo = lo + pad0;
  const carry: u64 = sumLo < lo ? 1 : 0;
  const sumHi = hi + pad1 + carry;
  tagLo = sumLo;
  tagHi = sumHi;
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
