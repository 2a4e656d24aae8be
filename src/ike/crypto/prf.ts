/**
 * The IKEv2 pseudorandom function and prf+ (RFC 7296 §2.13), for the three
 * HMAC-SHA2 transforms of RFC 4868. SKEYSEED, the SK_* keys, the AUTH
 * payload's MAC and the Child SA keys are all prf or prf+ outputs, so
 * everything here is a pure function of its arguments: no state, no
 * randomness, nothing cached between calls.
 *
 * HMAC comes from node:crypto (OpenSSL). Measured against @noble/hashes' hmac
 * interleaved in one process (median of 15 rounds of 400 calls; Node 20, Zen 5,
 * a shared and busy 2-core machine, so absolute times are rough; repeat with
 * `node dist/test/ike/crypto-measure.js`):
 *
 *   prf, SHA-256, 32 B key, data 64 / 256 / 600 B:  node 2.3 / 2.2 / 3.1 µs, noble 7.9 / 5.5 / 9.9 µs
 *   prf, SHA-384, 48 B key, data 64 / 256 / 600 B:  node 2.6 / 2.9 / 3.3 µs, noble 9.8 / 12 / 15 µs
 *   prf, SHA-512, 64 B key, data 64 / 256 / 600 B:  node 2.6 / 3.0 / 3.5 µs, noble 9.8 / 13 / 16 µs
 *   prf+ (80 B seed) 100 / 300 B, SHA-256:  node 21 / 34 µs, noble 32 / 62 µs
 *   prf+ (80 B seed) 100 / 300 B, SHA-384:  node 9.9 / 22 µs, noble 26 / 54 µs
 *   prf+ (80 B seed) 100 / 300 B, SHA-512:  node 6.7 / 15 µs, noble 20 / 42 µs
 *   (noble's prf+ at its best: the keyed HMAC state built once, cloned per block)
 *
 * node:crypto is 1.5-4.6x faster at every size IKE uses in this, the
 * quietest of six runs, and at least 1.4x faster in every run, so it is the
 * one used.
 */
import { createHmac } from "node:crypto";

/** IKEv2 PRF transform IDs (IANA "Transform Type 2"): PRF_HMAC_SHA2_256 = 5, _384 = 6, _512 = 7. */
export type PrfId = 5 | 6 | 7;

const HASH: Record<PrfId, string> = { 5: "sha256", 6: "sha384", 7: "sha512" };
const LENGTH: Record<PrfId, number> = { 5: 32, 6: 48, 7: 64 };

/** prf+ counts its blocks in one octet (RFC 7296 §2.13). */
const MAX_PRF_PLUS_BLOCKS = 255;

/**
 * Whether `id` is a PRF transform this module implements.
 *
 * @example
 * ```ts
 * if (!isPrfId(transform.id)) continue; // skip proposals with PRFs we lack
 * ```
 */
export function isPrfId(id: number): id is PrfId {
  return id === 5 || id === 6 || id === 7;
}

/**
 * Output length in bytes (32/48/64); also the preferred key length (RFC 4868 §2.1.2).
 *
 * @example
 * ```ts
 * prfLength(5); // 32: SK_d, SK_pi and SK_pr are this long
 * ```
 */
export function prfLength(id: PrfId): number {
  checkId(id);
  return LENGTH[id];
}

/**
 * prf(key, data): HMAC-SHA2 (RFC 2104, RFC 4868). The key may have any length
 * (SKEYSEED = prf(Ni | Nr, g^ir) uses the nonces as key, RFC 7296 §2.14).
 *
 * @example
 * ```ts
 * const skeyseed = prf(5, concat(ni, nr), sharedSecret);
 * ```
 * @throws RangeError for an unknown PRF id; TypeError when key or data is not a Uint8Array
 */
export function prf(id: PrfId, key: Uint8Array, data: Uint8Array): Uint8Array {
  checkId(id);
  checkBytes("key", key);
  checkBytes("data", data);
  return plain(createHmac(HASH[id], key).update(data).digest());
}

/**
 * prf+ (RFC 7296 §2.13): the first `length` bytes of T1 | T2 | ... with
 * T1 = prf(K, S | 0x01) and T_n = prf(K, T_{n-1} | S | n); at most 255 blocks.
 *
 * @example
 * ```ts
 * // SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr (RFC 7296 §2.14)
 * const keymat = prfPlus(5, skeyseed, concat(ni, nr, spiI, spiR), 3 * 32 + 2 * 36);
 * ```
 * @throws RangeError for an unknown PRF id, or a length that is not an integer in [0, 255 · prfLength(id)]
 */
export function prfPlus(id: PrfId, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  checkId(id);
  checkBytes("key", key);
  checkBytes("seed", seed);
  const blockLength = LENGTH[id];
  const max = MAX_PRF_PLUS_BLOCKS * blockLength;
  if (!Number.isInteger(length) || length < 0 || length > max) {
    throw new RangeError(`prf+ length must be an integer in [0, ${max}] for PRF ${id}, got ${String(length)}`);
  }
  const out = new Uint8Array(length);
  // One input buffer, T_{n-1} | S | n: block 1 hashes its tail S | 0x01, every
  // later block the whole of it after T_{n-1} is written over the front.
  const input = new Uint8Array(blockLength + seed.length + 1);
  input.set(seed, blockLength);
  for (let n = 1, at = 0; at < length; n++, at += blockLength) {
    input[input.length - 1] = n;
    const block = createHmac(HASH[id], key).update(n === 1 ? input.subarray(blockLength) : input).digest();
    out.set(block.subarray(0, Math.min(blockLength, length - at)), at);
    input.set(block, 0);
    block.fill(0);
  }
  input.fill(0);
  return out;
}

function checkId(id: PrfId): void {
  if (!isPrfId(id)) throw new RangeError(`unknown PRF transform id ${String(id)} (supported: 5, 6, 7)`);
}

function checkBytes(name: string, value: Uint8Array): void {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
}

/** A Buffer from node:crypto as a plain Uint8Array over the same bytes, so results compare equal to other Uint8Arrays. */
function plain(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
