// The ChaCha20-Poly1305 AEAD (RFC 8439 §2.8).
//
// Design: one four-block ChaCha20 call yields block 0 (the Poly1305 one-time
// key, §2.6) and blocks 1–3 (the first 192 bytes of keystream) together, so a
// short packet costs one keystream group in all. Sealing encrypts, then MACs
// the ciphertext. Opening MACs first and decrypts only after the tag
// verified; the first group's keystream is kept (in per-thread globals) so
// verification does not cost an extra ChaCha20 call.

import { keystreamGroup, xorGroup, chacha20Xor, ks0, ks1 } from "./chacha20";
import { polyInit, polyPadded, polyWords, polyFinish, storeTag, tagMatches } from "./poly1305";

/** Runs the first keystream group (counters 0–3) and keys Poly1305 from block 0 (§2.6). */
// @ts-ignore: decorator
@inline function startAead(key: usize, n0: u32, n1: u32, n2: u32): void {
  keystreamGroup(key, n0, n1, n2, 0);
  polyInit(i64x2.extract_lane(ks0, 0), i64x2.extract_lane(ks0, 1), i64x2.extract_lane(ks1, 0), i64x2.extract_lane(ks1, 1));
}

/** XORs the keystream from block 1 on into len bytes (encrypt = decrypt). */
// @ts-ignore: decorator
@inline function cryptFromBlock1(key: usize, n0: u32, n1: u32, n2: u32, src: usize, dst: usize, len: usize): void {
  xorGroup(src, dst, len < 192 ? len : 192, 1);
  if (len > 192) chacha20Xor(key, n0, n1, n2, 4, src + 192, dst + 192, len - 192);
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
  cryptFromBlock1(key, n0, n1, n2, src, dst, len);
  polyPadded(aad, aadLen);
  polyPadded(dst, len);
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
  polyPadded(src, len);
  absorbLengths(aadLen, len);
  polyFinish();
  if (!tagMatches(tag)) return false;
  cryptFromBlock1(key, n0, n1, n2, src, dst, len);
  return true;
}

/**
 * The ESP form (RFC 7634 §2–3): the AAD is SPI ‖ seq-low, or SPI ‖ seq-high ‖
 * seq-low with ESN, always shorter than one Poly1305 block, so it is absorbed
 * from registers as one zero-padded block instead of from memory.
 * aadWords are the AAD's bytes as little-endian words; aadLen is 8 or 12.
 */
export function espAeadSeal(key: usize, n0: u32, n1: u32, n2: u32, a0: u32, a1: u32, a2: u32, aadLen: u32, buf: usize, len: usize, tag: usize): void {
  startAead(key, n0, n1, n2);
  cryptFromBlock1(key, n0, n1, n2, buf, buf, len);
  polyWords(a0, a1, a2, 0);
  polyPadded(buf, len);
  absorbLengths(aadLen, len);
  polyFinish();
  storeTag(tag);
}

/** Verifies and, only when authentic, decrypts in place; see espAeadSeal. */
export function espAeadOpen(key: usize, n0: u32, n1: u32, n2: u32, a0: u32, a1: u32, a2: u32, aadLen: u32, buf: usize, len: usize, tag: usize): bool {
  startAead(key, n0, n1, n2);
  polyWords(a0, a1, a2, 0);
  polyPadded(buf, len);
  absorbLengths(aadLen, len);
  polyFinish();
  if (!tagMatches(tag)) return false;
  cryptFromBlock1(key, n0, n1, n2, buf, buf, len);
  return true;
}
