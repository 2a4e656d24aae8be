// INFORMATIONAL between two cores: DELETE of the IKE SA from each side,
// liveness checks (DPD) with their round trip, a dead peer cleared or
// restarted, NAT rebinding learned from authenticated messages, reloads,
// and a clean shutdown.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, peer } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange } from "../../src/ike/constants.js";

function up(bed: IkeBed): void {
  bed.start();
  assert.ok(bed.runUntil(() => bed.established()));
}

describe("INFORMATIONAL", () => {
  for (const side of ["a", "b"] as const) {
    test(`DELETE of the IKE SA from ${side === "a" ? "the initiator" : "the responder"}: both sides remove everything`, () => {
      const peers = sitePeers();
      const bed = new IkeBed(peers.a, peers.b);
      up(bed);
      const name = side === "a" ? "site-b" : "site-a";
      bed.apply(bed[side], bed[side].core.terminate(name, bed.now));
      assert.equal(bed[side].children.size, 0, "children leave the data plane at once");
      bed.flush();
      assert.equal(bed.a.children.size + bed.b.children.size, 0);
      assert.equal(bed.a.core.list().length, 0);
      assert.equal(bed.b.core.list().length, 0);
      const other = side === "a" ? bed.b : bed.a;
      assert.ok(bed.events(other, "ike-down").some((e) => e.fields.reason === "deleted by the peer"));
      assert.ok(bed.events(bed[side], "ike-down").some((e) => e.fields.reason === "deleted"));
    });
  }

  test("liveness: an empty INFORMATIONAL after dpd without traffic; its round trip is reported", () => {
    const peers = sitePeers({ a: { dpdMs: 30_000 } });
    const bed = new IkeBed(peers.a, peers.b);
    up(bed);
    const before = bed.wire.length;
    bed.advanceBy(29_000);
    assert.equal(bed.wire.length, before, "nothing before dpd seconds");
    bed.advanceBy(1_001);
    const sent = bed.wire.slice(before);
    assert.equal(sent.length, 2);
    assert.equal(decodeMessage(sent[0]!.datagram).header.exchange, Exchange.INFORMATIONAL);
    assert.deepEqual(bed.a.liveness, [0], "an RTT sample (the simulated network takes no time)");
    assert.equal(bed.a.core.list()[0]!.lastRttMs, 0);
  });

  test("liveness: traffic on the data plane postpones the check", () => {
    let lastEsp = 0;
    const peers = sitePeers({ a: { dpdMs: 30_000 } });
    const bed = new IkeBed(peers.a, peers.b, { lastInbound: { a: () => lastEsp } });
    up(bed);
    const before = bed.wire.length;
    lastEsp = bed.now + 20_000;
    bed.advanceBy(45_000);
    assert.equal(bed.wire.length, before, "ESP 20 s in moved the check to 50 s");
    bed.advanceBy(6_000);
    assert.equal(bed.wire.length, before + 2);
  });

  test("a dead peer is cleared after the retransmissions of the liveness check", () => {
    const peers = sitePeers({ a: { dpdMs: 10_000, dpdAction: "clear" } });
    const bed = new IkeBed(peers.a, peers.b, { retransmit: { timeoutMs: 1000, base: 2, tries: 3 } });
    up(bed);
    bed.drop = () => true;
    const t = bed.now;
    bed.runUntil(() => bed.a.core.list().length === 0, 120_000);
    assert.equal(bed.a.children.size, 0);
    assert.equal(bed.now - t, 10_000 + 1000 + 2000 + 4000 + 8000, "dpd, then 1+2+4 s of retransmissions and the last 8 s timeout");
    assert.ok(bed.events(bed.a, "peer-dead").length === 1);
    assert.equal(bed.events(bed.a, "ike-connecting").length, 1, "clear does not reconnect");
  });

  test("dpd_action restart: a dead peer is reconnected, and the tunnel is back once the peer is", () => {
    const peers = sitePeers({ a: { dpdMs: 10_000, dpdAction: "restart" } });
    const bed = new IkeBed(peers.a, peers.b, { retransmit: { timeoutMs: 1000, base: 2, tries: 3 } });
    up(bed);
    bed.drop = () => true;
    bed.runUntil(() => bed.events(bed.a, "peer-dead").length === 1, 120_000);
    // The peer restarts with no state, and the network comes back a while later.
    const fresh = sitePeers();
    const restarted = new IkeBed(fresh.a, fresh.b);
    (bed as unknown as { b: unknown }).b = restarted.b;
    bed.advanceBy(20_000);
    assert.equal(bed.a.children.size, 0);
    bed.drop = () => false;
    assert.ok(bed.runUntil(() => bed.a.children.size === 1 && bed.b.children.size === 1, 120_000), "reconnected");
    assert.ok(bed.events(bed.a, "ike-connecting").length >= 2);
  });

  test("dpd_action restart: the peer deletes the IKE SA (a gateway restarting): connected again after a second; clear stays down", () => {
    for (const action of ["restart", "clear"] as const) {
      const peers = sitePeers({ a: { dpdAction: action } });
      const bed = new IkeBed(peers.a, peers.b);
      up(bed);
      bed.apply(bed.b, bed.b.core.terminate("site-a", bed.now));
      bed.flush();
      assert.equal(bed.a.core.list().length, 0, action);
      if (action === "clear") {
        bed.advanceBy(60_000);
        assert.equal(bed.events(bed.a, "ike-connecting").length, 1, "clear: no reconnect");
        assert.equal(bed.a.children.size, 0);
        continue;
      }
      assert.equal(bed.events(bed.a, "ike-reconnect").length, 1);
      bed.advanceBy(999);
      assert.equal(bed.events(bed.a, "ike-connecting").length, 1, "not before the second");
      assert.ok(bed.runUntil(() => bed.a.children.size === 1 && bed.b.children.size === 1, 10_000), "reconnected");
      assert.equal(bed.events(bed.a, "ike-connecting").length, 2);
    }
  });

  test("NAT rebinding: an authenticated message from a new port moves the SA and ESP follows", () => {
    const peers = sitePeers({ a: { dpdMs: 10_000 } });
    const bed = new IkeBed(peers.a, peers.b, { natA: { address: "198.51.100.7" } });
    up(bed);
    bed.natPort = 50000;
    bed.advanceBy(10_001);
    const moved = bed.b.actions.filter((a) => a.type === "address");
    assert.equal(moved.length, 1);
    assert.deepEqual(moved[0]!.type === "address" && moved[0]!.remote, { address: "198.51.100.7", port: 50001 });
    assert.equal(bed.b.core.list()[0]!.remote, "198.51.100.7:50001");
  });

  test("an unauthenticated message from a new address moves nothing", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b, { natA: { address: "198.51.100.7" } });
    up(bed);
    const auth = bed.wire.find((d) => d.from === bed.a && decodeMessage(d.datagram).header.exchange === Exchange.IKE_AUTH)!;
    const forged = auth.datagram.slice();
    forged[forged.length - 1]! ^= 1;
    bed.apply(bed.b, bed.b.core.receive(forged, { ...auth.path, remote: { address: "203.0.113.66", port: 4500 } }, bed.now));
    assert.equal(bed.b.actions.filter((a) => a.type === "address").length, 0);
    assert.equal(bed.b.core.list()[0]!.remote, "198.51.100.7:40001");
  });

  test("a reload keeps unchanged peers' SAs and deletes changed ones", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b);
    up(bed);
    const [config] = peers.a;
    bed.apply(bed.a, bed.a.core.setPeers([{ ...config!, signature: "v1" }], bed.now));
    bed.flush();
    // The first setPeers gives signatures to peers that had none: that counts as a change.
    bed.runUntil(() => bed.established());
    const before = bed.a.core.list()[0]!.id;
    bed.apply(bed.a, bed.a.core.setPeers([{ ...config!, signature: "v1" }], bed.now));
    bed.flush();
    assert.equal(bed.a.core.list()[0]!.id, before, "unchanged: same IKE SA");
    bed.apply(bed.a, bed.a.core.setPeers([{ ...config!, signature: "v2" }], bed.now));
    bed.runUntil(() => bed.established() && bed.a.core.list().every((s) => s.id !== before));
    assert.ok(bed.a.core.list().every((s) => s.id !== before), "changed: replaced");
  });

  test("shutdown sends a DELETE for every established IKE SA", () => {
    const peers = sitePeers();
    peers.a.push(peer({ name: "second", remote: "10.0.0.2", localId: "a2.sluice.test", remoteId: "b.sluice.test", psk: "sluice-test-psk-0123456789", localTs: ["10.77.3.0/24"], remoteTs: ["10.77.2.0/24"], start: "start" }));
    peers.b.push(peer({ name: "site-a2", localId: "b.sluice.test", remoteId: "a2.sluice.test", psk: "sluice-test-psk-0123456789", localTs: ["10.77.2.0/24"], remoteTs: ["10.77.3.0/24"] }));
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.a.children.size === 2 && bed.b.children.size === 2));
    const actions = bed.a.core.shutdown(bed.now);
    assert.equal(actions.filter((a) => a.type === "send").length, 2);
    bed.apply(bed.a, actions);
    bed.flush();
    assert.equal(bed.b.core.list().length, 0, "the peer removed both");
    assert.equal(bed.a.core.list().length, 0);
  });
});
