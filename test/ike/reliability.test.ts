// The reliable exchange of RFC 7296 §2.1–§2.4 between two cores: loss,
// duplicates, retransmission timing, the response cache, message-ID windows,
// half-open expiry and giving up.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange } from "../../src/ike/constants.js";
import { Rng, SEED } from "../helpers.js";

function exchangeOf(datagram: Uint8Array): number {
  return decodeMessage(datagram).header.exchange;
}

describe("reliable exchanges", () => {
  test("30% loss both ways: handshakes still complete, by retransmission, each processed once", () => {
    let retransmits = 0;
    for (let round = 0; round < 20; round++) {
      const rng = new Rng(SEED + round);
      const peers = sitePeers();
      const bed = new IkeBed(peers.a, peers.b, { seed: SEED + round });
      bed.drop = () => rng.int(100) < 30;
      bed.start();
      assert.ok(bed.runUntil(() => bed.established(), 900_000), `round ${round} (seed ${SEED}) established`);
      // Each IKE_AUTH made one child, however often it was retransmitted (an attempt given up after
      // its last retransmission may leave a child on the responder, under its own IKE SA).
      for (const side of [bed.a, bed.b]) {
        const perSa = bed.events(side, "child-up").map((e) => e.fields.ikeSa);
        assert.equal(new Set(perSa).size, perSa.length, `${side.name}: one child per IKE SA (seed ${SEED + round})`);
      }
      assert.equal(bed.a.children.size, 1, "the initiator has one tunnel");
      retransmits += bed.a.core.counters.retransmits;
    }
    assert.ok(retransmits > 0, "some rounds needed retransmissions");
  });

  test("every datagram duplicated: the copies get the cached response, counted, never processed twice", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b);
    const original = bed.drop;
    bed.drop = (d, i) => {
      bed.queue.push(d); // deliver twice: once here, once by the caller
      return original(d, i);
    };
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    bed.drop = original;
    bed.flush();
    assert.equal(bed.b.actions.filter((a) => a.type === "child-up").length, 1);
    assert.equal(bed.a.actions.filter((a) => a.type === "child-up").length, 1);
    assert.ok(bed.b.core.counters.cachedResponses >= 2, `responder answered duplicates from the cache (${bed.b.core.counters.cachedResponses})`);
    assert.ok((bed.a.core.counters.drops["unexpected-response"] ?? 0) >= 1, "duplicate responses are ignored and counted");
  });

  test("retransmissions follow 4 s × 1.8^n, five of them, then the attempt is given up", () => {
    const peers = sitePeers({ a: { start: "none" } });
    const bed = new IkeBed(peers.a, peers.b);
    bed.drop = () => true; // the responder never hears anything
    const t0 = bed.now;
    bed.apply(bed.a, bed.a.core.initiate("site-b", t0));
    bed.runUntil(() => bed.events(bed.a, "ike-failed").length > 0);
    const sentAt = bed.a.actions.map((a, i) => ({ a, i })).filter(({ a }) => a.type === "send");
    assert.equal(sentAt.length, 6, "the request and five retransmissions");
    const times = bed.wire.map((_, i) => i); // one wire entry per send
    assert.equal(times.length, 6);
    const retransmitEvents = bed.events(bed.a, "ike-retransmit");
    assert.equal(retransmitEvents.length, 5);
    // Retransmission n leaves at t0 + 4 s × (1 + 1.8 + … + 1.8^(n-1)); failure after the last timeout.
    const expected: number[] = [];
    let at = t0;
    for (let n = 0; n < 6; n++) {
      at += 4000 * 1.8 ** n;
      expected.push(Math.round(at - t0));
    }
    assert.equal(Math.round(bed.now - t0), expected[5], "given up when the fifth retransmission timed out (about 165 s)");
    assert.equal(bed.a.core.counters.handshakesFailed.TIMEOUT, 1);
    assert.equal(bed.a.core.list().length, 0, "nothing left behind");
  });

  test("a configured policy is followed (1 s × 2^n, 2 tries)", () => {
    const peers = sitePeers({ a: { start: "none" } });
    const bed = new IkeBed(peers.a, peers.b, { retransmit: { timeoutMs: 1000, base: 2, tries: 2 } });
    bed.drop = () => true;
    const t0 = bed.now;
    bed.apply(bed.a, bed.a.core.initiate("site-b", t0));
    bed.runUntil(() => bed.events(bed.a, "ike-failed").length > 0);
    assert.equal(bed.wire.length, 3);
    assert.equal(bed.now - t0, 1000 + 2000 + 4000);
  });

  test("a half-open responder SA expires (IKE_AUTH never arrives)", () => {
    const peers = sitePeers({ a: { start: "none" } });
    const bed = new IkeBed(peers.a, peers.b, { retransmit: { timeoutMs: 60_000, tries: 0 } });
    bed.drop = (d) => exchangeOf(d.datagram) === Exchange.IKE_AUTH;
    bed.apply(bed.a, bed.a.core.initiate("site-b", bed.now));
    bed.flush();
    assert.equal(bed.b.core.list()[0]!.state, "half-open");
    bed.advanceBy(29_000);
    assert.equal(bed.b.core.list().length, 1);
    bed.advanceBy(2_000);
    assert.equal(bed.b.core.list().length, 0, "forgotten after 30 s");
    assert.equal(bed.b.core.counters.drops["half-open-expired"], 1);
  });

  test("a response to nothing and a request outside the window are ignored and counted", () => {
    const peers = sitePeers({ a: { dpdMs: 10_000 }, b: { dpdMs: 0 } });
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    // Two liveness checks from a: messages 2 and 3.
    bed.advanceBy(10_001);
    bed.advanceBy(10_001);
    const informational = bed.wire.filter((d) => exchangeOf(d.datagram) === Exchange.INFORMATIONAL);
    assert.equal(informational.length, 4, "two requests and two responses");
    const [firstRequest, firstResponse] = informational;
    // Replay message 2 (a request whose response is no longer cached) and its response.
    bed.apply(bed.b, bed.b.core.receive(firstRequest!.datagram, firstRequest!.path, bed.now));
    bed.apply(bed.a, bed.a.core.receive(firstResponse!.datagram, firstResponse!.path, bed.now));
    assert.equal(bed.b.core.counters.drops["message-id-out-of-window"], 1);
    assert.equal(bed.a.core.counters.drops["unexpected-response"], 1);
    assert.equal(bed.a.core.list()[0]!.state, "established");
    assert.equal(bed.b.core.list()[0]!.state, "established");
  });
});
