// Proves src/ike/crypto/prf.ts: prf reproduces RFC 4231 test cases 1-7 and
// every full-length Wycheproof HMAC-SHA-256/384/512 case (a valid tag is
// produced, an invalid one is not); prf+ equals a plain transcription of
// RFC 7296 §2.13 built on @noble/hashes' HMAC (so a different HMAC too) at
// every length up to 255 blocks, and refuses lengths beyond; bad ids and
// arguments are refused.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { prf, prfPlus, prfLength, isPrfId, type PrfId } from "../../src/ike/crypto/prf.js";
import { hex, toHex, concat, loadVector, Rng, SEED } from "../helpers.js";

const IDS: PrfId[] = [5, 6, 7];
const HASH_NAME = { 5: "sha256", 6: "sha384", 7: "sha512" } as const;
const NOBLE = { 5: sha256, 6: sha384, 7: sha512 } as const;

/** RFC 7296 §2.13 as written: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), concatenated and cut. */
function referencePrfPlus(id: PrfId, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const blocks: Uint8Array[] = [];
  let previous = new Uint8Array(0);
  for (let n = 1; blocks.length * prfLength(id) < length; n++) {
    previous = hmac(NOBLE[id], key, concat(previous, seed, Uint8Array.of(n)));
    blocks.push(previous);
  }
  return concat(...blocks).subarray(0, length);
}

describe("PRF ids", () => {
  test("isPrfId and prfLength know exactly 5, 6, 7", () => {
    for (let id = -1; id < 300; id++) assert.equal(isPrfId(id), id === 5 || id === 6 || id === 7, `id ${id}`);
    assert.deepEqual(IDS.map(prfLength), [32, 48, 64]);
    assert.throws(() => prfLength(2 as PrfId), RangeError);
    assert.throws(() => prf(4 as PrfId, new Uint8Array(32), new Uint8Array(1)), /unknown PRF transform id 4/);
    assert.throws(() => prfPlus(8 as PrfId, new Uint8Array(32), new Uint8Array(1), 10), RangeError);
  });

  test("arguments that are not bytes are refused", () => {
    assert.throws(() => prf(5, "key" as unknown as Uint8Array, new Uint8Array(1)), TypeError);
    assert.throws(() => prf(5, new Uint8Array(1), [1, 2] as unknown as Uint8Array), TypeError);
    assert.throws(() => prfPlus(5, new Uint8Array(1), null as unknown as Uint8Array, 10), TypeError);
  });
});

describe("RFC 4231 test cases 1-7", () => {
  interface Case { tc: number; key: string; data: string; truncatedTo?: number; sha256: string; sha384: string; sha512: string }
  const file = loadVector<{ cases: Case[] }>("rfc4231.json");

  test("all seven cases are there", () => {
    assert.deepEqual(file.cases.map((c) => c.tc), [1, 2, 3, 4, 5, 6, 7]);
  });

  for (const c of file.cases) {
    test(`test case ${c.tc}${c.truncatedTo ? " (first 128 bits)" : ""}`, () => {
      for (const id of IDS) {
        const want = c[HASH_NAME[id]];
        const got = prf(id, hex(c.key), hex(c.data));
        assert.equal(got.length, prfLength(id));
        assert.equal(toHex(c.truncatedTo ? got.subarray(0, c.truncatedTo) : got), want, `PRF ${id}`);
        // The vector itself, against an independent HMAC: a transcription error fails here.
        assert.ok(toHex(hmac(NOBLE[id], hex(c.key), hex(c.data))).startsWith(want), `PRF ${id} vector vs noble`);
      }
    });
  }
});

describe("Wycheproof HMAC (full-length tags)", () => {
  interface Case { tcId: number; key: string; msg: string; tag: string; result: "valid" | "invalid"; flags: string[] }
  interface Group { keySize: number; tagSize: number; tests: Case[] }
  for (const id of IDS) {
    const bits = prfLength(id) * 8;
    const file = loadVector<{ numberOfTests: number; testGroups: Group[] }>(`wycheproof_hmac_sha${bits}_subset.json`);
    const all = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, keySize: g.keySize, tagSize: g.tagSize })));

    test(`HMAC-SHA-${bits}: ${all.length} cases, valid tags produced, invalid ones not`, () => {
      assert.equal(all.length, file.numberOfTests);
      assert.equal(all.length, 87);
      assert.ok(all.every((t) => t.tagSize === bits), "only full-length tags");
      assert.equal(all.filter((t) => t.result === "valid").length, 33);
      const wrong: string[] = [];
      for (const t of all) {
        const tag = toHex(prf(id, hex(t.key), hex(t.msg)));
        if ((tag === t.tag) !== (t.result === "valid")) wrong.push(`tcId ${t.tcId} (${t.result}, key ${t.keySize} bits)`);
      }
      assert.deepEqual(wrong, []);
    });
  }
});

describe("prf+ (RFC 7296 §2.13)", () => {
  test("equals the reference at every length up to 5 blocks, and at the 255-block maximum", () => {
    const rng = new Rng(SEED);
    for (const id of IDS) {
      const L = prfLength(id);
      const key = rng.bytes(L);
      const seed = rng.bytes(rng.range(0, 300));
      for (let length = 0; length <= 5 * L + 1; length++) {
        assert.equal(toHex(prfPlus(id, key, seed, length)), toHex(referencePrfPlus(id, key, seed, length)), `PRF ${id} length ${length} seed ${SEED}`);
      }
      assert.equal(toHex(prfPlus(id, key, seed, 255 * L)), toHex(referencePrfPlus(id, key, seed, 255 * L)), `PRF ${id} at 255 blocks`);
    }
  });

  test("IKE-shaped inputs: SKEYSEED-sized keys, Ni | Nr | SPIi | SPIr seeds, 100-300 bytes out", () => {
    const rng = new Rng(SEED ^ 0x5eed);
    for (let i = 0; i < 60; i++) {
      const id = IDS[i % 3]!;
      const key = rng.bytes(prfLength(id));
      const seed = concat(rng.bytes(rng.range(16, 256)), rng.bytes(rng.range(16, 256)), rng.bytes(16));
      const length = rng.range(100, 300);
      assert.equal(toHex(prfPlus(id, key, seed, length)), toHex(referencePrfPlus(id, key, seed, length)), `case ${i} seed ${SEED}`);
    }
  });

  test("a shorter output is a prefix of a longer one, and the inputs are left as they were", () => {
    const key = new Uint8Array(32).fill(0x11), seed = new Uint8Array(70).fill(0x22);
    const long = prfPlus(5, key, seed, 200);
    assert.equal(toHex(prfPlus(5, key, seed, 77)), toHex(long.subarray(0, 77)));
    assert.ok(key.every((b) => b === 0x11) && seed.every((b) => b === 0x22));
    assert.equal(toHex(prf(5, key, concat(seed, Uint8Array.of(1)))), toHex(long.subarray(0, 32)), "T1 = prf(K, S | 0x01)");
  });

  test("more than 255 blocks, a negative or fractional length is a RangeError", () => {
    for (const id of IDS) {
      const key = new Uint8Array(prfLength(id));
      assert.throws(() => prfPlus(id, key, new Uint8Array(8), 255 * prfLength(id) + 1), /at most|\[0, \d+\]/);
    }
    assert.throws(() => prfPlus(5, new Uint8Array(32), new Uint8Array(8), -1), RangeError);
    assert.throws(() => prfPlus(5, new Uint8Array(32), new Uint8Array(8), 2.5), RangeError);
    assert.throws(() => prfPlus(5, new Uint8Array(32), new Uint8Array(8), Number.NaN), RangeError);
  });

  test("results are plain Uint8Arrays (they compare equal to other Uint8Arrays)", () => {
    const out = prf(5, hex("0b".repeat(20)), new TextEncoder().encode("Hi There"));
    assert.equal(Object.getPrototypeOf(out), Uint8Array.prototype);
    assert.deepEqual(out, hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    assert.equal(Object.getPrototypeOf(prfPlus(6, out, out, 100)), Uint8Array.prototype);
  });
});
