// Proves the public AEAD (src/crypto.ts seal/open) against every case of the
// Wycheproof ChaCha20-Poly1305 subset: valid cases seal to ct ‖ tag and open
// back, invalid ones (modified tags, Poly1305 edge cases) open to null, and
// nonces other than 96 bits are refused with a TypeError. Also: malformed
// arguments (key not 32 bytes, non-Uint8Array inputs) throw TypeError.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { seal, open } from "../../src/crypto.js";
import { hex, toHex, concat, loadVector } from "../helpers.js";

interface Case {
  tcId: number;
  comment: string;
  flags: string[];
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: "valid" | "invalid" | "acceptable";
}
interface Group {
  ivSize: number;
  keySize: number;
  tagSize: number;
  tests: Case[];
}

const file = loadVector<{ numberOfTests: number; testGroups: Group[] }>("wycheproof_chacha20_poly1305_subset.json");
const all = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, ivSize: g.ivSize })));

describe("Wycheproof ChaCha20-Poly1305", () => {
  test("the subset is what the README says", () => {
    assert.equal(all.length, file.numberOfTests);
    assert.equal(all.length, 162);
    assert.ok(file.testGroups.every((g) => g.keySize === 256 && g.tagSize === 128));
    assert.equal(all.filter((t) => t.ivSize === 96 && t.result === "valid").length, 128);
    assert.equal(all.filter((t) => t.ivSize === 96 && t.result === "invalid").length, 30);
    assert.equal(all.filter((t) => t.ivSize !== 96).length, 4);
    assert.ok(!all.some((t) => t.result === "acceptable"), "no 'acceptable' cases to decide on");
  });

  for (const t of all) {
    const name = `tcId ${t.tcId} (${t.result}, iv ${t.ivSize} bits, msg ${t.msg.length / 2} B, aad ${t.aad.length / 2} B${t.flags.length ? ", " + t.flags.join("/") : ""})`;
    test(name, () => {
      const key = hex(t.key), nonce = hex(t.iv), aad = hex(t.aad), msg = hex(t.msg);
      const sealed = hex(t.ct + t.tag);
      assert.equal(nonce.length * 8, t.ivSize);
      if (t.ivSize !== 96) {
        assert.throws(() => seal(key, nonce, aad, msg), TypeError);
        assert.throws(() => open(key, nonce, aad, sealed), TypeError);
        assert.throws(() => open(key, nonce, aad, sealed), /nonce/);
        return;
      }
      if (t.result === "valid") {
        assert.equal(toHex(seal(key, nonce, aad, msg)), t.ct + t.tag);
        const opened = open(key, nonce, aad, sealed);
        assert.ok(opened !== null, "a valid case must open");
        assert.equal(toHex(opened), t.msg);
      } else {
        assert.equal(open(key, nonce, aad, sealed), null);
        assert.notEqual(toHex(seal(key, nonce, aad, msg)), t.ct + t.tag, "sealing the message must not produce the invalid ciphertext");
      }
    });
  }
});

describe("argument validation of seal / open", () => {
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(12).fill(9);
  const aad = new Uint8Array(3);
  const pt = new Uint8Array(20);
  const sealed = seal(key, nonce, aad, pt);

  test("sanity: the valid arguments work", () => {
    assert.equal(sealed.length, 36);
    assert.equal(toHex(open(key, nonce, aad, sealed)!), toHex(pt));
  });

  for (const n of [0, 16, 31, 33, 64]) {
    test(`a ${n}-byte key throws TypeError naming the key`, () => {
      const bad = new Uint8Array(n).fill(7);
      assert.throws(() => seal(bad, nonce, aad, pt), (e: unknown) => e instanceof TypeError && /key/.test(e.message) && e.message.includes(String(n)));
      assert.throws(() => open(bad, nonce, aad, sealed), (e: unknown) => e instanceof TypeError && /key/.test(e.message));
    });
  }

  for (const n of [0, 8, 11, 13, 24]) {
    test(`a ${n}-byte nonce throws TypeError naming the nonce`, () => {
      const bad = new Uint8Array(n);
      assert.throws(() => seal(key, bad, aad, pt), (e: unknown) => e instanceof TypeError && /nonce/.test(e.message));
      assert.throws(() => open(key, bad, aad, sealed), (e: unknown) => e instanceof TypeError && /nonce/.test(e.message));
    });
  }

  const notBytes: [string, unknown][] = [
    ["an Array", Array.from(key)],
    ["a string", "00".repeat(32)],
    ["null", null],
    ["undefined", undefined],
    ["an ArrayBuffer", new ArrayBuffer(32)],
    ["a DataView", new DataView(new ArrayBuffer(32))],
    ["an Int8Array", new Int8Array(32)],
    ["a Uint16Array", new Uint16Array(16)],
    ["a number", 42],
  ];
  for (const [what, value] of notBytes) {
    test(`${what} in any position throws TypeError`, () => {
      const v = value as Uint8Array;
      assert.throws(() => seal(v, nonce, aad, pt), TypeError, "key");
      assert.throws(() => seal(key, v, aad, pt), TypeError, "nonce");
      assert.throws(() => seal(key, nonce, v, pt), TypeError, "aad");
      assert.throws(() => seal(key, nonce, aad, v), TypeError, "plaintext");
      assert.throws(() => open(v, nonce, aad, sealed), TypeError, "key");
      assert.throws(() => open(key, v, aad, sealed), TypeError, "nonce");
      assert.throws(() => open(key, nonce, v, sealed), TypeError, "aad");
      assert.throws(() => open(key, nonce, aad, v), TypeError, "sealed");
    });
  }

  test("Uint8Array views at an offset and Buffers are accepted", () => {
    const backing = new Uint8Array(100);
    backing.set(key, 5);
    backing.set(nonce, 50);
    const keyView = backing.subarray(5, 37), nonceView = backing.subarray(50, 62);
    assert.equal(toHex(seal(keyView, nonceView, aad, pt)), toHex(sealed));
    assert.equal(toHex(seal(Buffer.from(key), Buffer.from(nonce), Buffer.from(aad), Buffer.from(pt))), toHex(sealed));
  });

  test("a sealed input shorter than the tag opens to null, not an exception", () => {
    for (let n = 0; n < 16; n++) assert.equal(open(key, nonce, aad, sealed.subarray(0, n)), null);
    assert.equal(open(key, nonce, aad, concat(sealed, new Uint8Array(1))), null);
  });
});
