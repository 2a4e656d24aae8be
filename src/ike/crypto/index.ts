/**
 * The cryptographic primitives of the IKEv2 control plane, each a pure
 * function of its inputs or, for key exchange, of the bytes a caller's
 * `random` hands it (the IKE core is sans-I/O and owns no randomness):
 * the PRF and prf+ (prf.ts), the Diffie-Hellman groups of the KE payload
 * (keyExchange.ts) and the SK payload's AEAD (aead.ts).
 *
 * @example
 * ```ts
 * import { randomBytes } from "node:crypto";
 * import { createKeyExchange, prf, prfPlus, aeadSeal } from "./crypto/index.js";
 * const ke = createKeyExchange(31, (n) => randomBytes(n));
 * const skeyseed = prf(5, nonces, ke.sharedSecret(peerKe));
 * const keymat = prfPlus(5, skeyseed, seed, 32 + 2 * 36 + 2 * 32);
 * ```
 */
export { type PrfId, isPrfId, prfLength, prf, prfPlus } from "./prf.js";
export {
  type GroupId, type KeyExchange, KeyExchangeError, isGroupId, publicValueLength, createKeyExchange,
} from "./keyExchange.js";
export {
  type AeadId, AEAD_IV_BYTES, AEAD_TAG_BYTES, isAeadId, aeadKeyBitsSupported, aeadKeymatLength, aeadSeal, aeadOpen,
} from "./aead.js";
