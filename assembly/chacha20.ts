// ChaCha20 (RFC 8439 §2.1–2.4), four blocks at a time in 128-bit SIMD.
//
// Design: the "vertical" layout. Each v128 holds the same state word of four
// consecutive blocks (lane j = block counter + j), so a quarter round on four
// blocks is the scalar quarter round written with i32x4 ops and needs no lane
// shuffles between column and diagonal rounds. Rotations by 16 and 8 are byte
// swizzles by constant index vectors; 12 and 7 are shift/shift/or. After the rounds the
// four 4x4 word groups are transposed back into 16-byte rows of keystream.
//
// The keystream of one group (4 blocks, 256 bytes) lands in sixteen v128
// globals. Globals are per instance, hence per thread, even though linear
// memory is shared by every worker: nothing here touches memory except the
// key, the input and the output the caller names. Row r of block j is
// `ks[4 * j + r]`, i.e. keystream byte 64 * j + 16 * r.

import { r0, r1, r2, r3, wrap1, wrap2, wrap3, h0, h1, h2, h3, h4, polySetAccumulator } from "./poly1305";

const W: u64 = 0xffffffff;

// Rotations by 16 and 8 as i8x16.swizzle with a constant index vector, not
// i8x16.shuffle: V8 (11.3) emits a shuffle's pattern as an immediate that it
// rebuilds at every use (movq, movq, vmovq, vpinsrq before each pshufb, and
// pshuflw + pshufhw for 16), while a constant swizzle index is one value,
// hoisted out of the round loop, and each rotate is a single pshufb (all
// indices in range, so no paddusb). Seal +7% at 1420 B (bench/crypto.ts).
// @ts-ignore: decorator
@inline function rotl16(x: v128): v128 {
  return i8x16.swizzle(x, i8x16(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}
// @ts-ignore: decorator
@inline function rotl8(x: v128): v128 {
  return i8x16.swizzle(x, i8x16(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14));
}
// @ts-ignore: decorator
@inline function rotl12(x: v128): v128 {
  return v128.or(i32x4.shl(x, 12), i32x4.shr_u(x, 20));
}
// @ts-ignore: decorator
@inline function rotl7(x: v128): v128 {
  return v128.or(i32x4.shl(x, 7), i32x4.shr_u(x, 25));
}

// Keystream rows of the last generated group; see the file comment.
export let ks0: v128 = i32x4(0, 0, 0, 0);
export let ks1: v128 = i32x4(0, 0, 0, 0);
export let ks2: v128 = i32x4(0, 0, 0, 0);
export let ks3: v128 = i32x4(0, 0, 0, 0);
export let ks4: v128 = i32x4(0, 0, 0, 0);
export let ks5: v128 = i32x4(0, 0, 0, 0);
export let ks6: v128 = i32x4(0, 0, 0, 0);
export let ks7: v128 = i32x4(0, 0, 0, 0);
export let ks8: v128 = i32x4(0, 0, 0, 0);
export let ks9: v128 = i32x4(0, 0, 0, 0);
export let ks10: v128 = i32x4(0, 0, 0, 0);
export let ks11: v128 = i32x4(0, 0, 0, 0);
export let ks12: v128 = i32x4(0, 0, 0, 0);
export let ks13: v128 = i32x4(0, 0, 0, 0);
export let ks14: v128 = i32x4(0, 0, 0, 0);
export let ks15: v128 = i32x4(0, 0, 0, 0);

/**
 * Computes blocks counter … counter+3 for the key at `key` (32 bytes) and the
 * nonce words n0 ‖ n1 ‖ n2 (RFC 8439 §2.3: state words 13–15, as loaded
 * little-endian from the 12 nonce bytes) into ks0 … ks15.
 *
 * Stitching: it also absorbs the full Poly1305 blocks in [mac, macEnd) (at
 * most 20) into the running MAC (poly1305.ts), two per double round. The
 * rounds keep the SIMD units busy and Poly1305 the scalar multiplier, and
 * out-of-order execution overlaps the two; run one after the other, each
 * waits on its own dependency chains. Pass mac == macEnd for keystream only.
 */
export function keystreamGroup(key: usize, n0: u32, n1: u32, n2: u32, counter: u32, mac: usize, macEnd: usize): void {
  // §2.3: "expa" "nd 3" "2-by" "te k", key, counter, nonce.
  const c0 = i32x4.splat(0x61707865);
  const c1 = i32x4.splat(0x3320646e);
  const c2 = i32x4.splat(0x79622d32);
  const c3 = i32x4.splat(0x6b206574);
  const k0 = i32x4.splat(load<u32>(key, 0));
  const k1 = i32x4.splat(load<u32>(key, 4));
  const k2 = i32x4.splat(load<u32>(key, 8));
  const k3 = i32x4.splat(load<u32>(key, 12));
  const k4 = i32x4.splat(load<u32>(key, 16));
  const k5 = i32x4.splat(load<u32>(key, 20));
  const k6 = i32x4.splat(load<u32>(key, 24));
  const k7 = i32x4.splat(load<u32>(key, 28));
  const ctr = i32x4.add(i32x4.splat(counter), i32x4(0, 1, 2, 3));
  const m0 = i32x4.splat(n0);
  const m1 = i32x4.splat(n1);
  const m2 = i32x4.splat(n2);

  let x0 = c0, x1 = c1, x2 = c2, x3 = c3;
  let x4 = k0, x5 = k1, x6 = k2, x7 = k3;
  let x8 = k4, x9 = k5, x10 = k6, x11 = k7;
  let x12 = ctr, x13 = m0, x14 = m1, x15 = m2;

  // Poly1305 state on locals; see polyBlocks for the arithmetic.
  const q0 = r0, q1 = r1, q2 = r2, q3 = r3;
  const w1 = wrap1, w2 = wrap2, w3 = wrap3;
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;

  for (let i = 0; i < 10; i++) {
    for (let b = 0; b < 2 && mac < macEnd; b++) {
      a0 += <u64>load<u32>(mac);
      a1 += <u64>load<u32>(mac, 4);
      a2 += <u64>load<u32>(mac, 8);
      a3 += <u64>load<u32>(mac, 12);
      a4 += 1;
      const d0 = a0 * q0 + a1 * w3 + a2 * w2 + a3 * w1;
      let d1 = a0 * q1 + a1 * q0 + a2 * w3 + a3 * w2 + a4 * w1;
      let d2 = a0 * q2 + a1 * q1 + a2 * q0 + a3 * w3 + a4 * w2;
      let d3 = a0 * q3 + a1 * q2 + a2 * q1 + a3 * q0 + a4 * w3;
      let d4 = a4 * q0;
      d1 += d0 >> 32; a0 = d0 & W;
      d2 += d1 >> 32; a1 = d1 & W;
      d3 += d2 >> 32; a2 = d2 & W;
      d4 += d3 >> 32; a3 = d3 & W;
      a4 = d4 & 3;
      a0 += (d4 >> 2) * 5;
      a1 += a0 >> 32; a0 &= W;
      mac += 16;
    }
      // column rounds (§2.3: QUARTERROUND(0, 4, 8, 12) …)
      x0 = i32x4.add(x0, x4); x12 = rotl16(v128.xor(x12, x0));
      x8 = i32x4.add(x8, x12); x4 = rotl12(v128.xor(x4, x8));
      x0 = i32x4.add(x0, x4); x12 = rotl8(v128.xor(x12, x0));
      x8 = i32x4.add(x8, x12); x4 = rotl7(v128.xor(x4, x8));
      x1 = i32x4.add(x1, x5); x13 = rotl16(v128.xor(x13, x1));
      x9 = i32x4.add(x9, x13); x5 = rotl12(v128.xor(x5, x9));
      x1 = i32x4.add(x1, x5); x13 = rotl8(v128.xor(x13, x1));
      x9 = i32x4.add(x9, x13); x5 = rotl7(v128.xor(x5, x9));
      x2 = i32x4.add(x2, x6); x14 = rotl16(v128.xor(x14, x2));
      x10 = i32x4.add(x10, x14); x6 = rotl12(v128.xor(x6, x10));
      x2 = i32x4.add(x2, x6); x14 = rotl8(v128.xor(x14, x2));
      x10 = i32x4.add(x10, x14); x6 = rotl7(v128.xor(x6, x10));
      x3 = i32x4.add(x3, x7); x15 = rotl16(v128.xor(x15, x3));
      x11 = i32x4.add(x11, x15); x7 = rotl12(v128.xor(x7, x11));
      x3 = i32x4.add(x3, x7); x15 = rotl8(v128.xor(x15, x3));
      x11 = i32x4.add(x11, x15); x7 = rotl7(v128.xor(x7, x11));
      // diagonal rounds
      x0 = i32x4.add(x0, x5); x15 = rotl16(v128.xor(x15, x0));
      x10 = i32x4.add(x10, x15); x5 = rotl12(v128.xor(x5, x10));
      x0 = i32x4.add(x0, x5); x15 = rotl8(v128.xor(x15, x0));
      x10 = i32x4.add(x10, x15); x5 = rotl7(v128.xor(x5, x10));
      x1 = i32x4.add(x1, x6); x12 = rotl16(v128.xor(x12, x1));
      x11 = i32x4.add(x11, x12); x6 = rotl12(v128.xor(x6, x11));
      x1 = i32x4.add(x1, x6); x12 = rotl8(v128.xor(x12, x1));
      x11 = i32x4.add(x11, x12); x6 = rotl7(v128.xor(x6, x11));
      x2 = i32x4.add(x2, x7); x13 = rotl16(v128.xor(x13, x2));
      x8 = i32x4.add(x8, x13); x7 = rotl12(v128.xor(x7, x8));
      x2 = i32x4.add(x2, x7); x13 = rotl8(v128.xor(x13, x2));
      x8 = i32x4.add(x8, x13); x7 = rotl7(v128.xor(x7, x8));
      x3 = i32x4.add(x3, x4); x14 = rotl16(v128.xor(x14, x3));
      x9 = i32x4.add(x9, x14); x4 = rotl12(v128.xor(x4, x9));
      x3 = i32x4.add(x3, x4); x14 = rotl8(v128.xor(x14, x3));
      x9 = i32x4.add(x9, x14); x4 = rotl7(v128.xor(x4, x9));
  }

  polySetAccumulator(a0, a1, a2, a3, a4);

  // §2.3: add the original state, then serialize. The transposition turns
  // "word w of blocks 0..3" into "words 4g..4g+3 of block j".
  x0 = i32x4.add(x0, c0); x1 = i32x4.add(x1, c1); x2 = i32x4.add(x2, c2); x3 = i32x4.add(x3, c3);
  x4 = i32x4.add(x4, k0); x5 = i32x4.add(x5, k1); x6 = i32x4.add(x6, k2); x7 = i32x4.add(x7, k3);
  x8 = i32x4.add(x8, k4); x9 = i32x4.add(x9, k5); x10 = i32x4.add(x10, k6); x11 = i32x4.add(x11, k7);
  x12 = i32x4.add(x12, ctr); x13 = i32x4.add(x13, m0); x14 = i32x4.add(x14, m1); x15 = i32x4.add(x15, m2);

  let t0 = i32x4.shuffle(x0, x1, 0, 4, 1, 5);
  let t1 = i32x4.shuffle(x2, x3, 0, 4, 1, 5);
  let t2 = i32x4.shuffle(x0, x1, 2, 6, 3, 7);
  let t3 = i32x4.shuffle(x2, x3, 2, 6, 3, 7);
  ks0 = i64x2.shuffle(t0, t1, 0, 2); ks4 = i64x2.shuffle(t0, t1, 1, 3);
  ks8 = i64x2.shuffle(t2, t3, 0, 2); ks12 = i64x2.shuffle(t2, t3, 1, 3);
  t0 = i32x4.shuffle(x4, x5, 0, 4, 1, 5);
  t1 = i32x4.shuffle(x6, x7, 0, 4, 1, 5);
  t2 = i32x4.shuffle(x4, x5, 2, 6, 3, 7);
  t3 = i32x4.shuffle(x6, x7, 2, 6, 3, 7);
  ks1 = i64x2.shuffle(t0, t1, 0, 2); ks5 = i64x2.shuffle(t0, t1, 1, 3);
  ks9 = i64x2.shuffle(t2, t3, 0, 2); ks13 = i64x2.shuffle(t2, t3, 1, 3);
  t0 = i32x4.shuffle(x8, x9, 0, 4, 1, 5);
  t1 = i32x4.shuffle(x10, x11, 0, 4, 1, 5);
  t2 = i32x4.shuffle(x8, x9, 2, 6, 3, 7);
  t3 = i32x4.shuffle(x10, x11, 2, 6, 3, 7);
  ks2 = i64x2.shuffle(t0, t1, 0, 2); ks6 = i64x2.shuffle(t0, t1, 1, 3);
  ks10 = i64x2.shuffle(t2, t3, 0, 2); ks14 = i64x2.shuffle(t2, t3, 1, 3);
  t0 = i32x4.shuffle(x12, x13, 0, 4, 1, 5);
  t1 = i32x4.shuffle(x14, x15, 0, 4, 1, 5);
  t2 = i32x4.shuffle(x12, x13, 2, 6, 3, 7);
  t3 = i32x4.shuffle(x14, x15, 2, 6, 3, 7);
  ks3 = i64x2.shuffle(t0, t1, 0, 2); ks7 = i64x2.shuffle(t0, t1, 1, 3);
  ks11 = i64x2.shuffle(t2, t3, 0, 2); ks15 = i64x2.shuffle(t2, t3, 1, 3);
}

/**
 * XORs one 16-byte keystream row into dst[off..] from src[off..], or only the
 * first len - off bytes when the data ends inside the row.
 */
// @ts-ignore: decorator
@inline function xorRow(src: usize, dst: usize, off: usize, len: usize, row: v128): void {
  if (off + 16 <= len) {
    v128.store(dst + off, v128.xor(v128.load(src + off), row));
  } else if (off < len) {
    xorPartialRow(src + off, dst + off, len - off, row);
  }
}

function xorPartialRow(src: usize, dst: usize, n: usize, row: v128): void {
  let word = i64x2.extract_lane(row, 0);
  for (let i: usize = 0; i < n; i++) {
    if (i == 8) word = i64x2.extract_lane(row, 1);
    store<u8>(dst + i, load<u8>(src + i) ^ <u8>(word >> ((i & 7) << 3)));
  }
}

/**
 * XORs the keystream rows in ks0 … ks15, starting at block `firstBlock` of
 * the group, into `len` bytes (at most (4 - firstBlock) * 64).
 */
export function xorGroup(src: usize, dst: usize, len: usize, firstBlock: u32): void {
  // The offset of block j is 64 * (j - firstBlock); blocks before firstBlock
  // are skipped (block 0 of the AEAD's first group is the Poly1305 key).
  if (firstBlock == 0) {
    xorRow(src, dst, 0, len, ks0);
    xorRow(src, dst, 16, len, ks1);
    xorRow(src, dst, 32, len, ks2);
    xorRow(src, dst, 48, len, ks3);
    src += 64; dst += 64; len = len > 64 ? len - 64 : 0;
  }
  xorRow(src, dst, 0, len, ks4);
  xorRow(src, dst, 16, len, ks5);
  xorRow(src, dst, 32, len, ks6);
  xorRow(src, dst, 48, len, ks7);
  xorRow(src, dst, 64, len, ks8);
  xorRow(src, dst, 80, len, ks9);
  xorRow(src, dst, 96, len, ks10);
  xorRow(src, dst, 112, len, ks11);
  xorRow(src, dst, 128, len, ks12);
  xorRow(src, dst, 144, len, ks13);
  xorRow(src, dst, 160, len, ks14);
  xorRow(src, dst, 176, len, ks15);
}

/**
 * Stores the keystream rows in ks0 … ks15 from block \`firstBlock\` (0 or 1)
 * on, as consecutive keystream bytes at \`at\`.
 */
export function storeGroup(at: usize, firstBlock: u32): void {
  if (firstBlock == 0) {
    v128.store(at, ks0); v128.store(at, ks1, 16); v128.store(at, ks2, 32); v128.store(at, ks3, 48);
    at += 64;
  }
  v128.store(at, ks4); v128.store(at, ks5, 16); v128.store(at, ks6, 32); v128.store(at, ks7, 48);
  v128.store(at, ks8, 64); v128.store(at, ks9, 80); v128.store(at, ks10, 96); v128.store(at, ks11, 112);
  v128.store(at, ks12, 128); v128.store(at, ks13, 144); v128.store(at, ks14, 160); v128.store(at, ks15, 176);
}

/** dst = src XOR keystream, len bytes, with the keystream already in memory at ks. */
export function xorStored(src: usize, ks: usize, dst: usize, len: usize): void {
  let i: usize = 0;
  for (; i + 16 <= len; i += 16) {
    v128.store(dst + i, v128.xor(v128.load(src + i), v128.load(ks + i)));
  }
  for (; i < len; i++) store<u8>(dst + i, load<u8>(src + i) ^ load<u8>(ks + i));
}

/**
 * RFC 8439 §2.4: dst = src XOR keystream(key, nonce, counter …), len bytes.
 * src and dst may be the same buffer (in place) but must not otherwise overlap.
 */
export function chacha20Xor(key: usize, n0: u32, n1: u32, n2: u32, counter: u32, src: usize, dst: usize, len: usize): void {
  while (len > 0) {
    keystreamGroup(key, n0, n1, n2, counter, 0, 0);
    const n = len < 256 ? len : 256;
    xorGroup(src, dst, n, 0);
    counter += 4;
    src += n;
    dst += n;
    len -= n;
  }
}
