// Proves the kernel's ChaCha20-Poly1305 (and its ChaCha20 and Poly1305 parts)
// agree with an independent implementation, @noble/ciphers, for every
// plaintext length 0…2048 and some far larger, with random keys, nonces and
// AAD; that open(seal(x)) = x; and that any change to a sealed message, its
// AAD, its length, key or nonce makes open return null. Both open paths are
// covered: the public API's (keystream stitched into scratch) and the raw
// kernel without scratch (MAC first, then decrypt).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chacha20, chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { poly1305 } from "@noble/ciphers/_poly1305.js";
import { seal, open } from "../../src/crypto.js";
import { toHex, concat, rawKernel, Rng, SEED } from "../helpers.js";

const rng = new Rng(SEED ^ 0xd1ff);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

function aadLengthFor(len: number): number {
  // Mostly 0…64 (every padding case of the AAD), sometimes longer.
  return len % 97 === 0 ? rng.range(65, 1500) : rng.range(0, 64);
}

describe("AEAD vs @noble/ciphers", () => {
  test("seal = noble encrypt and open(seal(x)) = x, every length 0…2048", () => {
    for (let len = 0; len <= 2048; len++) {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(aadLengthFor(len)), pt = rng.bytes(len);
      const ours = seal(key, nonce, aad, pt);
      const theirs = chacha20poly1305(key, nonce, aad).encrypt(pt);
      if (toHex(ours) !== toHex(theirs)) assert.fail(`seal differs from noble at length ${len}, aad ${aad.length} ${seedNote}`);
      const opened = open(key, nonce, aad, theirs);
      if (opened === null || toHex(opened) !== toHex(pt)) assert.fail(`open(noble) failed at length ${len}, aad ${aad.length} ${seedNote}`);
    }
  });

  test("large messages around the 64 KiB open-scratch limit (stitched and unstitched open)", () => {
    for (const len of [4096, 16383, 65000, 65535, 65536, 65984, 65985, 66000, 100_003]) {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(rng.range(0, 40)), pt = rng.bytes(len);
      const ours = seal(key, nonce, aad, pt);
      assert.equal(toHex(ours), toHex(chacha20poly1305(key, nonce, aad).encrypt(pt)), `length ${len} ${seedNote}`);
      assert.equal(toHex(open(key, nonce, aad, ours)!), toHex(pt), `length ${len}`);
      const bad = ours.slice();
      bad[rng.int(bad.length)] ^= 1 << rng.int(8);
      assert.equal(open(key, nonce, aad, bad), null, `forged length ${len}`);
    }
  });

  test("random round trips: open(seal(x)) = x", () => {
    for (let i = 0; i < 300; i++) {
      const len = rng.int(4) === 0 ? rng.range(0, 64) : rng.range(0, 4096);
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(rng.range(0, 300)), pt = rng.bytes(len);
      const sealed = seal(key, nonce, aad, pt);
      assert.equal(sealed.length, len + 16);
      const opened = open(key, nonce, aad, sealed);
      assert.ok(opened !== null, `round trip ${i}, length ${len} ${seedNote}`);
      assert.equal(toHex(opened), toHex(pt));
      assert.equal(toHex(chacha20poly1305(key, nonce, aad).decrypt(sealed)), toHex(pt));
    }
  });

  test("seal and open leave their inputs unchanged", () => {
    const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(20), pt = rng.bytes(300);
    const copies = [key, nonce, aad, pt].map((b) => toHex(b));
    const sealed = seal(key, nonce, aad, pt);
    const sealedCopy = toHex(sealed);
    open(key, nonce, aad, sealed);
    assert.deepEqual([key, nonce, aad, pt].map((b) => toHex(b)), copies);
    assert.equal(toHex(sealed), sealedCopy);
  });
});

describe("tampering: open returns null", () => {
  const lengths = [0, 1, 15, 16, 17, 63, 64, 65, 191, 192, 193, 255, 256, 257, 1420];

  for (const len of lengths) {
    test(`length ${len}: every bit of the sealed message and of the AAD, truncation, extension`, () => {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(rng.range(1, 40)), pt = rng.bytes(len);
      const sealed = seal(key, nonce, aad, pt);
      assert.equal(toHex(open(key, nonce, aad, sealed)!), toHex(pt), "the genuine message opens");

      for (let i = 0; i < sealed.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          sealed[i] ^= 1 << bit;
          if (open(key, nonce, aad, sealed) !== null) assert.fail(`flipping bit ${bit} of byte ${i} of ${sealed.length} was accepted ${seedNote}`);
          sealed[i] ^= 1 << bit;
        }
      }
      for (let i = 0; i < aad.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          aad[i] ^= 1 << bit;
          if (open(key, nonce, aad, sealed) !== null) assert.fail(`flipping bit ${bit} of AAD byte ${i} was accepted ${seedNote}`);
          aad[i] ^= 1 << bit;
        }
      }
      // Every byte again with a random nonzero xor (multi-bit changes).
      for (let i = 0; i < sealed.length; i++) {
        const x = rng.range(1, 255);
        sealed[i] ^= x;
        if (open(key, nonce, aad, sealed) !== null) assert.fail(`xor ${x} at byte ${i} was accepted ${seedNote}`);
        sealed[i] ^= x;
      }
      // Truncated (down to nothing) and extended.
      for (let n = 0; n < sealed.length; n++) {
        if (open(key, nonce, aad, sealed.subarray(0, n)) !== null) assert.fail(`truncated to ${n} bytes was accepted`);
      }
      for (const extra of [1, 2, 15, 16, 17]) {
        assert.equal(open(key, nonce, aad, concat(sealed, new Uint8Array(extra))), null, `extended by ${extra} zero bytes`);
        assert.equal(open(key, nonce, aad, concat(sealed, rng.bytes(extra))), null, `extended by ${extra} random bytes`);
      }
      // The AAD truncated or extended, the key and the nonce changed.
      assert.equal(open(key, nonce, aad.subarray(0, aad.length - 1), sealed), null);
      assert.equal(open(key, nonce, concat(aad, new Uint8Array(1)), sealed), null);
      assert.equal(open(key, nonce, new Uint8Array(0), sealed), null);
      for (let i = 0; i < 32; i++) {
        const k = key.slice();
        k[i] ^= 1 << rng.int(8);
        assert.equal(open(k, nonce, aad, sealed), null, `key byte ${i}`);
      }
      for (let i = 0; i < 12; i++) {
        const n = nonce.slice();
        n[i] ^= 1 << rng.int(8);
        assert.equal(open(key, n, aad, sealed), null, `nonce byte ${i}`);
      }
      assert.equal(toHex(open(key, nonce, aad, sealed)!), toHex(pt), "the genuine message still opens");
    });
  }
});

describe("raw kernel exports vs @noble/ciphers", () => {
  const raw = rawKernel(32);
  const GUARD = 0x5a;

  test("aead_seal out of place / aead_open without scratch, unaligned buffers, lengths 0…1100", () => {
    const KEY = 3, NONCE = 41, TAGAT = 77;
    for (let len = 0; len <= 1100; len++) {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(aadLengthFor(len)), pt = rng.bytes(len);
      const aadAt = 128 + rng.int(16), src = 4096 + rng.int(16), dst = 262144 + rng.int(16);
      const mem = raw.bytes();
      mem.set(key, KEY);
      mem.set(nonce, NONCE);
      mem.set(aad, aadAt);
      mem.set(pt, src);
      mem.fill(GUARD, dst, dst + len + 32);
      raw.kernel.aead_seal(KEY, NONCE, aadAt, aad.length, src, dst, len, TAGAT);
      const expected = chacha20poly1305(key, nonce, aad).encrypt(pt);
      const ct = mem.slice(dst, dst + len), tag = mem.slice(TAGAT, TAGAT + 16);
      if (toHex(concat(ct, tag)) !== toHex(expected)) assert.fail(`aead_seal differs at length ${len} ${seedNote}`);
      if (!mem.subarray(dst + len, dst + len + 32).every((b) => b === GUARD)) assert.fail(`aead_seal wrote past dst at length ${len}`);
      if (toHex(mem.subarray(src, src + len)) !== toHex(pt)) assert.fail(`aead_seal out of place changed its source at ${len}`);

      // Open in place, with no scratch set: MAC first, then decrypt.
      mem.set(ct, src);
      if (raw.kernel.aead_open(KEY, NONCE, aadAt, aad.length, src, src, len, TAGAT) !== 1) assert.fail(`aead_open rejected length ${len}`);
      if (toHex(mem.subarray(src, src + len)) !== toHex(pt)) assert.fail(`aead_open decrypted wrongly at length ${len}`);

      // A forged tag: refused and the ciphertext is left as it was.
      if (len > 0) {
        mem.set(ct, src);
        mem[TAGAT + rng.int(16)] ^= 1 << rng.int(8);
        if (raw.kernel.aead_open(KEY, NONCE, aadAt, aad.length, src, src, len, TAGAT) !== 0) assert.fail(`forged tag accepted at ${len}`);
        if (toHex(mem.subarray(src, src + len)) !== toHex(ct)) assert.fail(`a forged message was decrypted in place at ${len}`);
      }
    }
  });

  test("aead_open with a scratch area set (stitched) equals without, lengths 0…1100", () => {
    const other = rawKernel(8);
    other.kernel.set_scratch(65536, 65536 + 512);
    const KEY = 0, NONCE = 32, TAGAT = 64, AADAT = 128, SRC = 1024;
    for (let len = 0; len <= 1100; len++) {
      const key = rng.bytes(32), nonce = rng.bytes(12), aad = rng.bytes(rng.range(0, 20)), pt = rng.bytes(len);
      const sealed = chacha20poly1305(key, nonce, aad).encrypt(pt);
      const mem = other.bytes();
      mem.set(key, KEY);
      mem.set(nonce, NONCE);
      mem.set(aad, AADAT);
      mem.set(sealed.subarray(0, len), SRC);
      mem.set(sealed.subarray(len), TAGAT);
      if (other.kernel.aead_open(KEY, NONCE, AADAT, aad.length, SRC, SRC, len, TAGAT) !== 1) assert.fail(`stitched aead_open rejected length ${len} ${seedNote}`);
      if (toHex(mem.subarray(SRC, SRC + len)) !== toHex(pt)) assert.fail(`stitched aead_open decrypted wrongly at ${len}`);
      if (len > 0) {
        mem.set(sealed.subarray(0, len), SRC);
        mem[SRC + rng.int(len)] ^= 1 << rng.int(8);
        const forged = mem.slice(SRC, SRC + len);
        if (other.kernel.aead_open(KEY, NONCE, AADAT, aad.length, SRC, SRC, len, TAGAT) !== 0) assert.fail(`stitched open accepted a forgery at ${len}`);
        if (toHex(mem.subarray(SRC, SRC + len)) !== toHex(forged)) assert.fail(`stitched open wrote plaintext of a forgery at ${len}`);
      }
    }
  });

  test("chacha20_xor = noble chacha20, lengths 0…1100, random counters, in and out of place", () => {
    const KEY = 0, NONCE = 32, SRC = 1024 + 7, DST = 65536 + 3;
    for (let len = 0; len <= 1100; len++) {
      const key = rng.bytes(32), nonce = rng.bytes(12), input = rng.bytes(len);
      const counter = rng.int(3) === 0 ? rng.range(0, 8) : rng.range(0, 0xffff0000);
      const expected = toHex(chacha20(key, nonce, input, undefined, counter));
      const mem = raw.bytes();
      mem.set(key, KEY);
      mem.set(nonce, NONCE);
      mem.set(input, SRC);
      mem.fill(GUARD, DST, DST + len + 64);
      raw.kernel.chacha20_xor(KEY, NONCE, counter, SRC, DST, len);
      if (toHex(mem.subarray(DST, DST + len)) !== expected) assert.fail(`chacha20_xor differs at length ${len}, counter ${counter} ${seedNote}`);
      if (!mem.subarray(DST + len, DST + len + 64).every((b) => b === GUARD)) assert.fail(`chacha20_xor wrote past the end at ${len}`);
      raw.kernel.chacha20_xor(KEY, NONCE, counter, SRC, SRC, len);
      if (toHex(mem.subarray(SRC, SRC + len)) !== expected) assert.fail(`in-place chacha20_xor differs at length ${len}`);
    }
  });

  test("poly1305_mac = noble poly1305, lengths 0…1100, random and edge-case keys", () => {
    const KEY = 0, OUT = 64, MSG = 1024 + 5;
    const edgeKeys = [new Uint8Array(32).fill(0xff), new Uint8Array(32), concat(new Uint8Array(16).fill(0xff), new Uint8Array(16))];
    for (let len = 0; len <= 1100; len++) {
      const key = len < edgeKeys.length * 50 && len % 50 === 0 ? edgeKeys[len / 50]! : rng.bytes(32);
      const msg = rng.int(8) === 0 ? new Uint8Array(len).fill(0xff) : rng.bytes(len);
      const mem = raw.bytes();
      mem.set(key, KEY);
      mem.set(msg, MSG);
      raw.kernel.poly1305_mac(KEY, MSG, len, OUT);
      const expected = toHex(poly1305(msg, key));
      if (toHex(mem.subarray(OUT, OUT + 16)) !== expected) assert.fail(`poly1305_mac differs at length ${len} ${seedNote}`);
    }
    // All-0xff key and message, every length: the largest accumulator values.
    for (let len = 0; len <= 300; len++) {
      const key = edgeKeys[0]!, msg = new Uint8Array(len).fill(0xff);
      const mem = raw.bytes();
      mem.set(key, KEY);
      mem.set(msg, MSG);
      raw.kernel.poly1305_mac(KEY, MSG, len, OUT);
      assert.equal(toHex(mem.subarray(OUT, OUT + 16)), toHex(poly1305(msg, key)), `all-0xff at length ${len}`);
    }
  });
});
