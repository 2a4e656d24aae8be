// Rekeying between two cores (RFC 7296 §1.3.2, §1.3.3, §2.8, §2.18):
// child SAs with and without PFS from either side, make-before-break (the
// responder's new outbound SA waits for the DELETE of the old child; old
// inbound SAs linger, then go), lifetimes (time, volume, the sequence number
// guard, hard expiry), the IKE SA rekeyed from either side with its children
// moving over and message IDs restarting, and `rekey` on demand.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, assertOneTunnel, type Side, type PeerSpec } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange } from "../../src/ike/constants.js";

function up(overrides: { a?: Partial<PeerSpec>; b?: Partial<PeerSpec> } = {}, options: ConstructorParameters<typeof IkeBed>[2] = {}): IkeBed {
  const peers = sitePeers(overrides);
  const bed = new IkeBed(peers.a, peers.b, options);
  bed.start();
  assert.ok(bed.runUntil(() => bed.established()));
  return bed;
}

/** Every child a side has can still open what the other side seals with (the peer's sealing child's SPI is installed here). */
function assertNoLoss(bed: IkeBed): void {
  for (const [from, to] of [[bed.a, bed.b], [bed.b, bed.a]] as [Side, Side][]) {
    for (const id of from.sealing) {
      const spi = from.children.get(id)!.outbound.spi;
      assert.ok([...to.children.values()].some((c) => c.inbound.spi === spi), `${to.name} can open what ${from.name} seals (SPI ${spi.toString(16)})`);
    }
  }
}

function exchanges(bed: IkeBed, since: number): number[] {
  return bed.wire.slice(since).map((d) => decodeMessage(d.datagram).header.exchange);
}

describe("child SA rekeying", () => {
  for (const [who, pfs] of [["a", false], ["b", false], ["a", true], ["b", true]] as const) {
    test(`rekeyed by ${who === "a" ? "the original initiator" : "the original responder"}${pfs ? " with PFS" : ""}: make-before-break, old SAs linger then go`, () => {
      const esp = pfs ? ["chacha20poly1305-x25519"] : ["chacha20poly1305"];
      const bed = up({ a: { esp }, b: { esp } });
      const [oldA] = [...bed.a.children.values()];
      const start = bed.wire.length;
      const side = bed[who];
      const other = who === "a" ? bed.b : bed.a;
      bed.apply(side, side.core.rekey(who === "a" ? "site-b" : "site-a", "child", bed.now));
      // Request and response only: the responder's new outbound SA must not seal before the DELETE.
      bed.deliverOne();
      assert.equal(other.children.size, 2, "the responder installed the new child before answering");
      assert.equal(other.sealing.size, 1);
      assert.ok(other.sealing.has([...other.children.keys()][0]!), "… but still seals with the old one");
      assertNoLoss(bed);
      bed.deliverOne();
      assert.equal(side.children.size, 2);
      assertNoLoss(bed);
      bed.flush();
      assert.deepEqual(exchanges(bed, start), [Exchange.CREATE_CHILD_SA, Exchange.CREATE_CHILD_SA, Exchange.INFORMATIONAL, Exchange.INFORMATIONAL]);
      assertOneTunnel(bed);
      assertNoLoss(bed);
      assert.equal(bed.a.children.size, 2, "the old inbound SA lingers for stragglers");
      if (pfs) {
        const request = decodeMessage(bed.wire[start]!.datagram);
        assert.ok(request.sk, "the request is encrypted");
      }
      bed.advanceBy(5001);
      assert.equal(bed.a.children.size, 1);
      assert.equal(bed.b.children.size, 1);
      assert.notEqual([...bed.a.children.values()][0]!.inbound.spi, oldA!.inbound.spi, "a new SPI");
      assertOneTunnel(bed);
    });
  }

  test("lifetimes: rekeyed every rekey_time (with jitter) for hours, never two children sealing", () => {
    const lifetime = { rekeyMs: 60_000, lifeMs: 66_000, randMs: 6000 };
    const bed = up({ a: { childLifetime: lifetime }, b: { childLifetime: { ...lifetime, rekeyMs: 120_000, lifeMs: 132_000 } } });
    const seen = new Set<number>();
    for (let minute = 0; minute < 120; minute++) {
      bed.advanceBy(60_000);
      assertNoLoss(bed);
      assert.equal(bed.a.sealing.size, 1);
      for (const c of bed.a.children.values()) seen.add(c.inbound.spi);
    }
    assertOneTunnel(bed);
    assert.ok(seen.size > 100, `rekeyed about every minute (${seen.size} SPIs in 2 h)`);
    const rekeys = bed.events(bed.a, "child-rekeying").length;
    assert.ok(rekeys > 100 && rekeys < 140, `a rekeyed on its lifetime, ${rekeys} times`);
  });

  test("volume limits and the sequence number guard rekey; life_packets deletes", () => {
    const usage = new Map<number, { bytes: number; packets: number; sentSequence: number }>();
    const peers = sitePeers({ a: { childLifetime: { rekeyPackets: 1000, lifePackets: 5000 } } });
    const bed = new IkeBed(peers.a, peers.b, { childUsage: { a: (spi) => usage.get(spi) } });
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    const first = [...bed.a.children.values()][0]!;
    usage.set(first.inbound.spi, { bytes: 1, packets: 1500, sentSequence: 800 });
    bed.advanceBy(10_001);
    assert.equal(bed.events(bed.a, "child-rekeying").length, 1, "rekeyed past rekey_packets");
    const second = [...bed.a.children.values()].find((c) => c.inbound.spi !== first.inbound.spi)!;
    usage.set(second.inbound.spi, { bytes: 1, packets: 10, sentSequence: 0.75 * 2 ** 32 });
    bed.advanceBy(10_001);
    assert.equal(bed.events(bed.a, "child-rekeying").length, 2, "rekeyed long before the 32-bit sequence number runs out");
    const third = [...bed.a.children.values()].find((c) => c.inbound.spi !== first.inbound.spi && c.inbound.spi !== second.inbound.spi)!;
    usage.set(third.inbound.spi, { bytes: 1, packets: 6000, sentSequence: 10 });
    bed.advanceBy(10_001);
    assert.ok(bed.events(bed.a, "child-down").some((e) => e.fields.reason === "volume limit reached"));
    assert.equal(bed.b.children.size, 0, "the peer got the DELETE");
  });

  test("hard expiry deletes a child that could not be rekeyed", () => {
    const bed = up({ a: { childLifetime: { rekeyMs: 60_000, lifeMs: 90_000 } }, b: { esp: ["chacha20poly1305"] } });
    // The peer refuses every rekey (it lost its ESP proposal meanwhile).
    bed.b.core.peers[0]!.espProposals[0]!.ciphers = [{ id: 20, keyBits: 256 }];
    bed.advanceBy(95_000);
    assert.ok(bed.events(bed.a, "child-rekey-failed").length >= 1);
    assert.ok(bed.events(bed.a, "child-down").some((e) => e.fields.reason === "life time reached"));
    assert.equal(bed.a.children.size, 0);
    assert.equal(bed.b.children.size, 0);
  });
});

describe("more child SAs per IKE SA", () => {
  test("a second selector pair gets a child of its own (CREATE_CHILD_SA), rekeyed on its own lifetime", () => {
    const more = { a: [{ localTs: ["10.78.1.0/24"], remoteTs: ["10.78.2.0/24"] }], b: [{ localTs: ["10.78.2.0/24"], remoteTs: ["10.78.1.0/24"] }] };
    const bed = up({ a: { moreChildren: more.a, childLifetime: { rekeyMs: 120_000, lifeMs: 130_000, randMs: 60_000 } }, b: { moreChildren: more.b } });
    bed.flush();
    assert.equal(bed.a.children.size, 2);
    assert.equal(bed.b.children.size, 2);
    const prefixes = [...bed.a.children.values()].map((c) => c.remotePrefixes.join()).sort();
    assert.deepEqual(prefixes, ["10.77.2.0/24", "10.78.2.0/24"]);
    const exchanges = bed.wire.map((d) => decodeMessage(d.datagram).header.exchange);
    assert.deepEqual(exchanges.slice(-2), [Exchange.CREATE_CHILD_SA, Exchange.CREATE_CHILD_SA]);
    // Their jittered rekey times differ: over ten minutes each is rekeyed on its own schedule, both stay up.
    const rekeyedAt = new Map<number, number[]>();
    for (let s = 0; s < 600; s += 5) {
      bed.advanceBy(5000);
      for (const e of bed.events(bed.a, "child-rekeying")) {
        const list = rekeyedAt.get(Number(e.fields.child)) ?? [];
        if (!list.includes(Number(e.fields.child))) rekeyedAt.set(Number(e.fields.child), [...list, bed.now]);
      }
      assert.equal(bed.a.sealing.size, 2, "two children seal at all times");
    }
    assert.ok(bed.events(bed.a, "child-rekeying").length >= 6, "both rekeyed several times");
    assert.equal(bed.a.children.size, 2);
    assert.equal(bed.b.children.size, 2);
  });

  test("a pair the responder does not have is refused with TS_UNACCEPTABLE; the first child stays", () => {
    const bed = up({ a: { moreChildren: [{ localTs: ["10.99.1.0/24"], remoteTs: ["10.99.2.0/24"] }] } });
    bed.flush();
    assert.equal(bed.a.children.size, 1);
    assert.ok(bed.events(bed.a, "child-failed").some((e) => e.fields.reason === "TS_UNACCEPTABLE"));
    assertOneTunnel(bed);
  });
});

describe("IKE SA rekeying", () => {
  for (const who of ["a", "b"] as const) {
    test(`rekeyed by ${who === "a" ? "the original initiator" : "the original responder"}: new SPIs, children move, message IDs restart, the old SA goes`, () => {
      const bed = up({ a: { dpdMs: 30_000 } });
      const before = bed.a.core.list()[0]!;
      const childrenBefore = [...bed.a.children.keys()];
      const side = bed[who];
      bed.apply(side, side.core.rekey(who === "a" ? "site-b" : "site-a", "ike", bed.now));
      bed.flush();
      const [a] = bed.a.core.list();
      const [b] = bed.b.core.list();
      assert.equal(bed.a.core.list().length, 1, "the old IKE SA is gone");
      assert.equal(bed.b.core.list().length, 1);
      assert.notEqual(a!.spiI, before.spiI);
      assert.equal(a!.spiI, b!.spiI);
      assert.equal(a!.spiR, b!.spiR);
      assert.equal(a!.state, "established");
      assert.equal(a!.role, who === "a" ? "initiator" : "responder", "the rekey's initiator is the new SA's initiator (§2.18)");
      assert.deepEqual(a!.children.map((c) => c.id), childrenBefore, "the children moved, untouched");
      assertOneTunnel(bed);
      // The new SA works: a liveness check on it is answered (message ID 0 again).
      const start = bed.wire.length;
      bed.advanceBy(30_001);
      const check = bed.wire.slice(start).map((d) => decodeMessage(d.datagram).header);
      assert.deepEqual(check.map((h) => [h.exchange, h.messageId]), [[Exchange.INFORMATIONAL, 0], [Exchange.INFORMATIONAL, 0]]);
      // And the children can still be rekeyed on it.
      bed.apply(bed.a, bed.a.core.rekey("site-b", "child", bed.now));
      bed.flush();
      bed.advanceBy(6000);
      assertOneTunnel(bed);
    });
  }

  test("lifetimes: the IKE SA is rekeyed every rekey_time, children untouched", () => {
    const bed = up({ a: { ikeLifetime: { rekeyMs: 600_000, lifeMs: 660_000, randMs: 60_000 } } });
    const child = [...bed.a.children.keys()];
    const spis = new Set<string>();
    for (let i = 0; i < 60; i++) {
      bed.advanceBy(60_000);
      spis.add(bed.a.core.list()[0]!.spiI);
      assert.equal(bed.a.core.list().length, 1);
    }
    assert.ok(spis.size >= 6, `rekeyed about every 10 minutes (${spis.size} SPIs in an hour)`);
    assert.deepEqual([...bed.a.children.keys()], child);
    assertOneTunnel(bed);
  });
});
