// The ChaCha20-Poly1305 AEAD (RFC 8439 §2.8).
//
// Design: one four-block ChaCha20 call yields block 0 (the Poly1305 one-time
// key, §2.6) and blocks 1–3 (the first 192 bytes of keystream) together, so a
// short packet costs one keystream group in all. ChaCha20 (SIMD) and
// Poly1305 (scalar multiplies) are stitched: each keystream group runs with
// up to 20 Poly1305 blocks interleaved (chacha20.ts, keystreamGroup).
// Sealing MACs ciphertext it has already written. Opening MACs the
// ciphertext while the keystream goes to per-thread scratch, and decrypts
// only after the tag verified: unauthenticated plaintext is never written.

import { keystreamGroup, xorGroup, storeGroup, xorStored, chacha20Xor, ks0, ks1 } from "./chacha20";
import { polyInit, polyPadded, polyWords, polyFinish, storeTag, tagMatches } from "./poly1305";

/** Runs the first keystream group (counters 0–3) and keys Poly1305 from block 0 (§2.6). */
// @ts-ignore: decorator
@inline function startAead(key: usize, n0: u32, n1: u32, n2: u32): void {
  keystreamGroup(key, n0, n1, n2, 0, 0, 0);
  polyInit(i64x2.extract_lane(ks0, 0), i64x2.extract_lane(ks0, 1), i64x2.extract_lane(ks1, 0), i64x2.extract_lane(ks1, 1));
}

/** XORs the keystream from block 1 on into len bytes, unstitched (see sealBody). */
// @ts-ignore: decorator
@inline function cryptFromBlock1(key: usize, n0: u32, n1: u32, n2: u32, src: usize, dst: usize, len: usize): void {
  xorGroup(src, dst, len < 192 ? len : 192, 1);
  if (len > 192) chacha20Xor(key, n0, n1, n2, 4, src + 192, dst + 192, len - 192);
}

/** The most Poly1305 blocks keystreamGroup absorbs in one call. */
const MAC_BYTES_PER_GROUP: usize = 320;

/**
 * Encrypts len bytes (src → dst, in place allowed) and MACs the ciphertext,
 * after startAead and the AAD. Each keystream group runs together with the
 * MAC of ciphertext already written (up to 20 blocks); what is left when the
 * keystream ends (at most the last chunk) is MACed alone.
 */
// @ts-ignore: decorator
@inline function sealBody(key: usize, n0: u32, n1: u32, n2: u32, src: usize, dst: usize, len: usize): void {
  let done = len < 192 ? len : 192;
  xorGroup(src, dst, done, 1);
  let macAt = dst;
  let counter: u32 = 4;
  while (done < len) {
    let macBytes = (dst + done - macAt) & ~(<usize>15);
    if (macBytes > MAC_BYTES_PER_GROUP) macBytes = MAC_BYTES_PER_GROUP;
    const macEnd = macAt + macBytes;
    keystreamGroup(key, n0, n1, n2, counter, macAt, macEnd);
    macAt = macEnd;
    const n = len - done < 256 ? len - done : 256;
    xorGroup(src + done, dst + done, n, 0);
    done += n;
    counter += 4;
  }
  polyPadded(macAt, dst + len - macAt);
}

// Per-instance scratch for opening: the keystream is computed together with
// the MAC and kept here until the tag verified. Set by set_scratch.
let scratchAt: usize = 0;
let scratchLen: usize = 0;

/** Gives this instance (thread) scratch memory of its own for opening. */
export function setScratch(at: usize, len: usize): void {
  scratchAt = at;
  scratchLen = len;
}

/** Scratch bytes needed to open len bytes stitched: whole keystream groups. */
// @ts-ignore: decorator
@inline function scratchNeeded(len: usize): usize {
  return (len + 64 + 255) & ~(<usize>255);
}

/**
 * MACs len ciphertext bytes at src (after startAead and the AAD) and, only
 * if the tag at tag verifies, decrypts them into dst. With enough scratch the
 * keystream is computed during the MAC and parked in scratch, so nothing is
 * decrypted before verification and the two still overlap; otherwise the
 * MAC runs first and the keystream after it.
 */
// @ts-ignore: decorator
@inline function openBody(key: usize, n0: u32, n1: u32, n2: u32, aadLen: u64, src: usize, dst: usize, len: usize, tag: usize): bool {
  if (len <= 192 || scratchNeeded(len) > scratchLen) {
    polyPadded(src, len);
    absorbLengths(aadLen, len);
    polyFinish();
    if (!tagMatches(tag)) return false;
    cryptFromBlock1(key, n0, n1, n2, src, dst, len);
    return true;
  }
  const ks = scratchAt;
  storeGroup(ks, 1);
  const macLimit = src + (len & ~(<usize>15));
  let macAt = src;
  let counter: u32 = 4;
  for (let at: usize = 192; at < len; at += 256) {
    let macEnd = macAt + MAC_BYTES_PER_GROUP;
    if (macEnd > macLimit) macEnd = macLimit;
    keystreamGroup(key, n0, n1, n2, counter, macAt, macEnd);
    if (macEnd > macAt) macAt = macEnd;
    storeGroup(ks + at, 0);
    counter += 4;
  }
  polyPadded(macAt, src + len - macAt);
  absorbLengths(aadLen, len);
  polyFinish();
  if (!tagMatches(tag)) return false;
  xorStored(src, ks, dst, len);
  return true;
}

/** §2.8: the lengths block, aadLen ‖ ctLen as two little-endian 64-bit numbers. */
// @ts-ignore: decorator
@inline function absorbLengths(aadLen: u64, ctLen: u64): void {
  polyWords(<u32>aadLen, <u32>(aadLen >> 32), <u32>ctLen, <u32>(ctLen >> 32));
}

/**
 * Seals len bytes from src into dst (in place allowed) and writes the 16-byte
 * tag at tag. The AAD is aadLen bytes at aad. The nonce is given as its three
 * little-endian words.
 */
export function aeadSeal(key: usize, n0: u32, n1: u32, n2: u32, aad: usize, aadLen: usize, src: usize, dst: usize, len: usize, tag: usize): void {
  startAead(key, n0, n1, n2);
  polyPadded(aad, aadLen);
  sealBody(key, n0, n1, n2, src, dst, len);
  absorbLengths(aadLen, len);
  polyFinish();
  storeTag(tag);
}

/**
 * Verifies the tag at tag over aad and the len ciphertext bytes at src, and
 * only if it matches decrypts them into dst (in place allowed). The computed
 * tag stays in registers. Returns true when authentic.
 */
export function aeadOpen(key: usize, n0: u32, n1: u32, n2: u32, aad: usize, aadLen: usize, src: usize, dst: usize, len: usize, tag: usize): bool {
  startAead(key, n0, n1, n2);
  polyPadded(aad, aadLen);
  return openBody(key, n0, n1, n2, aadLen, src, dst, len, tag);
}

/**
 * The ESP form (RFC 7634 §2–3): the AAD is SPI ‖ seq-low, or SPI ‖ seq-high ‖
 * seq-low with ESN, always shorter than one Poly1305 block, so it is absorbed
 * from registers as one zero-padded block instead of from memory.
 * a0 … a2 are the AAD's bytes as little-endian words; aadLen is 8 or 12.
 */
export function espAeadSeal(key: usize, n0: u32, n1: u32, n2: u32, a0: u32, a1: u32, a2: u32, aadLen: u32, buf: usize, len: usize, tag: usize): void {
  startAead(key, n0, n1, n2);
  polyWords(a0, a1, a2, 0);
  sealBody(key, n0, n1, n2, buf, buf, len);
  absorbLengths(aadLen, len);
  polyFinish();
  storeTag(tag);
}

/** Verifies and, only when authentic, decrypts in place; see espAeadSeal. */
export function espAeadOpen(key: usize, n0: u32, n1: u32, n2: u32, a0: u32, a1: u32, a2: u32, aadLen: u32, buf: usize, len: usize, tag: usize): bool {
  startAead(key, n0, n1, n2);
  polyWords(a0, a1, a2, 0);
  return openBody(key, n0, n1, n2, aadLen, buf, buf, len, tag);
}
