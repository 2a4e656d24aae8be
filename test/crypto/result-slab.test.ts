// Proves that the results of the allocating one-shot calls (seal/open of
// sluice/crypto, OutboundSa.seal/InboundSa.open of sluice/esp), now cut from
// shared slabs (src/resultSlab.ts), are still each the caller's own: plain
// Uint8Arrays on ordinary (not shared) memory, 8-byte aligned, each intact
// when thousands more were made after it (across many slabs and the
// own-allocation size limit), and none changing when another is written.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { seal, open, sealAesGcm, openAesGcm } from "../../src/crypto.js";
import { createCipheriv } from "node:crypto";
import { OutboundSa, InboundSa } from "../../src/esp.js";
import { ownedCopy } from "../../src/resultSlab.js";
import { toHex, Rng, SEED } from "../helpers.js";

const rng = new Rng(SEED ^ 0x51ab);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;

function assertOwnArray(result: Uint8Array, what: string): void {
  assert.equal(Object.getPrototypeOf(result), Uint8Array.prototype, `${what}: a plain Uint8Array, not a Buffer or a subclass`);
  assert.ok(!(result.buffer instanceof SharedArrayBuffer), `${what}: not a view of shared memory`);
  assert.equal(result.byteOffset % 8, 0, `${what}: 8-byte aligned`);
}

/** Writes a distinct byte into every result, then checks each still holds its own: no two overlap. */
function assertDisjoint(results: Uint8Array[]): void {
  results.forEach((r, i) => r.fill(i & 0xff));
  results.forEach((r, i) => assert.ok(r.every((b) => b === (i & 0xff)), `result ${i} (${r.length} bytes) was overwritten by another ${seedNote}`));
}

describe("allocating one-shot results", () => {
  test("seal and open: thousands of results of mixed sizes stay intact and disjoint", () => {
    const key = rng.bytes(32), aad = rng.bytes(8);
    const sealedAll: Uint8Array[] = [], openedAll: Uint8Array[] = [], expectedSealed: string[] = [], plains: string[] = [];
    for (let i = 0; i < 3000; i++) {
      // Mostly small (pooled), some past 8 KiB (allocated on their own), some empty.
      const len = i % 97 === 0 ? 0 : i % 13 === 0 ? rng.range(8000, 12000) : rng.range(1, 1600);
      const nonce = rng.bytes(12), pt = rng.bytes(len);
      const sealed = seal(key, nonce, aad, pt);
      assertOwnArray(sealed, `seal ${len} B`);
      const opened = open(key, nonce, aad, sealed);
      assert.ok(opened !== null);
      assertOwnArray(opened, `open ${len} B`);
      sealedAll.push(sealed);
      openedAll.push(opened);
      expectedSealed.push(toHex(chacha20poly1305(key, nonce, aad).encrypt(pt)));
      plains.push(toHex(pt));
    }
    sealedAll.forEach((s, i) => assert.equal(toHex(s), expectedSealed[i], `sealed result ${i} changed after later calls ${seedNote}`));
    openedAll.forEach((o, i) => assert.equal(toHex(o), plains[i], `opened result ${i} changed after later calls ${seedNote}`));
    assertDisjoint([...sealedAll, ...openedAll]);
  });

  test("AES-GCM seal and open: results come from the slabs too, and stay intact and disjoint", () => {
    const key = rng.bytes(32), aad = rng.bytes(8);
    const results: Uint8Array[] = [], expected: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const len = i % 13 === 0 ? rng.range(8000, 12000) : rng.range(0, 1600);
      const nonce = rng.bytes(12), pt = rng.bytes(len);
      const sealed = sealAesGcm(key, nonce, aad, pt);
      assertOwnArray(sealed, `sealAesGcm ${len} B`);
      const cipher = createCipheriv("aes-256-gcm", key, nonce).setAAD(aad);
      expected.push(toHex(Buffer.concat([cipher.update(pt), cipher.final(), cipher.getAuthTag()])));
      const opened = openAesGcm(key, nonce, aad, sealed);
      assert.ok(opened !== null);
      assertOwnArray(opened, `openAesGcm ${len} B`);
      assert.equal(toHex(opened), toHex(pt));
      results.push(sealed, opened);
    }
    results.forEach((r, i) => { if (i % 2 === 0) assert.equal(toHex(r), expected[i / 2], `AES result ${i} changed after later calls ${seedNote}`); });
    assertDisjoint(results);
  });

  test("ESP seal and open: results are the caller's own", () => {
    const key = rng.bytes(32), salt = rng.bytes(4);
    const out = new OutboundSa({ spi: 0x5a1b, key, salt });
    const inb = new InboundSa({ spi: 0x5a1b, key, salt, replayWindow: 4096 });
    const esps: Uint8Array[] = [], inners: Uint8Array[] = [], sent: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const packet = rng.bytes(rng.range(20, 1500));
      const esp = out.seal(packet);
      assertOwnArray(esp, "OutboundSa.seal");
      const opened = inb.open(esp);
      assert.equal(opened.status, "ok");
      assertOwnArray(opened.packet!, "InboundSa.open");
      esps.push(esp);
      inners.push(opened.packet!);
      sent.push(toHex(packet));
    }
    inners.forEach((p, i) => assert.equal(toHex(p), sent[i], `inner packet ${i} changed after later calls ${seedNote}`));
    assertDisjoint([...esps, ...inners]);
    out.destroy();
    inb.destroy();
  });

  test("ownedCopy copies: the source may change afterwards", () => {
    const source = rng.bytes(1436);
    const before = toHex(source);
    const copy = ownedCopy(source);
    source.fill(0);
    assert.equal(toHex(copy), before);
    assert.notEqual(copy.buffer, source.buffer);
  });
});
