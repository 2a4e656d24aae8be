// Proves sluice's ESP and AEAD reproduce RFC 7634's known answers: the
// tunnel-mode ESP packet of Appendix A opens to its inner packet and is
// sealed byte for byte (with the RFC's fixed IV), replaying it is refused,
// and the IKEv2 SK payload of Appendix B seals and opens through
// src/crypto.ts.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { OutboundSa, InboundSa } from "../../src/esp.js";
import { seal, open } from "../../src/crypto.js";
import { hex, toHex, concat, loadVector } from "../helpers.js";

const vectors = loadVector("rfc7634.json");

describe("RFC 7634 Appendix A: ESP", () => {
  const e = vectors.esp;
  const spi = parseInt(e.spi, 16);
  const key = hex(e.key), salt = hex(e.salt);
  const inner = hex(e.innerPacket);
  const espPacket = hex(e.espPacket);

  test("the vector is self-consistent (noble, and the RFC 4303 framing)", () => {
    assert.equal(spi, 0x01020304);
    assert.equal(toHex(espPacket), e.spi + e.seq.toString(16).padStart(8, "0") + e.iv + e.ciphertext + e.tag);
    assert.equal(e.plaintextWithTrailer, e.innerPacket + e.padding + e.padLength.toString(16).padStart(2, "0") + e.nextHeader.toString(16).padStart(2, "0"));
    assert.equal(e.nonce, e.salt + e.iv);
    const sealed = chacha20poly1305(hex(e.key), hex(e.nonce), hex(e.aad)).encrypt(hex(e.plaintextWithTrailer));
    assert.equal(toHex(sealed), e.ciphertext + e.tag);
  });

  test("opening the packet yields ok, the inner packet and next header 4", () => {
    const inb = new InboundSa({ spi, key, salt });
    const r = inb.open(espPacket);
    assert.equal(r.status, "ok");
    assert.ok(r.packet);
    assert.equal(toHex(r.packet), e.innerPacket);
    assert.equal(r.nextHeader, 4);
    assert.equal(r.seq, BigInt(e.seq));
    assert.equal(inb.seq, 5n, "the window's top moved to 5");
    inb.destroy();
  });

  test("sealing the inner packet with seq 5 and the RFC's IV reproduces it byte for byte", () => {
    const out = new OutboundSa({ spi, key, salt });
    const sealed = out.seal(inner, 4, { seq: 5n, iv: 0x1011121314151617n });
    assert.equal(toHex(sealed), e.espPacket);
    assert.equal(out.seq, 0n, "a known-answer seal does not consume the SA's counter");
    out.destroy();
  });

  test("opening it a second time gives replay, and nothing else", () => {
    const inb = new InboundSa({ spi, key, salt });
    assert.equal(inb.open(espPacket).status, "ok");
    const again = inb.open(espPacket);
    assert.equal(again.status, "replay");
    assert.equal(again.packet, undefined);
    assert.equal(again.nextHeader, undefined);
    inb.destroy();
  });

  test("a different salt or key does not authenticate", () => {
    const otherSalt = salt.slice();
    otherSalt[3] ^= 1;
    assert.equal(new InboundSa({ spi, key, salt: otherSalt }).open(espPacket).status, "auth");
    const otherKey = key.slice();
    otherKey[0] ^= 1;
    assert.equal(new InboundSa({ spi, key: otherKey, salt }).open(espPacket).status, "auth");
  });
});

describe("RFC 7634 Appendix B: IKEv2 SK payload", () => {
  const k = vectors.ike;
  const key = hex(k.key);
  const nonce = concat(hex(k.salt), hex(k.iv));
  const aad = hex(k.aad);
  const pt = hex(k.plaintext);

  test("seal reproduces ciphertext ‖ tag", () => {
    assert.equal(toHex(nonce), "a0a1a2a31011121314151617");
    assert.equal(toHex(seal(key, nonce, aad, pt)), k.ciphertext + k.tag);
    assert.equal(toHex(chacha20poly1305(key, nonce, aad).encrypt(pt)), k.ciphertext + k.tag, "vector vs noble");
  });

  test("open recovers the plaintext and rejects a modified AAD or tag", () => {
    const sealed = hex(k.ciphertext + k.tag);
    const opened = open(key, nonce, aad, sealed);
    assert.ok(opened !== null);
    assert.equal(toHex(opened), k.plaintext);
    const badAad = aad.slice();
    badAad[aad.length - 1] ^= 1;
    assert.equal(open(key, nonce, badAad, sealed), null);
    const badTag = sealed.slice();
    badTag[sealed.length - 1] ^= 1;
    assert.equal(open(key, nonce, aad, badTag), null);
  });
});
