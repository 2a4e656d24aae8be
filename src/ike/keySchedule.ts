/**
 * The key schedule of RFC 7296 §2.13–§2.14 and §2.17–§2.18: SKEYSEED, the
 * IKE SA's keys, and the KEYMAT of child SAs.
 *
 * Why one file: every exchange that makes keys (IKE_SA_INIT, CREATE_CHILD_SA
 * for a child or for the IKE SA) draws on the same prf+ in the same order,
 * and the order is where interop breaks; keeping it in one place, beside the
 * RFC's formulas, makes it checkable against strongSwan's logged keys.
 *
 * sluice negotiates AEAD ciphers only, so SK_ai and SK_ar are empty
 * (RFC 5282 §7.1, RFC 7634 §3) and each SK_e is key ‖ 4-byte salt.
 */
import { concatBytes } from "./codec/bytes.js";
import { aeadKeymatLength } from "./crypto/aead.js";
import { prf, prfLength, prfPlus, type PrfId } from "./crypto/prf.js";
import type { Cipher, IkeAlgorithms } from "./proposals.js";

/** The keys of an IKE SA (§2.14). The caller wipes them (wipeIkeKeys) when the SA goes. */
export interface IkeKeys {
  skD: Uint8Array;
  skEi: Uint8Array;
  skEr: Uint8Array;
  skPi: Uint8Array;
  skPr: Uint8Array;
}

/** One direction of a child SA: key and salt for the engine. */
export interface DirectionKeys {
  key: Uint8Array;
  salt: Uint8Array;
}

/** KEYMAT split per §2.17: the initiator-to-responder SA's material first. */
export interface ChildKeys {
  initiatorToResponder: DirectionKeys;
  responderToInitiator: DirectionKeys;
}

function spiBytes(spiI: bigint, spiR: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, spiI);
  view.setBigUint64(8, spiR);
  return bytes;
}

/** Splits prf+ output into the IKE SA's keys, in §2.14's order. */
function splitIkeKeys(algorithms: IkeAlgorithms, skeyseed: Uint8Array, seed: Uint8Array): IkeKeys {
  const prfBytes = prfLength(algorithms.prf);
  const encrBytes = aeadKeymatLength(algorithms.cipher.id, algorithms.cipher.keyBits);
  const total = prfBytes * 3 + encrBytes * 2;
  const stream = prfPlus(algorithms.prf, skeyseed, seed, total);
  let at = 0;
  const take = (n: number): Uint8Array => stream.slice(at, (at += n));
  // SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr; SK_a* are empty for AEAD.
  const keys = { skD: take(prfBytes), skEi: take(encrBytes), skEr: take(encrBytes), skPi: take(prfBytes), skPr: take(prfBytes) };
  stream.fill(0);
  return keys;
}

/**
 * §2.14: SKEYSEED = prf(Ni | Nr, g^ir), then
 * {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
 */
export function deriveIkeKeys(algorithms: IkeAlgorithms, ni: Uint8Array, nr: Uint8Array, sharedSecret: Uint8Array, spiI: bigint, spiR: bigint): IkeKeys {
  const nonces = concatBytes(ni, nr);
  const skeyseed = prf(algorithms.prf, nonces, sharedSecret);
  const keys = splitIkeKeys(algorithms, skeyseed, concatBytes(nonces, spiBytes(spiI, spiR)));
  skeyseed.fill(0);
  return keys;
}

/**
 * §2.18: the keys of a rekeyed IKE SA: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr),
 * with the old SA's PRF, and the new SA's algorithms for the rest.
 */
export function deriveRekeyedIkeKeys(oldPrf: PrfId, oldSkD: Uint8Array, algorithms: IkeAlgorithms, ni: Uint8Array, nr: Uint8Array, sharedSecret: Uint8Array, spiI: bigint, spiR: bigint): IkeKeys {
  const skeyseed = prf(oldPrf, oldSkD, concatBytes(sharedSecret, ni, nr));
  const keys = splitIkeKeys(algorithms, skeyseed, concatBytes(ni, nr, spiBytes(spiI, spiR)));
  skeyseed.fill(0);
  return keys;
}

/**
 * §2.17: KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr)
 * with PFS. Each direction takes key then 4-byte salt (RFC 7634 §3,
 * RFC 4106 §8.1); the initiator-to-responder SA's first.
 */
export function deriveChildKeys(prfId: PrfId, skD: Uint8Array, cipher: Cipher, ni: Uint8Array, nr: Uint8Array, sharedSecret?: Uint8Array): ChildKeys {
  const keyBytes = cipher.keyBits / 8;
  const each = keyBytes + 4;
  const seed = sharedSecret ? concatBytes(sharedSecret, ni, nr) : concatBytes(ni, nr);
  const stream = prfPlus(prfId, skD, seed, 2 * each);
  seed.fill(0);
  const direction = (at: number): DirectionKeys => ({ key: stream.slice(at, at + keyBytes), salt: stream.slice(at + keyBytes, at + each) });
  const keys = { initiatorToResponder: direction(0), responderToInitiator: direction(each) };
  stream.fill(0);
  return keys;
}

export function wipeIkeKeys(keys: IkeKeys): void {
  for (const key of [keys.skD, keys.skEi, keys.skEr, keys.skPi, keys.skPr]) key.fill(0);
}

export function wipeChildKeys(keys: ChildKeys): void {
  for (const d of [keys.initiatorToResponder, keys.responderToInitiator]) {
    d.key.fill(0);
    d.salt.fill(0);
  }
}
