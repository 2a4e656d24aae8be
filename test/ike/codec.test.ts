// The IKE codec: every payload type through encode → decode → encode gives
// the same bytes; the SK payload seals with the AAD RFC 5282 §5.1 names and
// refuses a wrong ICV; malformed structures throw ParseError with a reason.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ByteWriter, ParseError } from "../../src/ike/codec/bytes.js";
import { decodeMessage, decodeInner, encodeChain, encodeMessage, openSk } from "../../src/ike/codec/message.js";
import { decodePayload, encodePayloadBody, type IkePayload } from "../../src/ike/codec/payloads.js";
import { Exchange, Flag, Payload, Protocol, TransformType, TsType } from "../../src/ike/constants.js";
import { SkCipher } from "../../src/ike/sk.js";

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

const samples: IkePayload[] = [
  {
    type: Payload.SA,
    proposals: [
      { number: 1, protocol: Protocol.IKE, spi: new Uint8Array(0), transforms: [{ type: TransformType.ENCR, id: 20, keyLength: 256 }, { type: TransformType.PRF, id: 5 }, { type: TransformType.KE, id: 31 }] },
      { number: 2, protocol: Protocol.ESP, spi: bytes(1, 2, 3, 4), transforms: [{ type: TransformType.ENCR, id: 28 }, { type: TransformType.ESN, id: 1 }] },
    ],
  },
  { type: Payload.KE, group: 31, data: new Uint8Array(32).fill(7) },
  { type: Payload.IDi, idType: 2, data: new TextEncoder().encode("a.sluice.test") },
  { type: Payload.IDr, idType: 1, data: bytes(192, 0, 2, 1) },
  { type: Payload.CERT, encoding: 4, data: bytes(0x30, 0x03, 1, 2, 3) },
  { type: Payload.CERTREQ, encoding: 4, data: new Uint8Array(20).fill(9) },
  { type: Payload.AUTH, method: 2, data: new Uint8Array(32).fill(5) },
  { type: Payload.NONCE, data: new Uint8Array(32).fill(3) },
  { type: Payload.NOTIFY, protocol: 3, spi: bytes(0, 0, 1, 0), notifyType: 16393, data: new Uint8Array(0) },
  { type: Payload.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: 16388, data: new Uint8Array(20).fill(1) },
  { type: Payload.DELETE, protocol: Protocol.ESP, spiSize: 4, spis: [bytes(0, 0, 1, 0), bytes(0, 0, 2, 0)] },
  { type: Payload.DELETE, protocol: Protocol.IKE, spiSize: 0, spis: [] },
  { type: Payload.VENDOR, data: new TextEncoder().encode("sluice") },
  {
    type: Payload.TSi,
    selectors: [
      { tsType: TsType.IPV4_ADDR_RANGE, protocol: 0, startPort: 0, endPort: 65535, start: bytes(10, 77, 1, 0), end: bytes(10, 77, 1, 255) },
      { tsType: TsType.IPV6_ADDR_RANGE, protocol: 6, startPort: 443, endPort: 443, start: new Uint8Array(16), end: new Uint8Array(16).fill(255) },
    ],
  },
  { type: Payload.TSr, selectors: [{ tsType: TsType.IPV4_ADDR_RANGE, protocol: 17, startPort: 500, endPort: 4500, start: bytes(0, 0, 0, 0), end: bytes(255, 255, 255, 255) }] },
  { type: Payload.CP, cfgType: 1, attributes: [{ type: 1, value: new Uint8Array(0) }, { type: 3, value: bytes(10, 0, 0, 1) }] },
  { type: Payload.EAP, data: bytes(1, 2, 0, 4) },
];

function bodyOf(payload: IkePayload): Uint8Array {
  const w = new ByteWriter(8);
  encodePayloadBody(w, payload);
  return w.finish();
}

describe("IKE codec", () => {
  for (const sample of samples) {
    test(`payload ${sample.type} round trip`, () => {
      const body = bodyOf(sample);
      const decoded = decodePayload(sample.type, false, body);
      assert.deepEqual(bodyOf(decoded), body);
      const { body: _ignored, ...shape } = decoded as IkePayload & { body?: Uint8Array };
      assert.deepEqual(JSON.parse(JSON.stringify(shape)), JSON.parse(JSON.stringify(sample)));
    });
  }

  test("a message with a chain of every payload type round-trips", () => {
    const datagram = encodeMessage({ spiI: 0x0102030405060708n, spiR: 0n, exchange: Exchange.IKE_SA_INIT, flags: Flag.INITIATOR, messageId: 0 }, samples);
    const decoded = decodeMessage(datagram);
    assert.equal(decoded.header.length, datagram.length);
    assert.equal(decoded.payloads.length, samples.length);
    const again = encodeMessage({ spiI: 0x0102030405060708n, spiR: 0n, exchange: Exchange.IKE_SA_INIT, flags: Flag.INITIATOR, messageId: 0 }, decoded.payloads);
    assert.deepEqual(again, datagram);
  });

  test("the SK payload: sealed with header ‖ SK header as AAD, opened, refused when any byte changes", () => {
    const keymat = new Uint8Array(36).fill(0x42);
    const inner = samples.slice(2, 8);
    const fields = { spiI: 1n, spiR: 2n, exchange: Exchange.IKE_AUTH, flags: Flag.INITIATOR, messageId: 1 };
    const datagram = encodeMessage(fields, [], { payloads: inner, sealer: new SkCipher(28, keymat.slice()) });
    const decoded = decodeMessage(datagram);
    assert.ok(decoded.sk);
    assert.equal(decoded.sk.headerAt, 28);
    const opened = openSk(decoded, new SkCipher(28, keymat.slice()));
    assert.ok(opened);
    assert.equal(opened.length, inner.length);
    for (let i = 0; i < datagram.length; i++) {
      const tampered = datagram.slice();
      tampered[i]! ^= 1;
      let result: IkePayload[] | null | "parse-error";
      try {
        result = openSk(decodeMessage(tampered), new SkCipher(28, keymat.slice()));
      } catch (error) {
        assert.ok(error instanceof ParseError);
        result = "parse-error";
      }
      assert.ok(result === null || result === "parse-error", `byte ${i} flipped was accepted`);
    }
  });

  test("malformed structures name their reason", () => {
    const cases: [Uint8Array, number, string][] = [
      [bytes(0, 0, 0, 12, 1, 1, 0, 1, 0, 0, 0, 8), Payload.SA, "truncated"], // a proposal claims 12 bytes, the transform is missing
      [bytes(5, 0, 0, 8, 1, 1, 0, 0), Payload.SA, "invalid-syntax"], // "last substruc" of 5
      [bytes(0, 0, 0, 200, 1, 1, 0, 0), Payload.SA, "bad-length"],
      [bytes(0, 31), Payload.KE, "truncated"],
      [new Uint8Array(15), Payload.NONCE, "bad-length"],
      [bytes(3, 4, 0, 2, 0, 0, 1), Payload.DELETE, "bad-length"],
      [bytes(1, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0), Payload.TSi, "bad-length"],
      [bytes(0, 4, 0, 1), Payload.NOTIFY, "truncated"],
    ];
    for (const [body, type, reason] of cases) {
      assert.throws(() => decodePayload(type, false, body), (e: unknown) => e instanceof ParseError && e.reason === reason, `${type}: ${reason}`);
    }
    assert.throws(() => decodePayload(200, true, new Uint8Array(0)), (e: unknown) => e instanceof ParseError && e.reason === "unsupported-critical");
    assert.equal((decodePayload(200, false, bytes(1)) as { unknown?: boolean }).unknown, true);
    assert.throws(() => decodeInner(Payload.NONCE, bytes(1, 2, 9)), (e: unknown) => e instanceof ParseError && e.reason === "invalid-syntax", "pad length beyond the plaintext");
    const w = new ByteWriter();
    encodeChain(w, [samples[7]!]);
    w.u8(0);
    assert.equal(decodeInner(Payload.NONCE, w.finish()).length, 1);
  });
});
