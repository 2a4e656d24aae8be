// Proves the kernel's ChaCha20, Poly1305 and ChaCha20-Poly1305 AEAD produce
// RFC 8439's known answers: §2.3.2, §2.4.2, §2.5.2, §2.6.2, §2.8.2 and the
// Appendix A vectors (A.1–A.5), through the raw kernel exports and, for the
// AEAD, through the public seal/open of src/crypto.ts. Every hand-transcribed
// vector is first checked against @noble/ciphers, so a typo in the vector file
// fails loudly instead of testing nothing.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chacha20, chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { poly1305 } from "@noble/ciphers/_poly1305.js";
import { seal, open } from "../../src/crypto.js";
import { hex, toHex, concat, loadVector, rawKernel } from "../helpers.js";

const main = loadVector("rfc8439.json");
const appendix = loadVector("rfc8439_appendix_a.json");

// Addresses in the raw kernel's memory.
const KEY = 0;
const NONCE = 64;
const AAD = 128;
const TAG = 256;
const OUT = 512;
const SRC = 1024;
const DST = 16384;
const GUARD = 0xa5;

const raw = rawKernel(4);

/** chacha20_xor through the kernel; also checks no byte past dst + len was written. */
function kernelXor(key: Uint8Array, nonce: Uint8Array, counter: number, input: Uint8Array, inPlace = false): Uint8Array {
  const mem = raw.bytes();
  mem.set(key, KEY);
  mem.set(nonce, NONCE);
  mem.fill(GUARD, SRC, SRC + input.length + 64);
  mem.fill(GUARD, DST, DST + input.length + 64);
  mem.set(input, SRC);
  const dst = inPlace ? SRC : DST;
  raw.kernel.chacha20_xor(KEY, NONCE, counter, SRC, dst, input.length);
  for (let i = 0; i < 64; i++) assert.equal(mem[dst + input.length + i], GUARD, `byte ${i} past the end was written`);
  return mem.slice(dst, dst + input.length);
}

function kernelPoly(key: Uint8Array, msg: Uint8Array): Uint8Array {
  const mem = raw.bytes();
  mem.set(key, KEY);
  mem.set(msg, SRC);
  mem.fill(GUARD, OUT, OUT + 32);
  raw.kernel.poly1305_mac(KEY, SRC, msg.length, OUT);
  for (let i = 16; i < 32; i++) assert.equal(mem[OUT + i], GUARD, "poly1305_mac wrote past its 16-byte tag");
  return mem.slice(OUT, OUT + 16);
}

function kernelSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  const mem = raw.bytes();
  mem.set(key, KEY);
  mem.set(nonce, NONCE);
  mem.set(aad, AAD);
  mem.set(pt, SRC);
  raw.kernel.aead_seal(KEY, NONCE, AAD, aad.length, SRC, DST, pt.length, TAG);
  return concat(mem.slice(DST, DST + pt.length), mem.slice(TAG, TAG + 16));
}

function kernelOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Uint8Array | null {
  const mem = raw.bytes();
  mem.set(key, KEY);
  mem.set(nonce, NONCE);
  mem.set(aad, AAD);
  mem.set(ct, SRC);
  mem.set(tag, TAG);
  mem.fill(GUARD, DST, DST + ct.length);
  const ok = raw.kernel.aead_open(KEY, NONCE, AAD, aad.length, SRC, DST, ct.length, TAG);
  if (ok !== 1) {
    assert.equal(ok, 0);
    // Nothing is decrypted unless the tag verified.
    assert.ok(mem.subarray(DST, DST + ct.length).every((b) => b === GUARD), "aead_open wrote plaintext for a forged message");
    return null;
  }
  return mem.slice(DST, DST + ct.length);
}

describe("RFC 8439 §2 examples", () => {
  test("§2.3.2 ChaCha20 block function: keystream of counter 1", () => {
    const v = main.chacha20Block;
    const key = hex(v.key), nonce = hex(v.nonce);
    assert.equal(v.counter, 1);
    assert.equal(toHex(chacha20(key, nonce, new Uint8Array(64), undefined, v.counter)), v.keystream, "vector vs noble");
    assert.equal(toHex(kernelXor(key, nonce, v.counter, new Uint8Array(64))), v.keystream);
  });

  test("§2.4.2 ChaCha20 encryption (and decryption, in place)", () => {
    const v = main.chacha20Encrypt;
    const key = hex(v.key), nonce = hex(v.nonce), pt = hex(v.plaintext);
    assert.equal(pt.length, 114);
    assert.equal(toHex(kernelXor(key, nonce, v.counter, pt)), v.ciphertext);
    assert.equal(toHex(kernelXor(key, nonce, v.counter, pt, true)), v.ciphertext, "in place");
    assert.equal(toHex(kernelXor(key, nonce, v.counter, hex(v.ciphertext))), v.plaintext, "decrypts back");
  });

  test("§2.5.2 Poly1305 through poly1305_mac", () => {
    const v = main.poly1305;
    assert.equal(toHex(kernelPoly(hex(v.key), hex(v.message))), v.tag);
    assert.equal(toHex(poly1305(hex(v.message), hex(v.key))), v.tag, "vector vs noble");
  });

  test("§2.6.2 Poly1305 key generation = first 32 bytes of the counter-0 block", () => {
    const v = main.poly1305KeyGen;
    const key = hex(v.key), nonce = hex(v.nonce);
    assert.equal(toHex(kernelXor(key, nonce, 0, new Uint8Array(32))), v.oneTimeKey);
    assert.equal(toHex(kernelXor(key, nonce, 0, new Uint8Array(64)).subarray(0, 32)), v.oneTimeKey);
  });

  describe("§2.8.2 AEAD (Wycheproof tcId 1)", () => {
    const v = appendix.aead;
    const key = hex(v.key), nonce = hex(v.nonce), aad = hex(v.aad), pt = hex(v.plaintext);
    const expected = v.ciphertext + v.tag;

    test("the transcribed vector agrees with noble", () => {
      assert.equal(new TextDecoder().decode(pt), v.text);
      assert.equal(toHex(chacha20poly1305(key, nonce, aad).encrypt(pt)), expected);
    });

    test("raw kernel aead_seal / aead_open", () => {
      assert.equal(toHex(kernelSeal(key, nonce, aad, pt)), expected);
      assert.equal(toHex(kernelOpen(key, nonce, aad, hex(v.ciphertext), hex(v.tag))!), v.plaintext);
      const badTag = hex(v.tag);
      badTag[15] ^= 0x80;
      assert.equal(kernelOpen(key, nonce, aad, hex(v.ciphertext), badTag), null);
    });

    test("public seal / open", () => {
      assert.equal(toHex(seal(key, nonce, aad, pt)), expected);
      const opened = open(key, nonce, aad, hex(expected));
      assert.ok(opened !== null);
      assert.equal(toHex(opened), v.plaintext);
      assert.equal(new TextDecoder().decode(opened), v.text);
      const otherAad = aad.slice();
      otherAad[0] ^= 1;
      assert.equal(open(key, nonce, otherAad, hex(expected)), null, "AAD is authenticated");
      const otherNonce = nonce.slice();
      otherNonce[11] ^= 1;
      assert.equal(open(key, otherNonce, aad, hex(expected)), null, "nonce is authenticated");
    });
  });
});

describe("RFC 8439 Appendix A", () => {
  describe("A.1 ChaCha20 block function", () => {
    for (const v of appendix.chacha20Block) {
      test(v.name, () => {
        const key = hex(v.key), nonce = hex(v.nonce);
        assert.equal(toHex(chacha20(key, nonce, new Uint8Array(64), undefined, v.counter)), v.keystream, "vector vs noble");
        assert.equal(toHex(kernelXor(key, nonce, v.counter, new Uint8Array(64))), v.keystream);
      });
    }
  });

  describe("A.2 ChaCha20 encryption", () => {
    for (const v of appendix.chacha20Encrypt) {
      test(v.name, () => {
        const key = hex(v.key), nonce = hex(v.nonce), pt = hex(v.plaintext);
        if (v.text !== undefined) assert.equal(new TextDecoder().decode(pt), v.text);
        assert.equal(toHex(chacha20(key, nonce, pt, undefined, v.counter)), v.ciphertext, "vector vs noble");
        assert.equal(toHex(kernelXor(key, nonce, v.counter, pt)), v.ciphertext);
        assert.equal(toHex(kernelXor(key, nonce, v.counter, hex(v.ciphertext), true)), v.plaintext, "decrypts back in place");
      });
    }
  });

  describe("A.3 Poly1305", () => {
    assert.equal(appendix.poly1305.length, 11);
    for (const v of appendix.poly1305) {
      test(v.name, () => {
        const key = hex(v.key), msg = hex(v.message);
        assert.equal(key.length, 32);
        assert.equal(toHex(poly1305(msg, key)), v.tag, "vector vs noble");
        assert.equal(toHex(kernelPoly(key, msg)), v.tag);
      });
    }
  });

  describe("A.4 Poly1305 key generation", () => {
    for (const v of appendix.poly1305KeyGen) {
      test(v.name, () => {
        const key = hex(v.key), nonce = hex(v.nonce);
        assert.equal(toHex(chacha20(key, nonce, new Uint8Array(32), undefined, 0)), v.oneTimeKey, "vector vs noble");
        assert.equal(toHex(kernelXor(key, nonce, 0, new Uint8Array(32))), v.oneTimeKey);
      });
    }
  });

  describe("A.5 ChaCha20-Poly1305 AEAD decryption", () => {
    const v = appendix.aeadDecrypt;
    const key = hex(v.key), nonce = hex(v.nonce), aad = hex(v.aad), ct = hex(v.ciphertext), tag = hex(v.tag);

    test("the transcribed vector agrees with noble", () => {
      assert.equal(ct.length, 265);
      assert.equal(toHex(chacha20poly1305(key, nonce, aad).decrypt(concat(ct, tag))), v.plaintext);
      assert.equal(new TextDecoder().decode(hex(v.plaintext)), v.text);
    });

    test("public open decrypts it; public seal reproduces it", () => {
      const opened = open(key, nonce, aad, concat(ct, tag));
      assert.ok(opened !== null);
      assert.equal(new TextDecoder().decode(opened), v.text);
      assert.equal(toHex(seal(key, nonce, aad, hex(v.plaintext))), v.ciphertext + v.tag);
    });

    test("raw kernel aead_open (no scratch: MAC first, then decrypt)", () => {
      assert.equal(toHex(kernelOpen(key, nonce, aad, ct, tag)!), v.plaintext);
      const badCt = ct.slice();
      badCt[200] ^= 4;
      assert.equal(kernelOpen(key, nonce, aad, badCt, tag), null);
    });
  });
});
