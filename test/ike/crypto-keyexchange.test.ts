// Proves src/ike/crypto/keyExchange.ts with private keys injected through
// `random`: RFC 5903 §8 (groups 19, 20) and RFC 7748 §6.1 / RFC 8031
// Appendix A (group 31) reproduce their public values and shared secrets;
// Wycheproof's X25519 and ECDH P-256/P-384 (uncompressed point) cases give
// their shared secret or, for invalid public keys, a KeyExchangeError; the
// MODP groups use the RFC 3526 primes (recomputed here from the RFC's formula),
// their public values are 2^x mod p by BigInt arithmetic, both sides agree,
// and 0, 1, p-1, p and values of the wrong length are refused. Private keys
// out of range are drawn again; a broken `random` is refused.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  createKeyExchange, isGroupId, publicValueLength, KeyExchangeError, type GroupId, type KeyExchange,
} from "../../src/ike/crypto/keyExchange.js";
import { hex, toHex, concat, beBytes, loadVector } from "../helpers.js";

const GROUPS: GroupId[] = [14, 15, 19, 20, 31];

/** A `random` that answers with these arrays in order (copies: the key exchange zeroes what it used), and records the lengths asked. */
function fixedRandom(...answers: Uint8Array[]): ((length: number) => Uint8Array) & { asked: number[] } {
  const asked: number[] = [];
  const random = (length: number): Uint8Array => {
    asked.push(length);
    const next = answers.shift();
    if (next === undefined) throw new Error(`fixedRandom: no answer left for random(${length})`);
    return next.slice();
  };
  return Object.assign(random, { asked });
}

const systemRandom = (length: number): Uint8Array => new Uint8Array(randomBytes(length));

function big(bytes: Uint8Array | string): bigint {
  const h = typeof bytes === "string" ? bytes : toHex(bytes);
  return h.length === 0 ? 0n : BigInt("0x" + h);
}

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  base %= modulus;
  for (; exponent > 0n; exponent >>= 1n) {
    if (exponent & 1n) result = (result * base) % modulus;
    base = (base * base) % modulus;
  }
  return result;
}

/** The KeyExchangeError of `fn`, so its message can be checked too. */
function refusal(fn: () => unknown, what = ""): KeyExchangeError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof KeyExchangeError, `${what}: expected a KeyExchangeError, got ${String(error)}`);
    return error;
  }
  assert.fail(`${what}: expected a KeyExchangeError, nothing was thrown`);
}

describe("group ids and wire lengths", () => {
  test("isGroupId knows exactly 14, 15, 19, 20, 31; publicValueLength per RFC 7296 §3.4 / RFC 5903 §7 / RFC 8031", () => {
    for (let id = -1; id < 300; id++) assert.equal(isGroupId(id), GROUPS.includes(id as GroupId), `id ${id}`);
    assert.deepEqual(GROUPS.map(publicValueLength), [256, 384, 64, 96, 32]);
    assert.throws(() => publicValueLength(2 as GroupId), RangeError);
    assert.throws(() => createKeyExchange(21 as GroupId, systemRandom), /unknown Diffie-Hellman group 21/);
  });

  test("every group: public value of the wire length, two random key pairs agree, secrets of the SKEYSEED length", () => {
    const secretLength = { 14: 256, 15: 384, 19: 32, 20: 48, 31: 32 };
    for (const group of GROUPS) {
      const a = createKeyExchange(group, systemRandom), b = createKeyExchange(group, systemRandom);
      assert.equal(a.group, group);
      assert.equal(a.publicValue.length, publicValueLength(group));
      const ab = a.sharedSecret(b.publicValue), ba = b.sharedSecret(a.publicValue);
      assert.equal(toHex(ab), toHex(ba), `group ${group}`);
      assert.equal(ab.length, secretLength[group]);
      assert.equal(Object.getPrototypeOf(ab), Uint8Array.prototype);
      assert.equal(Object.getPrototypeOf(a.publicValue), Uint8Array.prototype);
    }
  });

  test("wipe: the key exchange refuses to compute afterwards (a plain Error: our mistake, not the peer's)", () => {
    for (const group of GROUPS) {
      const a = createKeyExchange(group, systemRandom), b = createKeyExchange(group, systemRandom);
      a.wipe();
      a.wipe();
      assert.throws(() => a.sharedSecret(b.publicValue), (e: unknown) => e instanceof Error && !(e instanceof KeyExchangeError) && /wiped/.test(e.message));
      assert.equal(b.sharedSecret(a.publicValue).length > 0, true, "the public value stays usable for the peer");
    }
  });

  test("the bytes from random are zeroed once used; random returning the wrong length or type is a TypeError", () => {
    for (const group of GROUPS) {
      let handedOut: Uint8Array | undefined;
      createKeyExchange(group, (n) => (handedOut = systemRandom(n)));
      assert.ok(handedOut !== undefined && handedOut.every((b) => b === 0), `group ${group}`);
      assert.throws(() => createKeyExchange(group, (n) => new Uint8Array(n - 1)), TypeError);
      assert.throws(() => createKeyExchange(group, (n) => Array(n).fill(7) as unknown as Uint8Array), TypeError);
    }
    assert.throws(() => createKeyExchange(19, undefined as unknown as (n: number) => Uint8Array), TypeError);
  });

  test("a peer value that is not a Uint8Array is a TypeError; errors name no value", () => {
    for (const group of GROUPS) {
      const a = createKeyExchange(group, systemRandom);
      assert.throws(() => a.sharedSecret("00" as unknown as Uint8Array), TypeError);
      const wrongLength = refusal(() => a.sharedSecret(new Uint8Array(publicValueLength(group) + 1).fill(0xab)));
      assert.equal(wrongLength.name, "KeyExchangeError");
      assert.match(wrongLength.message, /must be \d+ bytes/);
      assert.doesNotMatch(wrongLength.message, /abab|[0-9a-f]{16}/i);
    }
  });
});

describe("MODP groups 14 and 15 (RFC 3526)", () => {
  interface Modp { bits: number; piBits: number; offset: number; generator: number; prime: string }
  const rfc = loadVector<{ groups: Record<"14" | "15", Modp> }>("rfc3526.json").groups;

  /** floor(2^bits · π) by Machin's formula π = 16·atan(1/5) − 4·atan(1/239), in fixed point with 64 guard bits. */
  function piTimesTwoTo(bits: number): bigint {
    const scale = 1n << BigInt(bits + 64);
    const atanInverse = (x: bigint): bigint => {
      let sum = 0n, power = scale / x, n = 1n, sign = 1n;
      while (power !== 0n) {
        sum += (sign * power) / n;
        power /= x * x;
        n += 2n;
        sign = -sign;
      }
      return sum;
    };
    return (16n * atanInverse(5n) - 4n * atanInverse(239n)) >> 64n;
  }

  for (const group of [14, 15] as const) {
    const spec = rfc[group];
    const p = big(spec.prime);
    const bytes = spec.bits / 8;
    const exponentBytes = group === 14 ? 40 : 56;

    test(`group ${group}: the prime is RFC 3526's 2^${spec.bits} - 2^${spec.bits - 64} - 1 + 2^64 · ([2^${spec.piBits} π] + ${spec.offset})`, () => {
      const formula = (1n << BigInt(spec.bits)) - (1n << BigInt(spec.bits - 64)) - 1n + (1n << 64n) * (piTimesTwoTo(spec.piBits) + BigInt(spec.offset));
      assert.equal(formula.toString(16), spec.prime);
    });

    test(`group ${group}: public value = 2^x mod p for the ${exponentBytes * 8}-bit exponent drawn from random, left-padded to ${bytes} bytes`, () => {
      const x = systemRandom(exponentBytes);
      const random = fixedRandom(x);
      const ke = createKeyExchange(group, random);
      assert.deepEqual(random.asked, [exponentBytes]);
      assert.equal(ke.publicValue.length, bytes);
      assert.equal(toHex(ke.publicValue), toHex(beBytes(modPow(2n, big(x), p), bytes)));
      // A small exponent gives a public value with leading zero bytes: 2^8 = 256 needs padding to the prime's length.
      const small = createKeyExchange(group, fixedRandom(beBytes(8n, exponentBytes)));
      assert.equal(toHex(small.publicValue), toHex(beBytes(256n, bytes)));
    });

    test(`group ${group}: the shared secret is y^x mod p, both sides agree`, () => {
      const xa = systemRandom(exponentBytes), xb = systemRandom(exponentBytes);
      const a = createKeyExchange(group, fixedRandom(xa)), b = createKeyExchange(group, fixedRandom(xb));
      const want = toHex(beBytes(modPow(modPow(2n, big(xa), p), big(xb), p), bytes));
      assert.equal(toHex(a.sharedSecret(b.publicValue)), want);
      assert.equal(toHex(b.sharedSecret(a.publicValue)), want);
    });

    test(`group ${group}: exponents 0 and 1 are drawn again`, () => {
      const x = systemRandom(exponentBytes);
      const random = fixedRandom(new Uint8Array(exponentBytes), beBytes(1n, exponentBytes), x);
      const ke = createKeyExchange(group, random);
      assert.deepEqual(random.asked, [exponentBytes, exponentBytes, exponentBytes]);
      assert.equal(toHex(ke.publicValue), toHex(beBytes(modPow(2n, big(x), p), bytes)));
      assert.throws(() => createKeyExchange(group, (n) => new Uint8Array(n)), /not random/);
    });

    test(`group ${group}: peer values 0, 1, p-1, p, p+1, p+2, 2^${spec.bits}-1 and wrong lengths are refused (RFC 6989 §2.1); 2 and p-2 are not`, () => {
      const ke = createKeyExchange(group, systemRandom);
      for (const [name, value] of [
        ["0", new Uint8Array(bytes)], ["1", beBytes(1n, bytes)], ["p-1", beBytes(p - 1n, bytes)], ["p", beBytes(p, bytes)],
        // node:crypto itself accepts p+2 and above (it reduces mod p): only our own check refuses them.
        ["p+1", beBytes(p + 1n, bytes)], ["p+2", beBytes(p + 2n, bytes)], ["all ones", new Uint8Array(bytes).fill(0xff)],
        ["too short", ke.publicValue.subarray(1)], ["too long", concat(Uint8Array.of(0), ke.publicValue)], ["empty", new Uint8Array(0)],
        ["unpadded 2", Uint8Array.of(2)],
      ] as const) {
        refusal(() => ke.sharedSecret(value), name);
      }
      // y = 2 is the generator: the shared secret is our own public value.
      assert.equal(toHex(ke.sharedSecret(beBytes(2n, bytes))), toHex(ke.publicValue));
      assert.equal(ke.sharedSecret(beBytes(p - 2n, bytes)).length, bytes);
    });
  }
});

interface Point { x: bigint; y: bigint }
/** Short Weierstrass curves y² = x³ − 3x + b (SEC 2 §2.4.2, §2.5.1). */
const CURVES = {
  19: {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    bytes: 32,
  },
  20: {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    bytes: 48,
  },
} as const;

function onCurve(group: 19 | 20, { x, y }: Point): boolean {
  const { p, b } = CURVES[group];
  return (y * y - (x * x * x - 3n * x + b)) % p === 0n;
}

function point(group: 19 | 20, publicValue: Uint8Array): Point {
  const n = CURVES[group].bytes;
  return { x: big(publicValue.subarray(0, n)), y: big(publicValue.subarray(n)) };
}

describe("ECP groups 19 and 20", () => {
  interface Rfc5903 { i: string; gix: string; giy: string; r: string; grx: string; gry: string; girx: string; giry: string }
  const rfc = loadVector<{ groups: Record<"19" | "20", Rfc5903> }>("rfc5903.json").groups;

  for (const group of [19, 20] as const) {
    const v = rfc[group];
    const { bytes, n, p } = CURVES[group];

    test(`group ${group}: RFC 5903 §8 — g^i, g^r and the shared secret girx`, () => {
      const randomI = fixedRandom(hex(v.i)), randomR = fixedRandom(hex(v.r));
      const i = createKeyExchange(group, randomI), r = createKeyExchange(group, randomR);
      assert.deepEqual(randomI.asked, [bytes], "one draw of the field size");
      assert.equal(toHex(i.publicValue), v.gix + v.giy, "KE payload = gix | giy, no 0x04");
      assert.equal(toHex(r.publicValue), v.grx + v.gry);
      assert.equal(toHex(i.sharedSecret(hex(v.grx + v.gry))), v.girx);
      assert.equal(toHex(r.sharedSecret(hex(v.gix + v.giy))), v.girx);
      assert.ok(onCurve(group, { x: big(v.girx), y: big(v.giry) }), "the RFC's g^ir is a point of the curve (checks the transcription of giry)");
    });

    test(`group ${group}: scalars 0, n, n+1 and 2^${bytes * 8}-1 are drawn again; n-1 is accepted and gives -G`, () => {
      const one = createKeyExchange(group, fixedRandom(beBytes(1n, bytes)));
      const random = fixedRandom(new Uint8Array(bytes), beBytes(n, bytes), beBytes(n + 1n, bytes), new Uint8Array(bytes).fill(0xff), beBytes(n - 1n, bytes));
      const minusOne = createKeyExchange(group, random);
      assert.equal(random.asked.length, 5);
      const g = point(group, one.publicValue), minusG = point(group, minusOne.publicValue);
      assert.ok(onCurve(group, g), "1·G is on the curve: the curve constants here are right");
      assert.equal(minusG.x, g.x);
      assert.equal(minusG.y, p - g.y);
      assert.throws(() => createKeyExchange(group, (len) => new Uint8Array(len)), /not random/);
    });

    test(`group ${group}: points off the curve, (0, 0), coordinates >= p and wrong lengths are refused (RFC 6989 §2.3)`, () => {
      const ke = createKeyExchange(group, systemRandom);
      const peer = createKeyExchange(group, systemRandom).publicValue;
      const offCurve = peer.slice();
      offCurve[offCurve.length - 1]! ^= 1;
      for (const [name, value] of [
        ["off the curve", offCurve], ["(0, 0)", new Uint8Array(2 * bytes)],
        ["x = p", concat(beBytes(p, bytes), peer.subarray(bytes))], ["y = p", concat(peer.subarray(0, bytes), beBytes(p, bytes))],
        ["with 0x04", concat(Uint8Array.of(4), peer)], ["x only", peer.subarray(0, bytes)], ["empty", new Uint8Array(0)],
      ] as const) {
        const error = refusal(() => ke.sharedSecret(value), name);
        assert.match(error.message, new RegExp(`ECP-${bytes * 8}`));
      }
      assert.equal(ke.sharedSecret(peer).length, bytes, "the unmodified point is fine");
    });
  }
});

describe("Curve25519 (group 31)", () => {
  interface X25519Vector { name: string; i: string; gi: string; r: string; gr: string; gir: string }
  const vectors = loadVector<{ cases: X25519Vector[] }>("x25519_rfc7748_rfc8031.json").cases;

  for (const v of vectors) {
    test(v.name, () => {
      const randomI = fixedRandom(hex(v.i));
      const i = createKeyExchange(31, randomI), r = createKeyExchange(31, fixedRandom(hex(v.r)));
      assert.deepEqual(randomI.asked, [32]);
      assert.equal(toHex(i.publicValue), v.gi);
      assert.equal(toHex(r.publicValue), v.gr);
      assert.equal(toHex(i.sharedSecret(hex(v.gr))), v.gir);
      assert.equal(toHex(r.sharedSecret(hex(v.gi))), v.gir);
    });
  }

  test("low-order peer values (u = 0, u = 1) give the all-zero secret and are refused (RFC 8031 §2)", () => {
    const ke = createKeyExchange(31, systemRandom);
    for (const u of [0n, 1n]) {
      const error = refusal(() => ke.sharedSecret(beBytes(u, 32).reverse()));
      assert.match(error.message, /all-zero/);
    }
  });
});

interface EcdhCase { tcId: number; comment: string; flags: string[]; public: string; private: string; shared: string; result: "valid" | "invalid" | "acceptable" }
interface EcdhFile { numberOfTests: number; testGroups: { curve: string; tests: EcdhCase[] }[] }

/**
 * One Wycheproof case through the KE API: the private key goes in through
 * `random`; the public key is stripped of its 0x04 when it is an uncompressed
 * point, else passed as it is (a compressed point or an empty one is the wrong
 * length for the KE payload, RFC 5903 §7).
 * Expected: valid → the shared secret. invalid → KeyExchangeError.
 * acceptable → ECP: only compressed points, which the KE payload cannot carry,
 * so KeyExchangeError; X25519: the shared secret, unless it is all zero, which
 * RFC 8031 §2 makes a KeyExchangeError.
 */
function runEcdh(group: 19 | 20 | 31, cases: EcdhCase[]): { wrong: string[]; refused: number; agreed: number } {
  const fieldBytes = group === 31 ? 32 : CURVES[group].bytes;
  const wrong: string[] = [];
  let refused = 0, agreed = 0;
  for (const t of cases) {
    let privateKey = hex(t.private);
    if (group !== 31) {
      const d = big(t.private);
      if (d < 1n || d >= CURVES[group].n) {
        wrong.push(`tcId ${t.tcId}: private key out of range, cannot be injected`);
        continue;
      }
      privateKey = beBytes(d, fieldBytes);
    }
    let ke: KeyExchange;
    try {
      ke = createKeyExchange(group, fixedRandom(privateKey));
    } catch (error) {
      wrong.push(`tcId ${t.tcId}: key pair refused: ${String(error)}`);
      continue;
    }
    const uncompressed = group !== 31 && t.public.length === 2 * (1 + 2 * fieldBytes) && t.public.startsWith("04");
    const peer = hex(uncompressed ? t.public.slice(2) : t.public);
    const allZero = /^(00)+$/.test(t.shared);
    const shouldAgree = t.result === "valid" || (t.result === "acceptable" && group === 31 && !allZero);
    try {
      const shared = toHex(ke.sharedSecret(peer));
      agreed++;
      if (!shouldAgree) wrong.push(`tcId ${t.tcId} (${t.result}, ${t.flags.join("/")}): accepted, should be refused`);
      else if (shared !== t.shared) wrong.push(`tcId ${t.tcId}: shared secret ${shared}, want ${t.shared}`);
    } catch (error) {
      refused++;
      if (!(error instanceof KeyExchangeError)) wrong.push(`tcId ${t.tcId}: threw ${String(error)}, not a KeyExchangeError`);
      else if (shouldAgree) wrong.push(`tcId ${t.tcId} (${t.result}, ${t.flags.join("/")}): refused: ${error.message}`);
    }
  }
  return { wrong, refused, agreed };
}

describe("Wycheproof", () => {
  test("X25519: 518 cases; 264 valid agree; of 254 acceptable, the 31 with an all-zero secret are refused, the rest agree", () => {
    const file = loadVector<EcdhFile>("wycheproof_x25519_subset.json");
    const all = file.testGroups.flatMap((g) => g.tests);
    assert.equal(all.length, file.numberOfTests);
    assert.equal(all.length, 518);
    assert.equal(all.filter((t) => t.result === "valid").length, 264);
    assert.equal(all.filter((t) => /^(00)+$/.test(t.shared)).length, 31);
    const { wrong, refused, agreed } = runEcdh(31, all);
    assert.deepEqual(wrong, []);
    assert.equal(refused, 31);
    assert.equal(agreed, 487);
  });

  const ecdhFiles = [
    { group: 19 as const, file: "wycheproof_ecdh_secp256r1_ecpoint_subset.json", total: 355, valid: 330, invalid: 24 },
    { group: 20 as const, file: "wycheproof_ecdh_secp384r1_ecpoint_subset.json", total: 347, valid: 328, invalid: 18 },
  ];
  for (const f of ecdhFiles) {
    test(`ECDH ${f.group === 19 ? "P-256" : "P-384"} (ecpoint): ${f.total} cases; valid agree; invalid and the compressed "acceptable" one are refused`, () => {
      const file = loadVector<EcdhFile>(f.file);
      const all = file.testGroups.flatMap((g) => g.tests);
      assert.equal(all.length, file.numberOfTests);
      assert.equal(all.length, f.total);
      assert.equal(all.filter((t) => t.result === "valid").length, f.valid);
      assert.equal(all.filter((t) => t.result === "invalid").length, f.invalid);
      const acceptable = all.filter((t) => t.result === "acceptable");
      assert.equal(acceptable.length, 1);
      assert.ok(acceptable[0]!.flags.includes("CompressedPoint"));
      const { wrong, refused } = runEcdh(f.group, all);
      assert.deepEqual(wrong, []);
      assert.equal(refused, f.invalid + 1);
    });
  }
});
