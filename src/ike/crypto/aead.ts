/**
 * The AEAD of the Encrypted (SK) payload (RFC 7296 §3.14 with RFC 5282):
 * AES-GCM with a 16-byte ICV (RFC 5282 §3.2, §4) and ChaCha20-Poly1305
 * (RFC 7634 §2, §3), both from sluice's own one-shot AEADs (src/crypto.ts):
 * ChaCha20-Poly1305 on the WASM kernel the data plane uses, AES-GCM on
 * Node's OpenSSL through the addon (node:crypto where it is not built).
 *
 * Why not node:crypto's cipher objects: one per message cost 9-12 µs for an
 * SK payload of 100-1200 bytes on the 2-core Zen 5 (sluice's ChaCha20-Poly1305
 * 1-3 µs), and each left a native object for the garbage collector to
 * finalize; an IKE handshake seals and opens four messages a side.
 *
 * Both take their key material from prf+ as key ‖ 4-byte salt, and both build
 * the 12-byte nonce as salt ‖ the 8-byte IV sent in the SK payload; the AAD
 * is the IKE header and the SK payload header (RFC 5282 §5.1). The IKE codec
 * owns those headers; this file only sees bytes.
 *
 * Key material is ours, so a keymat of the wrong length is a programming
 * error and throws. What comes off the wire is not: aeadOpen answers null
 * for anything that does not authenticate, an IV of the wrong length and a
 * body shorter than a tag included, and never throws on it. A forged
 * message's decrypted bytes are zeroed, never returned.
 *
 * AES-192-GCM (keymat 28 bytes) is refused: strongSwan proposes AES-GCM with
 * 128 and 256-bit keys by default, and one length fewer is one test matrix
 * fewer. AES-GCM's Key Length attribute is mandatory (RFC 5282 §7.3), so
 * aeadKeymatLength wants it.
 */
import { open, openAesGcm, seal, sealAesGcm } from "../../crypto.js";
import { checkBytes } from "../../argumentChecks.js";

/** Transform Type 1 IDs: ENCR_AES_GCM_16 = 20, ENCR_CHACHA20_POLY1305 = 28. */
export type AeadId = 20 | 28;

export const AEAD_IV_BYTES = 8;
export const AEAD_TAG_BYTES = 16;

/** Key material = key ‖ salt (RFC 5282 §7.1, RFC 7634 §3). */
const SALT_BYTES = 4;
const NONCE_BYTES = SALT_BYTES + AEAD_IV_BYTES;

/**
 * Whether `id` is an AEAD transform this module implements.
 *
 * @example
 * ```ts
 * const aead = proposal.encr.filter((t) => isAeadId(t.id));
 * ```
 */
export function isAeadId(id: number): id is AeadId {
  return id === 20 || id === 28;
}

/**
 * Whether aeadKeymatLength(id, keyBits) has an answer: AES-GCM with 128 or
 * 256-bit keys, ChaCha20-Poly1305 with no Key Length attribute or 256.
 * For choosing among proposals without catching exceptions.
 *
 * @example
 * ```ts
 * aeadKeyBitsSupported(20, 192); // false: skip that transform
 * ```
 */
export function aeadKeyBitsSupported(id: AeadId, keyBits?: number): boolean {
  if (id === 20) return keyBits === 128 || keyBits === 256;
  if (id === 28) return keyBits === undefined || keyBits === 256;
  return false;
}

/**
 * Key material length in bytes: the key plus the 4-byte salt (RFC 5282 §7.1,
 * RFC 7634 §3): AES-GCM 128 → 20, 256 → 36 (keyBits required, 128 or 256;
 * 192 is refused); ChaCha20-Poly1305 → 36 (keyBits must be undefined or 256).
 *
 * @example
 * ```ts
 * const keymatBytes = aeadKeymatLength(20, 256); // 36: SK_ei and SK_er are this long
 * ```
 * @throws RangeError for an unknown id or an unsupported key length
 */
export function aeadKeymatLength(id: AeadId, keyBits?: number): number {
  if (!isAeadId(id)) throw new RangeError(`unknown AEAD transform id ${String(id)} (supported: 20, 28)`);
  if (!aeadKeyBitsSupported(id, keyBits)) {
    throw new RangeError(id === 20
      ? `ENCR_AES_GCM_16 needs a Key Length of 128 or 256 bits, got ${String(keyBits)}`
      : `ENCR_CHACHA20_POLY1305 takes no Key Length other than 256 bits, got ${String(keyBits)}`);
  }
  return (keyBits ?? 256) / 8 + SALT_BYTES;
}

/**
 * Encrypts and authenticates the SK payload's plaintext (inner payloads,
 * padding, pad length).
 *
 * @example
 * ```ts
 * const iv = nextIv(); // 8 bytes, never repeated under one key
 * const body = aeadSeal(20, skE, iv, concat(ikeHeader, skHeader), inner);
 * // SK payload data = iv ‖ body
 * ```
 * @returns ciphertext ‖ 16-byte tag; nonce = salt (last 4 bytes of keymat) ‖ iv (8 bytes)
 * @throws RangeError when keymat's length does not fit the transform or iv is not 8 bytes; TypeError for a non-Uint8Array argument
 */
export function aeadSeal(id: AeadId, keymat: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  checkKeymat(id, keymat);
  checkBytes("iv", iv);
  if (iv.length !== AEAD_IV_BYTES) throw new RangeError(`iv must be ${AEAD_IV_BYTES} bytes, got ${iv.length}`);
  const { key, nonce } = split(keymat, iv);
  // seal and sealAesGcm check aad and plaintext.
  return id === 28 ? seal(key, nonce, aad, plaintext) : sealAesGcm(key, nonce, aad, plaintext);
}

/**
 * Verifies and decrypts an SK payload body (ciphertext ‖ tag).
 *
 * @example
 * ```ts
 * const inner = aeadOpen(20, skE, iv, concat(ikeHeader, skHeader), body);
 * if (inner === null) return drop("sk-auth"); // RFC 7296 §2.21.2: discard, no reply
 * ```
 * @returns the plaintext, or null when the tag does not verify, the input is
 *   shorter than a tag, or iv is not 8 bytes; never throws on bad input data
 * @throws RangeError when keymat's length does not fit the transform; TypeError for a non-Uint8Array argument
 */
export function aeadOpen(id: AeadId, keymat: Uint8Array, iv: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  checkKeymat(id, keymat);
  checkBytes("iv", iv);
  checkBytes("sealed", sealed);
  if (iv.length !== AEAD_IV_BYTES || sealed.length < AEAD_TAG_BYTES) return null;
  const { key, nonce } = split(keymat, iv);
  return id === 28 ? open(key, nonce, aad, sealed) : openAesGcm(key, nonce, aad, sealed);
}

/** Throws unless `keymat` is key ‖ salt of a length `id` takes (aeadKeyBitsSupported's lengths). */
function checkKeymat(id: AeadId, keymat: Uint8Array): void {
  checkBytes("keymat", keymat);
  if (!isAeadId(id)) throw new RangeError(`unknown AEAD transform id ${String(id)} (supported: 20, 28)`);
  if (!aeadKeyBitsSupported(id, (keymat.length - SALT_BYTES) * 8)) {
    throw new RangeError(`${id === 20 ? "ENCR_AES_GCM_16 keymat must be 20 or 36" : "ENCR_CHACHA20_POLY1305 keymat must be 36"} bytes (key ‖ 4-byte salt), got ${keymat.length}`);
  }
}

/** RFC 5282 §4, §7.1 / RFC 7634 §2: key = keymat minus its last 4 bytes; nonce = those 4 bytes ‖ iv. */
function split(keymat: Uint8Array, iv: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const keyLength = keymat.length - SALT_BYTES;
  const nonce = new Uint8Array(NONCE_BYTES);
  nonce.set(keymat.subarray(keyLength), 0);
  nonce.set(iv, SALT_BYTES);
  return { key: keymat.subarray(0, keyLength), nonce };
}
