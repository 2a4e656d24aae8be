// Proves the optional `output` arrays of seal/open (src/crypto.ts): results
// land in the caller's array (the array itself when it is exactly the right
// size, else a view of its start), nothing past the result is touched, the
// same array may be input and output, a forged message leaves `output`
// untouched, and a short or non-Uint8Array output is a TypeError.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { seal, open } from "../../src/crypto.js";
import { toHex, Rng, SEED } from "../helpers.js";

const rng = new Rng(SEED ^ 0x0a7);

describe("seal / open into a caller's output array", () => {
  for (const len of [0, 1, 16, 100, 1420, 5000]) {
    test(`length ${len}: exact and larger outputs`, () => {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(rng.range(0, 30)), pt = rng.bytes(len);
      const expected = toHex(chacha20poly1305(key, nonce, aad).encrypt(pt));

      const exact = new Uint8Array(len + 16);
      const sealed = seal(key, nonce, aad, pt, exact);
      assert.equal(sealed, exact, "an exact-size output is returned itself");
      assert.equal(toHex(exact), expected);

      const roomy = new Uint8Array(len + 40).fill(0xee);
      const view = seal(key, nonce, aad, pt, roomy);
      assert.equal(view.buffer, roomy.buffer);
      assert.equal(view.byteOffset, 0);
      assert.equal(view.length, len + 16);
      assert.equal(toHex(view), expected);
      assert.ok(roomy.subarray(len + 16).every((b) => b === 0xee), "bytes past the result are untouched");

      const plainOut = new Uint8Array(len + 7).fill(0xdd);
      const opened = open(key, nonce, aad, exact, plainOut);
      assert.ok(opened !== null);
      assert.equal(opened.buffer, plainOut.buffer);
      assert.equal(opened.length, len);
      assert.equal(toHex(opened), toHex(pt));
      assert.ok(plainOut.subarray(len).every((b) => b === 0xdd));

      const exactPlain = new Uint8Array(len);
      assert.equal(open(key, nonce, aad, exact, exactPlain), exactPlain);
    });
  }

  test("an output at an offset inside a larger buffer", () => {
    const key = rng.bytes(32), nonce = rng.bytes(12), pt = rng.bytes(77);
    const backing = new Uint8Array(200).fill(0x11);
    const out = backing.subarray(50, 150);
    const sealed = seal(key, nonce, new Uint8Array(0), pt, out);
    assert.equal(sealed.byteOffset, 50);
    assert.equal(toHex(sealed), toHex(seal(key, nonce, new Uint8Array(0), pt)));
    assert.ok(backing.subarray(0, 50).every((b) => b === 0x11));
    assert.ok(backing.subarray(50 + 93).every((b) => b === 0x11));
  });

  test("in place: the plaintext's own array as output, and the sealed array as output", () => {
    const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(9);
    const pt = rng.bytes(300);
    const buf = new Uint8Array(316);
    buf.set(pt);
    const sealed = seal(key, nonce, aad, buf.subarray(0, 300), buf);
    assert.equal(sealed, buf);
    assert.equal(toHex(buf), toHex(chacha20poly1305(key, nonce, aad).encrypt(pt)));
    const opened = open(key, nonce, aad, buf, buf);
    assert.ok(opened !== null);
    assert.equal(toHex(opened), toHex(pt));
  });

  test("a forged message leaves the output untouched", () => {
    const key = rng.bytes(32), nonce = rng.bytes(12);
    const sealed = seal(key, nonce, new Uint8Array(0), rng.bytes(64));
    sealed[3] ^= 1;
    const out = new Uint8Array(64).fill(0x77);
    assert.equal(open(key, nonce, new Uint8Array(0), sealed, out), null);
    assert.ok(out.every((b) => b === 0x77));
  });

  test("a short or non-Uint8Array output is a TypeError naming output", () => {
    const key = rng.bytes(32), nonce = rng.bytes(12), pt = rng.bytes(10);
    const sealed = seal(key, nonce, new Uint8Array(0), pt);
    const isOutputError = (e: unknown): boolean => e instanceof TypeError && /\boutput\b/.test(e.message);
    assert.throws(() => seal(key, nonce, new Uint8Array(0), pt, new Uint8Array(25)), isOutputError);
    assert.throws(() => open(key, nonce, new Uint8Array(0), sealed, new Uint8Array(9)), isOutputError);
    for (const bad of [new ArrayBuffer(64), new Uint16Array(64), [] as unknown, "x", null]) {
      assert.throws(() => seal(key, nonce, new Uint8Array(0), pt, bad as Uint8Array), isOutputError);
      assert.throws(() => open(key, nonce, new Uint8Array(0), sealed, bad as Uint8Array), isOutputError);
    }
    const untouched = new Uint8Array(25).fill(3);
    assert.throws(() => seal(key, nonce, new Uint8Array(0), pt, untouched));
    assert.ok(untouched.every((b) => b === 3), "a refused output is not written");
  });
});
