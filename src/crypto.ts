/**
 * ChaCha20-Poly1305 (RFC 8439 §2.8), one message at a time, on the calling
 * thread's WASM kernel; and AES-GCM (sealAesGcm / openAesGcm, below) on
 * the CPU's AES instructions.
 *
 * @example
 * ```ts
 * import { seal, open } from "sluice/crypto";
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const nonce = crypto.getRandomValues(new Uint8Array(12));
 * const sealed = seal(key, nonce, new Uint8Array(0), new TextEncoder().encode("hi"));
 * const plain = open(key, nonce, new Uint8Array(0), sealed); // Uint8Array, or null if forged
 * ```
 *
 * Each call copies its inputs into WASM memory and its output out; for many
 * packets, the batch path (sluice/kernel, the engine) avoids both copies.
 * A fresh ArrayBuffer per result can cost more than sealing the packet, so
 * results come from a slab (resultSlab.ts), and both calls take an optional
 * `output` array to write into instead, as libsodium's API does.
 */
import { localKernel, align, SCRATCH_KEY, SCRATCH_NONCE } from "./kernel/localKernel.js";
import { KEY_BYTES } from "./kernel/layout.js";
import { checkBytes } from "./argumentChecks.js";
import { ownedArray, ownedCopy } from "./resultSlab.js";
import { aesGcmPass } from "./kernel/gcm.js";

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/**
 * Encrypts and authenticates `plaintext` with `aad` as additional data.
 * @param output where to write the result (at least plaintext.length + 16 bytes); default: a new array
 * @returns ciphertext ‖ 16-byte tag: a new array, or a view of `output`. A new
 *   array of up to 8 KiB shares its `.buffer` with other results, as a pooled
 *   Buffer does: hand on the array, not its buffer, or pass an `output`.
 * @throws TypeError when key is not 32 bytes, nonce not 12, an argument is not a Uint8Array, or output is too short
 */
export function seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array {
  checkBytes("key", key, KEY_BYTES);
  checkMessage(nonce, aad, "plaintext", plaintext);
  if (output !== undefined) checkOutput(output, plaintext.length + TAG_BYTES);
  const local = localKernel();
  const aadAt = local.scratch(align(aad.length, 16) + plaintext.length + TAG_BYTES);
  const dataAt = aadAt + align(aad.length, 16);
  const mem = local.bytes;
  mem.set(key, SCRATCH_KEY);
  mem.set(nonce, SCRATCH_NONCE);
  mem.set(aad, aadAt);
  mem.set(plaintext, dataAt);
  local.kernel.aead_seal(SCRATCH_KEY, SCRATCH_NONCE, aadAt, aad.length, dataAt, dataAt, plaintext.length, dataAt + plaintext.length);
  mem.fill(0, SCRATCH_KEY, SCRATCH_KEY + KEY_BYTES);
  return copyOut(mem.subarray(dataAt, dataAt + plaintext.length + TAG_BYTES), output);
}

/**
 * Verifies and decrypts `sealed` (ciphertext ‖ tag).
 * @param output where to write the plaintext (at least sealed.length - 16 bytes); default: a new array
 * @returns the plaintext (a new array, which like seal's may share its
 *   `.buffer` with other results, or a view of `output`), or null when the
 *   tag does not verify; nothing is decrypted then and `output` is untouched
 * @throws TypeError when key is not 32 bytes, nonce not 12, an argument is not a Uint8Array, or output is too short
 */
export function open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array, output?: Uint8Array): Uint8Array | null {
  checkBytes("key", key, KEY_BYTES);
  checkMessage(nonce, aad, "sealed", sealed);
  if (sealed.length < TAG_BYTES) return null;
  const length = sealed.length - TAG_BYTES;
  if (output !== undefined) checkOutput(output, length);
  const local = localKernel();
  const aadAt = local.scratch(align(aad.length, 16) + sealed.length);
  const dataAt = aadAt + align(aad.length, 16);
  const mem = local.bytes;
  mem.set(key, SCRATCH_KEY);
  mem.set(nonce, SCRATCH_NONCE);
  mem.set(aad, aadAt);
  mem.set(sealed, dataAt);
  const ok = local.kernel.aead_open(SCRATCH_KEY, SCRATCH_NONCE, aadAt, aad.length, dataAt, dataAt, length, dataAt + length);
  mem.fill(0, SCRATCH_KEY, SCRATCH_KEY + KEY_BYTES);
  return ok === 1 ? copyOut(mem.subarray(dataAt, dataAt + length), output) : null;
}

/**
 * AES-GCM (NIST SP 800-38D) with a 12-byte nonce and a 16-byte tag: the
 * AEAD of RFC 4106's ESP, one message at a time, on the CPU's AES
 * instructions through Node's OpenSSL (the native addon; node:crypto where
 * it is not built: see `aesGcmPath`).
 *
 * @example
 * ```ts
 * import { sealAesGcm, openAesGcm } from "sluice/crypto";
 * const key = crypto.getRandomValues(new Uint8Array(32)); // 16 bytes: AES-128
 * const nonce = crypto.getRandomValues(new Uint8Array(12));
 * const sealed = sealAesGcm(key, nonce, new Uint8Array(0), new TextEncoder().encode("hi"));
 * const plain = openAesGcm(key, nonce, new Uint8Array(0), sealed); // or null if forged
 * ```
 * @param output where to write ciphertext ‖ tag (at least plaintext.length + 16 bytes); default: a new array
 * @throws TypeError when key is not 16 or 32 bytes, nonce not 12, an argument is not a Uint8Array, or output is too short
 */
export function sealAesGcm(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array {
  checkAesKey(key);
  checkMessage(nonce, aad, "plaintext", plaintext);
  const length = plaintext.length + TAG_BYTES;
  if (output !== undefined) checkOutput(output, length);
  const target = output ?? ownedArray(length);
  aesGcmPass().once(true, key, nonce, aad, plaintext, target);
  return target.length === length ? target : target.subarray(0, length);
}

/**
 * Verifies and decrypts an AES-GCM `sealed` (ciphertext ‖ 16-byte tag); see sealAesGcm.
 * @returns the plaintext, or null when the tag does not verify (`output` is untouched then)
 */
export function openAesGcm(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array, output?: Uint8Array): Uint8Array | null {
  checkAesKey(key);
  checkMessage(nonce, aad, "sealed", sealed);
  if (sealed.length < TAG_BYTES) return null;
  const length = sealed.length - TAG_BYTES;
  if (output !== undefined) checkOutput(output, length);
  const target = output ?? ownedArray(length);
  if (!aesGcmPass().once(false, key, nonce, aad, sealed, target)) return null;
  return target.length === length ? target : target.subarray(0, length);
}

/** Where sluice/crypto's and the engine's AES-GCM run: "native" (the addon) or "portable" (node:crypto). */
export function aesGcmPath(): "native" | "portable" {
  return aesGcmPass().path;
}

/** The arguments every seal and open here shares: a 12-byte nonce, the AAD and the message. */
function checkMessage(nonce: Uint8Array, aad: Uint8Array, name: "plaintext" | "sealed", message: Uint8Array): void {
  checkBytes("nonce", nonce, NONCE_BYTES);
  checkBytes("aad", aad);
  checkBytes(name, message);
}

function checkAesKey(key: Uint8Array): void {
  checkBytes("key", key);
  if (key.length !== 16 && key.length !== 32) throw new TypeError(`key must be 16 (AES-128) or 32 (AES-256) bytes, got ${key.length}`);
}

function copyOut(result: Uint8Array, output: Uint8Array | undefined): Uint8Array {
  if (output === undefined) return ownedCopy(result);
  output.set(result);
  return output.length === result.length ? output : output.subarray(0, result.length);
}

function checkOutput(output: Uint8Array, needed: number): void {
  checkBytes("output", output);
  if (output.length < needed) throw new TypeError(`output must hold at least ${needed} bytes, got ${output.length}`);
}
