// Refusals in both roles between two cores: wrong PSK, unknown ID, no
// common proposal (IKE and ESP), unacceptable traffic selectors. Each ends
// with the notify RFC 7296 (and strongSwan) expects on the wire and a log
// line naming the reason on both sides.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, type PeerSpec } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Notify } from "../../src/ike/constants.js";
import { findNotify } from "../../src/ike/codec/payloads.js";

function run(overrides: { a?: Partial<PeerSpec>; b?: Partial<PeerSpec> }): IkeBed {
  const peers = sitePeers(overrides);
  const bed = new IkeBed(peers.a, peers.b);
  bed.start();
  bed.runUntil(() => bed.established() || bed.events(bed.a, "ike-failed").length > 0 || bed.events(bed.a, "child-failed").length > 0, 60_000);
  return bed;
}

function reasons(bed: IkeBed, side: "a" | "b", event: string): string[] {
  return bed.events(bed[side], event).map((e) => String(e.fields.reason));
}

describe("refusals", () => {
  test("wrong PSK: AUTHENTICATION_FAILED from the responder, both sides log it, no SA left", () => {
    const bed = run({ b: { psk: "another-psk-0123456789abcdef" } });
    assert.equal(bed.established(), false);
    assert.deepEqual(reasons(bed, "b", "ike-failed"), ["AUTHENTICATION_FAILED"]);
    assert.deepEqual(reasons(bed, "a", "ike-failed"), ["AUTHENTICATION_FAILED"]);
    assert.match(bed.events(bed.b, "ike-failed")[0]!.message, /does not verify \(wrong PSK\?\)/);
    assert.equal(bed.a.core.list().length, 0);
    assert.equal(bed.b.core.list().length, 0);
    assert.equal(bed.a.children.size + bed.b.children.size, 0);
  });

  test("the initiator refuses a responder whose AUTH does not verify, and tells it", () => {
    // b accepts a's PSK (per-ID secret) but authenticates itself with another one.
    const bed = run({ b: { psk: { "a.sluice.test": "sluice-test-psk-0123456789" } }, a: { psk: "sluice-test-psk-0123456789" } });
    assert.equal(bed.established(), true, "control: same secret both ways works");
    const peers = sitePeers();
    const wrong = new IkeBed(peers.a, peers.b);
    const realPsk = peers.b[0]!.psk;
    let calls = 0;
    peers.b[0]!.psk = (id) => (calls++ === 0 ? realPsk(id) : new TextEncoder().encode("not-the-psk-0123456789abcdef"));
    wrong.start();
    wrong.runUntil(() => wrong.events(wrong.b, "ike-failed").length > 0, 60_000);
    assert.deepEqual(reasons(wrong, "a", "ike-failed"), ["AUTHENTICATION_FAILED"]);
    assert.match(wrong.events(wrong.a, "ike-failed")[0]!.message, /the responder's authentication failed: the AUTH of b\.sluice\.test does not verify/);
    assert.deepEqual(reasons(wrong, "b", "ike-failed"), ["AUTHENTICATION_FAILED"], "the responder learns it from the INFORMATIONAL");
    assert.equal(wrong.a.children.size, 0);
    assert.equal(wrong.b.children.size, 0, "the responder's child is removed with its IKE SA");
  });

  test("unknown ID: AUTHENTICATION_FAILED, the responder names the ID it found no config for", () => {
    const bed = run({ a: { localId: "x.sluice.test" } });
    assert.deepEqual(reasons(bed, "b", "ike-failed"), ["AUTHENTICATION_FAILED"]);
    assert.match(bed.events(bed.b, "ike-failed")[0]!.message, /no peer config matches x\.sluice\.test/);
    assert.deepEqual(reasons(bed, "a", "ike-failed"), ["AUTHENTICATION_FAILED"]);
  });

  test("the responder's ID is not the one expected: the initiator refuses it", () => {
    const bed = run({ b: { localId: "c.sluice.test" }, a: { remoteId: "*.sluice.test" } });
    assert.equal(bed.established(), true, "a pattern accepts it");
    const strict = run({ b: { localId: "c.sluice.test" } });
    assert.equal(strict.established(), false);
    // With IDr in its request, a asks b for "b.sluice.test": b has no config for it.
    assert.deepEqual(reasons(strict, "b", "ike-failed"), ["AUTHENTICATION_FAILED"]);
  });

  test("no common IKE proposal: NO_PROPOSAL_CHOSEN in the clear, no state on the responder", () => {
    const bed = run({ a: { ike: ["aes256gcm16-prfsha256-x25519"] }, b: { ike: ["chacha20poly1305-prfsha256-x25519"] } });
    const answer = decodeMessage(bed.wire[1]!.datagram);
    assert.ok(findNotify(answer.payloads, Notify.NO_PROPOSAL_CHOSEN));
    assert.deepEqual(reasons(bed, "a", "ike-failed"), ["NO_PROPOSAL_CHOSEN"]);
    assert.deepEqual(reasons(bed, "b", "ike-refused"), ["NO_PROPOSAL_CHOSEN"]);
    assert.match(bed.events(bed.b, "ike-refused")[0]!.message, /IKE:AES_GCM_16_256\/PRF_HMAC_SHA2_256\/CURVE_25519/);
    assert.equal(bed.b.core.list().length, 0);
  });

  test("no common ESP proposal: the IKE SA stands, the child is refused with NO_PROPOSAL_CHOSEN", () => {
    const bed = run({ a: { esp: ["chacha20poly1305-esn"] }, b: { esp: ["chacha20poly1305-noesn"] } });
    assert.equal(bed.a.children.size + bed.b.children.size, 0);
    assert.deepEqual(reasons(bed, "a", "child-failed"), ["NO_PROPOSAL_CHOSEN"]);
    assert.deepEqual(reasons(bed, "b", "child-failed"), ["NO_PROPOSAL_CHOSEN"]);
    assert.equal(bed.a.core.list()[0]!.state, "established");
    assert.equal(bed.b.core.list()[0]!.state, "established");
  });

  test("traffic selectors that do not overlap: TS_UNACCEPTABLE, the IKE SA stands", () => {
    const bed = run({ a: { remoteTs: ["10.99.0.0/24"] } });
    assert.deepEqual(reasons(bed, "a", "child-failed"), ["TS_UNACCEPTABLE"]);
    assert.deepEqual(reasons(bed, "b", "child-failed"), ["TS_UNACCEPTABLE"]);
    assert.match(bed.events(bed.b, "child-failed")[0]!.message, /10\.99\.0\.0\/24 === 10\.77\.1\.0\/24 unacceptable/);
    assert.equal(bed.a.core.list()[0]!.state, "established");
  });

  test("a refused `start` peer is tried again after the retry delay", () => {
    const peers = sitePeers({ b: { psk: "another-psk-0123456789abcdef" } });
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    bed.runUntil(() => bed.events(bed.a, "ike-failed").length > 0);
    const firstAt = bed.now;
    bed.runUntil(() => bed.events(bed.a, "ike-failed").length > 1, 120_000);
    assert.equal(bed.events(bed.a, "ike-connecting").length, 2);
    assert.ok(bed.now - firstAt >= 30_000, "the second attempt waited the retry delay");
  });
});
