// IKE_SA_INIT + IKE_AUTH between two sluice IKE cores (sans-I/O, one
// process, simulated clock): every IKE cipher, PRF and group; child keys and
// SPIs that match across the two sides; narrowing; identities of every type;
// NAT detection and the float to 4500; INVALID_KE_PAYLOAD with retry.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, peer } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange, Notify, Payload } from "../../src/ike/constants.js";
import { findNotify } from "../../src/ike/codec/payloads.js";
import { natHash } from "../../src/ike/natDetection.js";
import { createHash } from "node:crypto";

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function established(bed: IkeBed): void {
  bed.start();
  assert.ok(bed.runUntil(() => bed.established()), "both sides have a child SA");
}

/** The two sides' child SAs are mirror images: a's outbound is b's inbound, keys included. */
function assertMirrored(bed: IkeBed): void {
  const [a] = [...bed.a.children.values()];
  const [b] = [...bed.b.children.values()];
  assert.ok(a && b);
  assert.equal(a.outbound.spi, b.inbound.spi);
  assert.equal(a.inbound.spi, b.outbound.spi);
  assert.equal(toHex(a.outbound.key), toHex(b.inbound.key));
  assert.equal(toHex(a.outbound.salt), toHex(b.inbound.salt));
  assert.equal(toHex(a.inbound.key), toHex(b.outbound.key));
  assert.notEqual(toHex(a.inbound.key), toHex(a.outbound.key), "each direction has its own key");
  assert.deepEqual(a.localPrefixes, b.remotePrefixes);
  assert.deepEqual(a.remotePrefixes, b.localPrefixes);
}

describe("IKE_SA_INIT + IKE_AUTH between two cores", () => {
  test("PSK, ChaCha20-Poly1305, X25519: one round trip each, mirrored child SAs", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b);
    established(bed);
    assertMirrored(bed);
    const exchanges = bed.wire.map((d) => decodeMessage(d.datagram).header.exchange);
    assert.deepEqual(exchanges, [Exchange.IKE_SA_INIT, Exchange.IKE_SA_INIT, Exchange.IKE_AUTH, Exchange.IKE_AUTH]);
    // §2.23: IKE_SA_INIT on 500, IKE_AUTH floated to 4500 (sluice always signals a NAT).
    assert.deepEqual(bed.wire.map((d) => d.path.natT), [false, false, true, true]);
    const [a] = bed.a.core.list();
    const [b] = bed.b.core.list();
    assert.equal(a!.state, "established");
    assert.equal(b!.state, "established");
    assert.equal(a!.ike, "chacha20poly1305/prfsha256/curve25519");
    assert.equal(a!.remoteId, "b.sluice.test");
    assert.equal(b!.remoteId, "a.sluice.test");
    assert.equal(a!.spiI, b!.spiI);
    assert.equal(a!.spiR, b!.spiR);
    assert.equal(bed.a.core.counters.handshakesCompleted, 1);
    assert.equal(bed.b.core.counters.handshakesCompleted, 1);
    // The first request carries the NAT detection and hash-algorithm notifies.
    const first = decodeMessage(bed.wire[0]!.datagram).payloads;
    for (const type of [Notify.NAT_DETECTION_SOURCE_IP, Notify.NAT_DETECTION_DESTINATION_IP, Notify.SIGNATURE_HASH_ALGORITHMS]) assert.ok(findNotify(first, type), `notify ${type}`);
    assert.equal(first.filter((p) => p.type === Payload.SA).length, 1);
  });

  const matrix: [string, string][] = [
    ["chacha20poly1305-prfsha256-x25519", "chacha20poly1305/prfsha256/curve25519"],
    ["aes128gcm16-prfsha256-ecp256", "aes128gcm16/prfsha256/ecp256"],
    ["aes256gcm16-prfsha384-ecp384", "aes256gcm16/prfsha384/ecp384"],
    ["aes256gcm16-prfsha512-modp2048", "aes256gcm16/prfsha512/modp2048"],
    ["chacha20poly1305-prfsha512-modp3072", "chacha20poly1305/prfsha512/modp3072"],
    ["aes128gcm16-prfsha384-x25519", "aes128gcm16/prfsha384/curve25519"],
  ];
  for (const [proposal, expected] of matrix) {
    test(`IKE proposal ${proposal}`, () => {
      const peers = sitePeers({ a: { ike: [proposal] }, b: { ike: [proposal] } });
      const bed = new IkeBed(peers.a, peers.b);
      established(bed);
      assertMirrored(bed);
      assert.equal(bed.a.core.list()[0]!.ike, expected);
      assert.equal(bed.b.core.list()[0]!.ike, expected);
    });
  }

  test("ESN negotiated when both offer it, not when the responder only has noesn", () => {
    for (const [espA, espB, esn] of [[["chacha20poly1305-esn"], ["chacha20poly1305-esn-noesn"], true], [["chacha20poly1305-esn-noesn"], ["chacha20poly1305"], false]] as const) {
      const peers = sitePeers({ a: { esp: [...espA] }, b: { esp: [...espB] } });
      const bed = new IkeBed(peers.a, peers.b);
      established(bed);
      assert.equal([...bed.a.children.values()][0]!.esn, esn);
      assert.equal([...bed.b.children.values()][0]!.esn, esn);
    }
  });

  test("AES-GCM-16 ESP (RFC 4106) is negotiated and installed: 128/256-bit keys and a 4-byte salt per direction (§8.1), mirrored", () => {
    const cases = [
      { a: ["aes128gcm16-esn"], b: ["chacha20poly1305-aes256gcm16-aes128gcm16-esn-noesn"], keyBits: 128, esn: true },
      { a: ["aes256gcm16"], b: ["chacha20poly1305-aes256gcm16-aes128gcm16-esn-noesn"], keyBits: 256, esn: false },
      // The responder (b) takes its own first choice that the initiator offers.
      { a: ["aes256gcm16-aes128gcm16-x25519"], b: ["aes128gcm16-aes256gcm16-x25519"], keyBits: 128, esn: false },
      { a: ["chacha20poly1305-aes256gcm16-aes128gcm16-esn-noesn"], b: ["aes128gcm16-esn"], keyBits: 128, esn: true },
    ];
    for (const { a, b, keyBits, esn } of cases) {
      const peers = sitePeers({ a: { esp: a }, b: { esp: b } });
      const bed = new IkeBed(peers.a, peers.b);
      established(bed);
      const childA = [...bed.a.children.values()][0]!;
      const childB = [...bed.b.children.values()][0]!;
      for (const child of [childA, childB]) {
        assert.deepEqual(child.cipher, { id: 20, keyBits }, `${a} / ${b}`);
        assert.equal(child.esn, esn);
        assert.equal(child.outbound.key.length, keyBits / 8);
        assert.equal(child.outbound.salt.length, 4);
        assert.equal(child.inbound.key.length, keyBits / 8);
      }
      assert.deepEqual(childA.outbound.key, childB.inbound.key, "a's outbound key is b's inbound key");
      assert.deepEqual(childA.outbound.salt, childB.inbound.salt);
      assert.notDeepEqual(childA.outbound.key, childA.inbound.key);
    }
  });

  test("the responder narrows wide selectors to its own (§2.9)", () => {
    const peers = sitePeers({ a: { localTs: ["10.77.0.0/16"], remoteTs: ["10.0.0.0/8"] }, b: { localTs: ["10.77.2.0/24"], remoteTs: ["10.77.1.0/24"] } });
    const bed = new IkeBed(peers.a, peers.b);
    established(bed);
    const [a] = [...bed.a.children.values()];
    assert.deepEqual(a!.localPrefixes, ["10.77.1.0/24"]);
    assert.deepEqual(a!.remotePrefixes, ["10.77.2.0/24"]);
    assertMirrored(bed);
  });

  test("identities of every type: IPv4, IPv6, FQDN, RFC 822, KEY_ID", () => {
    for (const [idA, idB] of [["192.0.2.1", "192.0.2.2"], ["2001:db8::1", "2001:db8::2"], ["@a.example", "b.example"], ["alice@example.org", "gw@example.org"], ["keyid:#0a0b0c", "keyid:gateway-1"]]) {
      const peers = sitePeers({ a: { localId: idA, remoteId: idB }, b: { localId: idB, remoteId: idA } });
      const bed = new IkeBed(peers.a, peers.b);
      established(bed);
      assertMirrored(bed);
    }
  });

  test("a responder matches many initiators by pattern, each with its own secret", () => {
    const gateway = [peer({ name: "clients", localId: "gw.example", remoteId: "*@example.org", psk: { "alice@example.org": "alice-secret-0123456789abcdef", "bob@example.org": "bob-secret-0123456789abcdef" }, localTs: ["10.77.2.0/24"], remoteTs: ["10.77.0.0/16"] })];
    for (const [who, secret, ok] of [["alice@example.org", "alice-secret-0123456789abcdef", true], ["bob@example.org", "bob-secret-0123456789abcdef", true], ["bob@example.org", "alice-secret-0123456789abcdef", false], ["eve@example.org", "eve-secret-0123456789abcdef", false]] as const) {
      const client = [peer({ name: "gw", remote: "10.0.0.2", localId: who, remoteId: "gw.example", psk: secret, localTs: ["10.77.1.0/24"], remoteTs: ["10.77.2.0/24"], start: "start" })];
      const bed = new IkeBed(client, gateway);
      bed.start();
      bed.runUntil(() => bed.established() || bed.events(bed.a, "ike-failed").length > 0);
      assert.equal(bed.established(), ok, who);
      if (ok) assert.equal(bed.b.core.list()[0]!.remoteId, who);
    }
  });

  test("INVALID_KE_PAYLOAD: the initiator retries with the group the responder asks for", () => {
    const peers = sitePeers({ a: { ike: ["chacha20poly1305-prfsha256-x25519-ecp384"] }, b: { ike: ["chacha20poly1305-prfsha256-ecp384"] } });
    const bed = new IkeBed(peers.a, peers.b);
    established(bed);
    assert.equal(bed.a.core.list()[0]!.ike, "chacha20poly1305/prfsha256/ecp384");
    const second = decodeMessage(bed.wire[1]!.datagram);
    const invalidKe = findNotify(second.payloads, Notify.INVALID_KE_PAYLOAD);
    assert.ok(invalidKe, "the responder's first answer is INVALID_KE_PAYLOAD");
    assert.deepEqual([...invalidKe.data], [0, 20]);
    assert.equal(bed.events(bed.a, "ike-invalid-ke").length, 1);
    assert.equal(bed.b.core.list().length, 1, "the refusal kept no state on the responder");
  });

  test("the KE group of the request is taken when the responder accepts it, sparing a round trip", () => {
    const peers = sitePeers({ a: { ike: ["aes256gcm16-prfsha256-ecp256-x25519"] }, b: { ike: ["aes256gcm16-prfsha256-x25519-ecp256"] } });
    const bed = new IkeBed(peers.a, peers.b);
    established(bed);
    assert.equal(bed.wire.length, 4);
    assert.equal(bed.a.core.list()[0]!.ike, "aes256gcm16/prfsha256/ecp256");
  });

  test("NAT detection: a NAT in front of the initiator is seen by both sides; keepalives asked for", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b, { natA: { address: "198.51.100.7" } });
    established(bed);
    const [a] = bed.a.core.list();
    const [b] = bed.b.core.list();
    assert.equal(a!.natLocal, true, "the initiator knows it is behind a NAT");
    assert.equal(b!.natRemote, true, "the responder knows the initiator is behind a NAT");
    assert.equal(b!.natLocal, false);
    assert.equal([...bed.a.children.values()][0]!.keepalive, true);
    assert.equal([...bed.b.children.values()][0]!.keepalive, false);
    // The responder sends ESP to the NAT's mapping of the initiator's NAT-T port.
    assert.deepEqual([...bed.b.children.values()][0]!.remote, { address: "198.51.100.7", port: 40001 });
  });
});

describe("NAT detection hashes (RFC 7296 §2.23)", () => {
  test("SHA-1 of SPIi | SPIr | IP | port, IPv4 and IPv6, as node:crypto computes it over the same bytes", () => {
    const spiI = 0x0123456789abcdefn;
    const spiR = 0xfedcba9876543210n;
    const cases: [string, number, string][] = [["192.0.2.7", 500, "c0000207"], ["2001:db8::1", 4500, "20010db8000000000000000000000001"]];
    for (const [address, port, hex] of cases) {
      const expected = createHash("sha1").update(Buffer.from(`0123456789abcdeffedcba9876543210${hex}${port.toString(16).padStart(4, "0")}`, "hex")).digest("hex");
      assert.equal(toHex(natHash(spiI, spiR, { address, port })), expected, address);
    }
  });
});
