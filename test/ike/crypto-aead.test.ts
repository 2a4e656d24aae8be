// Proves src/ike/crypto/aead.ts: the IKEv2 SK payload of RFC 7634 Appendix B
// seals and opens byte for byte; every Wycheproof AES-GCM case with a 96-bit
// nonce and 128-bit tag (128/256-bit keys) and every ChaCha20-Poly1305 case
// with a 96-bit nonce goes through aeadSeal/aeadOpen as salt ‖ iv; random
// messages agree with @noble/ciphers; flipping any bit of the output, the
// AAD, the IV or the key material, or cutting the output short, makes
// aeadOpen return null; keymat lengths follow RFC 5282 §7.1 / RFC 7634 §3.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { gcm } from "@noble/ciphers/aes.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import {
  aeadSeal, aeadOpen, aeadKeymatLength, aeadKeyBitsSupported, isAeadId, AEAD_IV_BYTES, AEAD_TAG_BYTES, type AeadId,
} from "../../src/ike/crypto/aead.js";
import { hex, toHex, concat, loadVector, Rng, SEED } from "../helpers.js";

/** The three supported configurations: id and key material length. */
const CONFIGS: { name: string; id: AeadId; keymatBytes: number }[] = [
  { name: "AES-128-GCM", id: 20, keymatBytes: 20 },
  { name: "AES-256-GCM", id: 20, keymatBytes: 36 },
  { name: "ChaCha20-Poly1305", id: 28, keymatBytes: 36 },
];

/** An independent result to compare aeadSeal with: @noble/ciphers with nonce = salt ‖ iv. */
function nobleSeal(id: AeadId, keymat: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const key = keymat.subarray(0, keymat.length - 4);
  const nonce = concat(keymat.subarray(keymat.length - 4), iv);
  return id === 20 ? gcm(key, nonce, aad).encrypt(plaintext) : chacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

describe("transform ids and key material lengths", () => {
  test("isAeadId knows exactly 20 and 28", () => {
    for (let id = -1; id < 1100; id++) assert.equal(isAeadId(id), id === 20 || id === 28, `id ${id}`);
    assert.equal(AEAD_IV_BYTES, 8);
    assert.equal(AEAD_TAG_BYTES, 16);
  });

  test("aeadKeymatLength: key ‖ 4-byte salt", () => {
    assert.equal(aeadKeymatLength(20, 128), 20);
    assert.equal(aeadKeymatLength(20, 256), 36);
    assert.equal(aeadKeymatLength(28), 36);
    assert.equal(aeadKeymatLength(28, 256), 36);
  });

  test("refused: AES-GCM without a key length or with 192 or other bits, ChaCha20 with a length other than 256, unknown ids", () => {
    for (const bits of [undefined, 0, 64, 192, 512]) {
      assert.throws(() => aeadKeymatLength(20, bits), RangeError, `AES-GCM ${bits}`);
      assert.equal(aeadKeyBitsSupported(20, bits), false);
    }
    for (const bits of [128, 192, 0]) {
      assert.throws(() => aeadKeymatLength(28, bits), RangeError, `ChaCha20 ${bits}`);
      assert.equal(aeadKeyBitsSupported(28, bits), false);
    }
    assert.equal(aeadKeyBitsSupported(20, 128) && aeadKeyBitsSupported(20, 256) && aeadKeyBitsSupported(28), true);
    assert.throws(() => aeadKeymatLength(12 as AeadId, 128), /unknown AEAD transform id 12/);
  });

  test("keymat of a length that fits no key is a RangeError in seal and open; an IV of the wrong length too in seal", () => {
    const iv = new Uint8Array(8), none = new Uint8Array(0);
    for (const [id, length] of [[20, 16], [20, 28], [20, 32], [20, 37], [28, 20], [28, 32], [28, 40]] as [AeadId, number][]) {
      assert.throws(() => aeadSeal(id, new Uint8Array(length), iv, none, none), RangeError, `seal id ${id} keymat ${length}`);
      assert.throws(() => aeadOpen(id, new Uint8Array(length), iv, none, new Uint8Array(16)), RangeError, `open id ${id} keymat ${length}`);
    }
    for (const c of CONFIGS) {
      for (const ivLength of [0, 7, 9, 12]) assert.throws(() => aeadSeal(c.id, new Uint8Array(c.keymatBytes), new Uint8Array(ivLength), none, none), RangeError);
    }
    assert.throws(() => aeadSeal(20, new Uint8Array(20), iv, none, "text" as unknown as Uint8Array), TypeError);
  });
});

describe("RFC 7634 Appendix B: the IKEv2 SK payload", () => {
  const v = loadVector("rfc7634.json").ike as Record<string, string>;
  const keymat = concat(hex(v.key!), hex(v.salt!));
  const iv = hex(v.iv!), aad = hex(v.aad!), plaintext = hex(v.plaintext!);

  test("the example is self-consistent: AAD is the IKE header (length covers the whole message) and the SK header", () => {
    assert.equal(aad.length, 28 + 4);
    const body = hex(v.ciphertext! + v.tag!);
    const view = new DataView(aad.buffer, aad.byteOffset);
    assert.equal(aad[16], 46, "IKE header: next payload SK");
    assert.equal(view.getUint32(24), 28 + 4 + AEAD_IV_BYTES + body.length, "IKE header length");
    assert.equal(view.getUint16(30), 4 + AEAD_IV_BYTES + body.length, "SK payload length");
    assert.equal(aeadKeymatLength(28), keymat.length);
  });

  test("aeadSeal reproduces ciphertext ‖ tag", () => {
    assert.equal(toHex(aeadSeal(28, keymat, iv, aad, plaintext)), v.ciphertext! + v.tag!);
  });

  test("aeadOpen gives back the plaintext", () => {
    const opened = aeadOpen(28, keymat, iv, aad, hex(v.ciphertext! + v.tag!));
    assert.ok(opened !== null);
    assert.equal(toHex(opened), v.plaintext);
    assert.equal(Object.getPrototypeOf(opened), Uint8Array.prototype);
  });
});

interface AeadCase { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: "valid" | "invalid" | "acceptable"; flags: string[] }
interface AeadGroup { ivSize: number; keySize: number; tagSize: number; tests: AeadCase[] }

/** Runs Wycheproof AEAD cases through the SK payload API: keymat = key ‖ iv[0..4), iv = iv[4..12). */
function runWycheproof(id: AeadId, cases: AeadCase[]): string[] {
  const wrong: string[] = [];
  for (const t of cases) {
    const nonce = hex(t.iv);
    const keymat = concat(hex(t.key), nonce.subarray(0, 4));
    const iv = nonce.subarray(4);
    const aad = hex(t.aad), msg = hex(t.msg), sealed = hex(t.ct + t.tag);
    const opened = aeadOpen(id, keymat, iv, aad, sealed);
    if (t.result === "valid") {
      if (toHex(aeadSeal(id, keymat, iv, aad, msg)) !== t.ct + t.tag) wrong.push(`tcId ${t.tcId}: seal`);
      if (opened === null || toHex(opened) !== t.msg) wrong.push(`tcId ${t.tcId}: open`);
    } else if (opened !== null) {
      wrong.push(`tcId ${t.tcId}: an invalid case opened (${t.flags.join("/")})`);
    }
  }
  return wrong;
}

describe("Wycheproof", () => {
  test("AES-GCM: 96-bit nonce, 128-bit tag, 128 and 256-bit keys (133 cases)", () => {
    const file = loadVector<{ numberOfTests: number; testGroups: AeadGroup[] }>("wycheproof_aes_gcm_subset.json");
    const all = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, group: g })));
    assert.equal(all.length, file.numberOfTests);
    assert.equal(all.length, 133);
    assert.ok(all.every((t) => t.group.ivSize === 96 && t.group.tagSize === 128 && (t.group.keySize === 128 || t.group.keySize === 256)));
    assert.equal(all.filter((t) => t.result === "valid").length, 79);
    assert.equal(all.filter((t) => t.result === "invalid").length, 54);
    assert.deepEqual(runWycheproof(20, all), []);
  });

  test("ChaCha20-Poly1305: the 96-bit-nonce cases of the project's subset (158 cases)", () => {
    const file = loadVector<{ testGroups: AeadGroup[] }>("wycheproof_chacha20_poly1305_subset.json");
    const all = file.testGroups.filter((g) => g.ivSize === 96).flatMap((g) => g.tests);
    assert.equal(all.length, 158);
    assert.deepEqual(runWycheproof(28, all), []);
  });
});

describe("differential: agrees with @noble/ciphers", () => {
  test("random keys, IVs, AAD of 0-64 bytes and plaintexts of 0-2000 bytes, for each configuration", () => {
    const rng = new Rng(SEED);
    for (const c of CONFIGS) {
      for (let i = 0; i < 60; i++) {
        const keymat = rng.bytes(c.keymatBytes), iv = rng.bytes(8);
        const aad = rng.bytes(rng.range(0, 64)), plaintext = rng.bytes(i < 20 ? i : rng.range(0, 2000));
        const sealed = aeadSeal(c.id, keymat, iv, aad, plaintext);
        assert.equal(sealed.length, plaintext.length + AEAD_TAG_BYTES);
        assert.equal(toHex(sealed), toHex(nobleSeal(c.id, keymat, iv, aad, plaintext)), `${c.name} case ${i} seed ${SEED}`);
        assert.equal(toHex(aeadOpen(c.id, keymat, iv, aad, sealed)!), toHex(plaintext));
      }
    }
  });
});

describe("tampering", () => {
  for (const c of CONFIGS) {
    const rng = new Rng(SEED ^ c.keymatBytes ^ c.id);
    const keymat = rng.bytes(c.keymatBytes), iv = rng.bytes(8), aad = rng.bytes(32), plaintext = rng.bytes(45);
    const sealed = aeadSeal(c.id, keymat, iv, aad, plaintext);

    test(`${c.name}: every bit of ciphertext ‖ tag flipped → null`, () => {
      const opened: string[] = [];
      for (let i = 0; i < sealed.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const forged = sealed.slice();
          forged[i]! ^= 1 << bit;
          if (aeadOpen(c.id, keymat, iv, aad, forged) !== null) opened.push(`byte ${i} bit ${bit}`);
        }
      }
      assert.deepEqual(opened, []);
      assert.equal(toHex(aeadOpen(c.id, keymat, iv, aad, sealed)!), toHex(plaintext), "the untouched message still opens");
    });

    test(`${c.name}: every byte of the AAD, the IV and the key material flipped → null`, () => {
      const opened: string[] = [];
      for (const [name, bytes] of [["aad", aad], ["iv", iv], ["keymat", keymat]] as const) {
        for (let i = 0; i < bytes.length; i++) {
          const changed = bytes.slice();
          changed[i]! ^= 0x80;
          const args = { aad, iv, keymat, [name]: changed };
          if (aeadOpen(c.id, args.keymat, args.iv, args.aad, sealed) !== null) opened.push(`${name} byte ${i}`);
        }
      }
      assert.deepEqual(opened, []);
    });

    test(`${c.name}: truncated to any shorter length, extended by a byte, or an IV of the wrong length → null, no throw`, () => {
      for (let length = 0; length < sealed.length; length++) {
        assert.equal(aeadOpen(c.id, keymat, iv, aad, sealed.subarray(0, length)), null, `length ${length}`);
      }
      assert.equal(aeadOpen(c.id, keymat, iv, aad, concat(sealed, Uint8Array.of(0))), null);
      for (const ivLength of [0, 7, 9, 12]) assert.equal(aeadOpen(c.id, keymat, new Uint8Array(ivLength), aad, sealed), null);
    });

    test(`${c.name}: an empty plaintext seals to a lone tag that opens, and its tag flipped does not`, () => {
      const tagOnly = aeadSeal(c.id, keymat, iv, aad, new Uint8Array(0));
      assert.equal(tagOnly.length, AEAD_TAG_BYTES);
      assert.equal(aeadOpen(c.id, keymat, iv, aad, tagOnly)?.length, 0);
      tagOnly[15]! ^= 1;
      assert.equal(aeadOpen(c.id, keymat, iv, aad, tagOnly), null);
    });
  }
});
