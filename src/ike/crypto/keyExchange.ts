/**
 * The Diffie-Hellman groups of the KE payload (RFC 7296 §3.4): MODP 2048 and
 * 3072 (RFC 3526), ECP 256 and 384 (RFC 5903) and Curve25519 (RFC 8031), all
 * computed by node:crypto (OpenSSL) at native speed.
 *
 * The IKE core is sans-I/O and uses no randomness it is not handed, so a key
 * pair is made from the bytes of a `random(n)` function the caller passes:
 * production passes crypto.randomBytes, tests pass the private keys of
 * published vectors. How each group turns those bytes into a private key:
 *
 * - MODP: the exponent is the big-endian integer of random(40) (group 14) or
 *   random(56) (group 15): at least twice the highest strength estimate of
 *   RFC 3526 §8 (160 and 210 bits), as short exponents suffice for these
 *   safe-prime groups. 0 and 1 are drawn again.
 * - ECP: rejection sampling (FIPS 186-5 A.2.2): random(32 | 48) read as a
 *   big-endian integer is the scalar if it lies in [1, n-1], else it is drawn
 *   again. A draw is refused with probability about 2^-32 (P-256) and 2^-190
 *   (P-384), so a vector's private key goes in as random's first answer.
 * - Curve25519: random(32) is the private key as RFC 7748 §5 defines it; the
 *   X25519 function clamps it, so every 32 bytes are a key.
 *
 * Peer public values are checked as RFC 6989 asks: MODP in [2, p-2] (§2.1:
 * for safe-prime groups such as RFC 3526's the range is all there is to
 * check), ECP on the curve (§2.3), and an all-zero X25519 result refused
 * (RFC 8031 §2). The MODP range check is ours, not OpenSSL's: node:crypto
 * refuses p-1 and p but takes p+2 and above (it reduces them mod p).
 * Anything wrong with a peer's value is a KeyExchangeError whose message
 * names the group and the problem, never the value or a key.
 *
 * One exchange (key pair + shared secret) costs, best of five runs on a busy
 * 2-core Zen 5 (test/ike/crypto-measure.ts): MODP-2048 0.7 ms, MODP-3072
 * 2.0 ms, ECP-256 0.12 ms, ECP-384 2.5 ms (OpenSSL 3.0 has no fast P-384),
 * Curve25519 0.08 ms.
 *
 * wipe() is best effort: the private key is overwritten inside OpenSSL where
 * node:crypto allows it (ECDH and DH objects take a new private key, and
 * OpenSSL clears the old one), otherwise (an X25519 KeyObject) dropped for
 * the garbage collector; the bytes from `random` are zeroed once used. One
 * copy escapes: an X25519 private key enters OpenSSL as a base64url string
 * (the JWK import, 9-22x faster than PKCS#8 on Node 20's OpenSSL 3.0), and a
 * JavaScript string cannot be zeroed; it lasts until the collector reuses
 * its memory, like every key that IKE holds in the heap anyway.
 */
import { createDiffieHellman, createECDH, createPrivateKey, createPublicKey, diffieHellman, getDiffieHellman, type DiffieHellman, type ECDH, type KeyObject } from "node:crypto";

/** Transform Type 4 IDs: MODP-2048 = 14, MODP-3072 = 15, ECP-256 = 19, ECP-384 = 20, Curve25519 = 31. */
export type GroupId = 14 | 15 | 19 | 20 | 31;

/** Something is wrong with the peer's public value: wrong length, not on the curve, out of range, or a degenerate result. */
export class KeyExchangeError extends Error {
  override readonly name = "KeyExchangeError";
}

export interface KeyExchange {
  readonly group: GroupId;
  /** Our public value in the KE payload's wire format. */
  readonly publicValue: Uint8Array;
  /**
   * g^ir: the shared secret in the format SKEYSEED takes (RFC 7296 §2.14;
   * RFC 5903 §7: ECP = x only; RFC 8031: X25519 32 bytes; MODP: big-endian,
   * left-padded to the prime's length).
   * @throws KeyExchangeError for an invalid public value (wrong length, ECP
   *   point not on the curve, MODP value not in 2..p-2, X25519 all-zero result
   *   per RFC 8031 §2)
   * @throws Error after wipe()
   */
  sharedSecret(peerPublic: Uint8Array): Uint8Array;
  /** Forgets the private key (best effort). */
  wipe(): void;
}

interface ModpGroup {
  kind: "modp";
  name: string;
  /** node:crypto's name of the RFC 3526 group. */
  node: "modp14" | "modp15";
  primeBytes: number;
  exponentBytes: number;
}
interface EcpGroup {
  kind: "ecp";
  name: string;
  curve: "prime256v1" | "secp384r1";
  fieldBytes: number;
  /** The order n of the base point, big-endian, fieldBytes long (SEC 2 §2.4.2, §2.5.1). */
  order: Uint8Array;
}
interface X25519Group {
  kind: "x25519";
  name: string;
}

const GROUPS: Record<GroupId, ModpGroup | EcpGroup | X25519Group> = {
  14: { kind: "modp", name: "MODP-2048", node: "modp14", primeBytes: 256, exponentBytes: 40 },
  15: { kind: "modp", name: "MODP-3072", node: "modp15", primeBytes: 384, exponentBytes: 56 },
  19: {
    kind: "ecp", name: "ECP-256", curve: "prime256v1", fieldBytes: 32,
    order: fromHex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
  },
  20: {
    kind: "ecp", name: "ECP-384", curve: "secp384r1", fieldBytes: 48,
    order: fromHex("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
  },
  31: { kind: "x25519", name: "Curve25519" },
};

/** Draws refused in a row before `random` is declared broken (a fair source is refused at most with probability 2^-32 per draw). */
const MAX_DRAWS = 64;

/** An uncompressed SEC 1 point starts with this byte; the KE payload leaves it out (RFC 5903 §7). */
const SEC1_UNCOMPRESSED = 0x04;

const X25519_BYTES = 32;

/**
 * Whether `id` is a Diffie-Hellman group this module implements.
 *
 * @example
 * ```ts
 * if (!isGroupId(ke.group)) return invalidKePayload(preferredGroup);
 * ```
 */
export function isGroupId(id: number): id is GroupId {
  return id === 14 || id === 15 || id === 19 || id === 20 || id === 31;
}

/**
 * Length of the public value on the wire (KE payload data): 256, 384, 64, 96, 32.
 *
 * @example
 * ```ts
 * if (kePayload.data.length !== publicValueLength(group)) ... // INVALID_SYNTAX
 * ```
 */
export function publicValueLength(group: GroupId): number {
  const g = groupOf(group);
  switch (g.kind) {
    case "modp": return g.primeBytes;
    case "ecp": return 2 * g.fieldBytes;
    case "x25519": return X25519_BYTES;
  }
}

/**
 * A fresh key pair whose private key is made from bytes of `random` (so tests
 * can fix them); the top of this file says how many bytes each group draws.
 * The arrays `random` returns are zeroed once used.
 *
 * @example
 * ```ts
 * import { randomBytes } from "node:crypto";
 * const ours = createKeyExchange(19, (n) => randomBytes(n));
 * sendKe(19, ours.publicValue);
 * const gir = ours.sharedSecret(peerKeData); // throws KeyExchangeError if the peer's value is invalid
 * ours.wipe();
 * ```
 * @throws RangeError for an unknown group; TypeError when `random` does not return a Uint8Array of the asked length
 */
export function createKeyExchange(group: GroupId, random: (length: number) => Uint8Array): KeyExchange {
  const g = groupOf(group);
  if (typeof random !== "function") throw new TypeError("random must be a function (length) => Uint8Array");
  switch (g.kind) {
    case "modp": return new ModpExchange(group, g, random);
    case "ecp": return new EcpExchange(group, g, random);
    case "x25519": return new X25519Exchange(group, g, random);
  }
}

/** RFC 3526 group: g = 2, public value g^x mod p and shared secret both padded to the prime's length (RFC 7296 §3.4). */
class ModpExchange implements KeyExchange {
  readonly publicValue: Uint8Array;
  #dh: DiffieHellman | null;

  constructor(readonly group: GroupId, private readonly spec: ModpGroup, random: (length: number) => Uint8Array) {
    const exponent = draw(random, spec.exponentBytes, spec.name, atLeastTwo);
    // createDiffieHellman rather than getDiffieHellman: only the former takes a private key.
    this.#dh = createDiffieHellman(modpPrime(spec), Uint8Array.of(2));
    this.#dh.setPrivateKey(exponent);
    exponent.fill(0);
    this.publicValue = leftPad(this.#dh.generateKeys(), spec.primeBytes);
  }

  sharedSecret(peerPublic: Uint8Array): Uint8Array {
    const dh = live(this.#dh);
    checkLength(peerPublic, this.spec.primeBytes, this.spec.name);
    // RFC 6989 §2.1: 1 < y < p-1. Public data, so a plain comparison will do.
    const y = toBigInt(peerPublic);
    const p = toBigInt(modpPrime(this.spec));
    if (y <= 1n || y >= p - 1n) {
      throw new KeyExchangeError(`the peer's ${this.spec.name} public value is not in [2, p-2] (RFC 6989 §2.1)`);
    }
    let secret: Buffer;
    try {
      secret = dh.computeSecret(peerPublic);
    } catch {
      throw new KeyExchangeError(`the peer's ${this.spec.name} public value was refused by OpenSSL`);
    }
    return leftPad(secret, this.spec.primeBytes);
  }

  wipe(): void {
    this.#dh?.setPrivateKey(Uint8Array.of(1));
    this.#dh = null;
  }
}

/** RFC 5903 group: public value x ‖ y and shared secret x, each as long as the field (RFC 5903 §7). */
class EcpExchange implements KeyExchange {
  readonly publicValue: Uint8Array;
  #ecdh: ECDH | null;

  constructor(readonly group: GroupId, private readonly spec: EcpGroup, random: (length: number) => Uint8Array) {
    const scalar = draw(random, spec.fieldBytes, spec.name, (s) => !isZero(s) && lessThan(s, spec.order));
    this.#ecdh = createECDH(spec.curve);
    this.#ecdh.setPrivateKey(scalar);
    scalar.fill(0);
    this.publicValue = new Uint8Array(this.#ecdh.getPublicKey().subarray(1));
  }

  sharedSecret(peerPublic: Uint8Array): Uint8Array {
    const ecdh = live(this.#ecdh);
    checkLength(peerPublic, 2 * this.spec.fieldBytes, this.spec.name);
    const point = new Uint8Array(1 + peerPublic.length);
    point[0] = SEC1_UNCOMPRESSED;
    point.set(peerPublic, 1);
    let secret: Buffer;
    try {
      // OpenSSL refuses coordinates >= p and points not on the curve (RFC 6989 §2.3);
      // the point at infinity has no x ‖ y encoding.
      secret = ecdh.computeSecret(point);
    } catch {
      throw new KeyExchangeError(`the peer's ${this.spec.name} public value is not a point on the curve (RFC 6989 §2.3)`);
    }
    return leftPad(secret, this.spec.fieldBytes);
  }

  wipe(): void {
    this.#ecdh?.setPrivateKey(Uint8Array.of(1));
    this.#ecdh = null;
  }
}

/** RFC 8031: public value and shared secret are 32-byte little-endian u-coordinates (RFC 7748 §5). */
class X25519Exchange implements KeyExchange {
  readonly publicValue: Uint8Array;
  #key: KeyObject | null;

  constructor(readonly group: GroupId, private readonly spec: X25519Group, random: (length: number) => Uint8Array) {
    const scalar = draw(random, X25519_BYTES, spec.name, () => true);
    // JWK, not PKCS#8: OpenSSL 3.0 decodes DER through its decoder framework,
    // 9-22x slower than the raw import behind Node's JWK path. Node builds a
    // private OKP key from d alone and only type-checks x, which we do not
    // know yet; the RFC 7748 vectors in test/ike pin that the key is d's.
    const d = Buffer.from(scalar.buffer, scalar.byteOffset, scalar.length).toString("base64url");
    scalar.fill(0);
    this.#key = createPrivateKey({ key: { kty: "OKP", crv: "X25519", d, x: "" }, format: "jwk" });
    this.publicValue = fromBase64Url(createPublicKey(this.#key).export({ format: "jwk" }).x);
  }

  sharedSecret(peerPublic: Uint8Array): Uint8Array {
    const key = live(this.#key);
    checkLength(peerPublic, X25519_BYTES, this.spec.name);
    const x = Buffer.from(peerPublic.buffer, peerPublic.byteOffset, peerPublic.length).toString("base64url");
    let secret: Buffer;
    try {
      const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x }, format: "jwk" });
      secret = diffieHellman({ privateKey: key, publicKey: peer });
    } catch {
      // OpenSSL itself refuses an all-zero result (a small-order peer value).
      throw new KeyExchangeError(`the peer's ${this.spec.name} public value gives the all-zero shared secret (RFC 8031 §2)`);
    }
    // RFC 8031 §2 makes the check ours, whatever OpenSSL does.
    if (isZero(secret)) throw new KeyExchangeError(`the peer's ${this.spec.name} public value gives the all-zero shared secret (RFC 8031 §2)`);
    return plain(secret);
  }

  wipe(): void {
    this.#key = null;
  }
}

function groupOf(group: GroupId): ModpGroup | EcpGroup | X25519Group {
  if (!isGroupId(group)) throw new RangeError(`unknown Diffie-Hellman group ${String(group)} (supported: 14, 15, 19, 20, 31)`);
  return GROUPS[group];
}

const primes = new Map<string, Uint8Array>();

/** The RFC 3526 prime, as node:crypto has it built in (test/ike checks it against the RFC). */
function modpPrime(spec: ModpGroup): Uint8Array {
  let prime = primes.get(spec.node);
  if (prime === undefined) {
    prime = plain(getDiffieHellman(spec.node).getPrime());
    if (prime.length !== spec.primeBytes) throw new Error(`node:crypto's ${spec.node} prime is ${prime.length} bytes, expected ${spec.primeBytes}`);
    primes.set(spec.node, prime);
  }
  return prime;
}

/**
 * random(length), drawn again while `acceptable` refuses it; a refused draw is
 * zeroed. The caller zeroes the accepted one once used.
 */
function draw(random: (length: number) => Uint8Array, length: number, group: string, acceptable: (candidate: Uint8Array) => boolean): Uint8Array {
  for (let i = 0; i < MAX_DRAWS; i++) {
    const candidate = random(length);
    if (!(candidate instanceof Uint8Array) || candidate.length !== length) {
      throw new TypeError(`random(${length}) must return a Uint8Array of ${length} bytes, got ${candidate instanceof Uint8Array ? `${candidate.length} bytes` : typeof candidate}`);
    }
    if (acceptable(candidate)) return candidate;
    candidate.fill(0);
  }
  throw new Error(`random gave no usable ${group} private key in ${MAX_DRAWS} draws: it is not random`);
}

function live<T>(key: T | null): T {
  if (key === null) throw new Error("this key exchange was wiped");
  return key;
}

function checkLength(peerPublic: Uint8Array, expected: number, group: string): void {
  if (!(peerPublic instanceof Uint8Array)) throw new TypeError("the peer's public value must be a Uint8Array");
  if (peerPublic.length !== expected) {
    throw new KeyExchangeError(`the peer's ${group} public value must be ${expected} bytes (RFC 7296 §3.4), got ${peerPublic.length}`);
  }
}

/** An exponent of at least 2: x = 0 or 1 makes g^x public knowledge. Time independent of the value. */
function atLeastTwo(x: Uint8Array): boolean {
  let high = 0;
  for (let i = 0; i < x.length - 1; i++) high |= x[i]!;
  return (high | (x[x.length - 1]! & 0xfe)) !== 0;
}

/** Whether every byte is 0, in time independent of the value. */
function isZero(bytes: Uint8Array): boolean {
  let any = 0;
  for (let i = 0; i < bytes.length; i++) any |= bytes[i]!;
  return any === 0;
}

/** a < b for big-endian integers of equal length: the borrow out of a - b, in time independent of the values. */
function lessThan(a: Uint8Array, b: Uint8Array): boolean {
  let borrow = 0;
  for (let i = a.length - 1; i >= 0; i--) borrow = ((a[i]! - b[i]! - borrow) >>> 31) & 1;
  return borrow === 1;
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt("0x" + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex"));
}

function leftPad(value: Uint8Array, length: number): Uint8Array {
  if (value.length === length) return plain(value);
  if (value.length > length) throw new Error(`a ${value.length}-byte value does not fit in ${length} bytes`);
  const out = new Uint8Array(length);
  out.set(value, length - value.length);
  value.fill(0);
  return out;
}

/** A view of node:crypto's Buffer as a plain Uint8Array, so results compare equal to other Uint8Arrays. */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function fromBase64Url(text: string | undefined): Uint8Array {
  if (text === undefined) throw new Error("node:crypto exported an X25519 JWK without x");
  return Uint8Array.from(Buffer.from(text, "base64url"));
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, "hex"));
}
