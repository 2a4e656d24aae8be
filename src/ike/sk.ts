/**
 * The cipher of an IKE SA's Encrypted payload (RFC 7296 §3.14 with the AEAD
 * rules of RFC 5282 and RFC 7634): one per direction, each with its own key.
 *
 * Why a counter for the IV: an AEAD's nonce must never repeat under a key;
 * a 64-bit counter per direction guarantees that where random IVs only make
 * it likely (RFC 5282 §3.1 allows either). Retransmissions resend the bytes
 * already sealed, so they never draw a new IV.
 */
import { AEAD_IV_BYTES, AEAD_TAG_BYTES, aeadOpen, aeadSeal, type AeadId } from "./crypto/aead.js";
import type { SkOpener, SkSealer } from "./codec/message.js";

export class SkCipher implements SkSealer, SkOpener {
  readonly ivBytes = AEAD_IV_BYTES;
  readonly tagBytes = AEAD_TAG_BYTES;
  #counter = 0n;

  /** `keymat` is SK_e (key ‖ salt); kept by reference and wiped by wipe(). */
  constructor(private readonly id: AeadId, private readonly keymat: Uint8Array) {}

  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const iv = new Uint8Array(AEAD_IV_BYTES);
    new DataView(iv.buffer).setBigUint64(0, ++this.#counter);
    const sealed = aeadSeal(this.id, this.keymat, iv, aad, plaintext);
    const out = new Uint8Array(AEAD_IV_BYTES + sealed.length);
    out.set(iv);
    out.set(sealed, AEAD_IV_BYTES);
    return out;
  }

  open(aad: Uint8Array, body: Uint8Array): Uint8Array | null {
    if (body.length < AEAD_IV_BYTES + AEAD_TAG_BYTES) return null;
    return aeadOpen(this.id, this.keymat, body.subarray(0, AEAD_IV_BYTES), aad, body.subarray(AEAD_IV_BYTES));
  }

  wipe(): void {
    this.keymat.fill(0);
  }
}
