// IKE message fragmentation (RFC 7383, src/ike/fragments.ts): negotiated in
// IKE_SA_INIT, big encrypted messages sent in fragments within fragment_size,
// reassembled out of order, retransmitted whole and answered on fragment 1
// only, and reassembly bounded: fragments per message, bytes, time; overlaps
// and disagreeing totals refused, nothing kept that fails its ICV.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, type Datagram } from "../fixtures/ikeBed.js";
import { authenticate, randomKnownSa, type KnownSa } from "../fixtures/knownSa.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { findNotify, type IkePayload } from "../../src/ike/codec/payloads.js";
import { Exchange, Notify, Payload } from "../../src/ike/constants.js";
import { DEFAULT_FRAGMENTATION } from "../../src/ike/fragments.js";
import { SEED } from "../helpers.js";

/** n /32 selectors in 10.<site>.0.0/16. */
function many(site: number, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `10.${site}.${i >> 8}.${i & 255}/32`);
}

function bigPeers(n = 150) {
  return sitePeers({ a: { localTs: many(1, n), remoteTs: many(2, n) }, b: { localTs: many(2, n), remoteTs: many(1, n) } });
}

function exchangeOf(d: Datagram): number {
  return decodeMessage(d.datagram).header.exchange;
}

function isFragment(d: Datagram): boolean {
  return decodeMessage(d.datagram).skf !== undefined;
}

function fragmentNumbers(d: Datagram): { number: number; total: number } {
  const body = decodeMessage(d.datagram).skf!.body;
  const view = new DataView(body.buffer, body.byteOffset);
  return { number: view.getUint16(0), total: view.getUint16(2) };
}

function drops(known: KnownSa, reason: string): number {
  return known.core.counters.drops[reason] ?? 0;
}

/** A large INFORMATIONAL request: a status notify carrying `size` bytes (ignored by the receiver, answered empty). */
function bulky(size: number, fill = 0x5a): IkePayload[] {
  return [{ type: Payload.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: 40_000, data: new Uint8Array(size).fill(fill) }];
}

/** An established known-keys responder with fragmentation agreed. */
function established(seed: number, fragmentation: Partial<typeof DEFAULT_FRAGMENTATION> = {}): KnownSa {
  const known = randomKnownSa(seed, { fragmentation: true, coreOptions: { fragmentation } });
  authenticate(known);
  assert.equal(known.core.list()[0]!.state, "established");
  return known;
}

describe("RFC 7383 between two cores", () => {
  test("150 selectors each way: IKE_AUTH goes both ways in fragments, each datagram within fragment_size", () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    const inits = bed.wire.filter((d) => exchangeOf(d) === Exchange.IKE_SA_INIT);
    assert.ok(inits.every((d) => findNotify(decodeMessage(d.datagram).payloads, Notify.IKEV2_FRAGMENTATION_SUPPORTED)), "offered both ways");
    const auth = bed.wire.filter((d) => exchangeOf(d) === Exchange.IKE_AUTH);
    const request = auth.filter((d) => d.from === bed.a);
    const response = auth.filter((d) => d.from === bed.b);
    assert.ok(request.length >= 3 && request.every(isFragment), `request in ${request.length} fragments`);
    assert.ok(response.length >= 3 && response.every(isFragment), `response in ${response.length} fragments`);
    // fragment_size is the IP datagram: 20 (IPv4) + 8 (UDP) + 4 (non-ESP marker) + the IKE message.
    for (const d of auth) assert.ok(d.datagram.length + 32 <= 1280, `${d.datagram.length} bytes`);
    assert.deepEqual(request.map((d) => fragmentNumbers(d).number), request.map((_, i) => i + 1));
    const [child] = [...bed.b.children.values()];
    assert.equal(child!.remotePrefixes.length, 150);
    assert.equal(bed.a.core.footprint().reassemblyBytes + bed.b.core.footprint().reassemblyBytes, 0);
  });

  test("a rekeyed IKE SA keeps fragmentation: a child rekey with 150 selectors each way goes in fragments on the new IKE SA", () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
    bed.flush();
    assert.equal(bed.a.core.list().filter((s) => s.state === "established").length, 1);
    const before = bed.wire.length;
    bed.apply(bed.a, bed.a.core.rekey("site-b", "child", bed.now));
    bed.flush();
    const rekey = bed.wire.slice(before).filter((d) => exchangeOf(d) === Exchange.CREATE_CHILD_SA);
    assert.ok(rekey.length >= 4 && rekey.every(isFragment), `${rekey.length} datagrams, all fragments`);
    bed.advanceBy(10_000); // the replaced children's inbound SAs linger a while (make-before-break)
    assert.equal(bed.a.children.size, 1);
    assert.equal(bed.b.children.size, 1);
    assert.equal(bed.a.actions.filter((a) => a.type === "child-up").length, 2, "the first child and its replacement");
  });

  test("not agreed when one side has it off: the same IKE_AUTH goes whole (and IP would fragment it)", () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b, { core: { b: { fragmentation: { enabled: false } } } });
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    const response = bed.wire.find((d) => d.from === bed.b && exchangeOf(d) === Exchange.IKE_SA_INIT)!;
    assert.equal(findNotify(decodeMessage(response.datagram).payloads, Notify.IKEV2_FRAGMENTATION_SUPPORTED), undefined);
    const auth = bed.wire.filter((d) => exchangeOf(d) === Exchange.IKE_AUTH);
    assert.equal(auth.length, 2);
    assert.ok(auth.every((d) => !isFragment(d) && d.datagram.length > 1280));
  });

  test("a smaller fragment_size gives more, smaller fragments", () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b, { core: { a: { fragmentation: { size: 576 } } } });
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    const request = bed.wire.filter((d) => d.from === bed.a && exchangeOf(d) === Exchange.IKE_AUTH);
    assert.ok(request.length >= 6, `${request.length} fragments`);
    for (const d of request) assert.ok(d.datagram.length + 32 <= 576);
  });

  test(`fragments reversed and duplicated: reassembled once; a copy of fragment 1 afterwards gets the cached answer (seed ${SEED})`, () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b);
    const held: Datagram[] = [];
    bed.drop = (d) => {
      if (!isFragment(d) || d.from !== bed.a) return false;
      held.push(d);
      if (held.length === fragmentNumbers(d).total) bed.queue.push(...[...held].reverse(), held[1]!, held[0]!);
      return true;
    };
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    assert.equal(bed.b.actions.filter((a) => a.type === "child-up").length, 1);
    assert.equal(bed.b.core.counters.drops["message-id-out-of-window"] ?? 0, 0);
    // The copies come after the message completed: fragment 2 is ignored, fragment 1 resends the cached response.
    assert.equal(bed.b.core.counters.cachedResponses, 1, "answered again once, on fragment 1");
  });

  test("a lost fragment: the retransmission (the same fragments) completes it; the cached response goes again on fragment 1 only", () => {
    const peers = bigPeers();
    const bed = new IkeBed(peers.a, peers.b);
    let requestDatagrams = 0;
    let responseTotal = -1;
    let responsesDropped = 0;
    bed.drop = (d) => {
      if (exchangeOf(d) !== Exchange.IKE_AUTH) return false;
      if (d.from === bed.a) return ++requestDatagrams === 2; // fragment 2 of the first transmission
      if (responseTotal < 0) responseTotal = fragmentNumbers(d).total;
      return responsesDropped++ < responseTotal; // the whole first response
    };
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    const requests = bed.wire.filter((d) => d.from === bed.a && exchangeOf(d) === Exchange.IKE_AUTH);
    assert.equal(bed.a.core.counters.retransmits, 2);
    const perTransmission = requests.length / 3;
    assert.ok(Number.isInteger(perTransmission) && perTransmission >= 3, "every transmission is the full set");
    for (let i = 0; i < requests.length; i++) assert.deepEqual(requests[i]!.datagram, requests[i % perTransmission]!.datagram, "retransmitted byte for byte");
    assert.equal(bed.b.actions.filter((a) => a.type === "child-up").length, 1, "processed once");
    assert.equal(bed.b.core.counters.drops["fragment-duplicate"], 1, "fragment 1 of the first retransmission was had already");
    assert.equal(bed.b.core.counters.cachedResponses, 1, "the second retransmission got the cached response once, not once per fragment");
  });
});

describe("reassembly limits (a known-keys SA fed crafted fragments)", () => {
  test("the IKE_AUTH itself in 300-byte fragments authenticates a half-open SA", () => {
    const known = randomKnownSa(SEED, { fragmentation: true });
    const delivery = authenticate(known, { largest: 300 });
    assert.equal(known.core.list()[0]!.state, "established");
    assert.equal(delivery.actions.filter((a) => a.type === "child-up").length, 1);
  });

  test("more fragments than maxFragments: dropped before decryption, nothing kept", () => {
    const known = established(SEED, { maxFragments: 8 });
    const fragments = known.seal(Exchange.INFORMATIONAL, bulky(2000), { largest: 200 });
    assert.ok(fragments.length > 8);
    const delivery = known.deliver(fragments);
    assert.equal(delivery.responses.length, 0);
    assert.equal(drops(known, "fragment-limit"), fragments.length);
    assert.equal(known.core.footprint().reassemblyBytes, 0);
  });

  test("more bytes than maxBytes: what was kept is thrown away at the fragment that exceeds it, and the rest of the message is refused as it comes", () => {
    const known = established(SEED, { maxBytes: 1500 });
    const fragments = known.seal(Exchange.INFORMATIONAL, bulky(3000), { largest: 600 });
    assert.equal(fragments.length, 6);
    let peak = 0;
    for (const fragment of fragments) {
      known.deliver([fragment]);
      peak = Math.max(peak, known.core.footprint().reassemblyBytes);
    }
    assert.ok(peak <= 1500, `peak ${peak} bytes held`);
    assert.equal(drops(known, "fragment-too-large"), 4, "fragments 3 to 6");
    assert.equal(known.core.footprint().reassemblyBytes, 0);
    // A message within the limit goes through.
    const other = established(SEED + 1, { maxBytes: 1500 });
    const ok = other.deliver(other.seal(Exchange.INFORMATIONAL, bulky(1000), { largest: 600 }));
    assert.deepEqual(ok.responses.map((r) => r.messageId), [2]);
  });

  test("a reassembly older than timeoutMs is thrown away when its next fragment comes; the resent set completes", () => {
    const known = established(SEED, { timeoutMs: 30_000 });
    const fragments = known.seal(Exchange.INFORMATIONAL, bulky(2000), { largest: 600 });
    assert.ok(fragments.length >= 3);
    known.deliver(fragments.slice(0, -1));
    known.now += 30_001;
    const late = known.deliver(fragments.slice(-1));
    assert.equal(late.responses.length, 0, "not completed by a fragment from after the limit");
    assert.equal(drops(known, "fragment-timeout"), 1);
    const again = known.deliver(fragments);
    assert.deepEqual(again.responses.map((r) => r.messageId), [2]);
  });

  test("an overlap (a fragment number again, other bytes) is dropped; the first one counts", () => {
    const known = established(SEED);
    const first = known.seal(Exchange.INFORMATIONAL, bulky(2000, 0x11), { largest: 600 });
    const other = known.seal(Exchange.INFORMATIONAL, bulky(2000, 0x22), { largest: 600 });
    assert.equal(first.length, other.length);
    known.deliver([first[0]!, first[1]!]);
    known.deliver([other[1]!]);
    assert.equal(drops(known, "fragment-duplicate"), 1);
    const done = known.deliver(first.slice(2));
    assert.deepEqual(done.responses.map((r) => r.messageId), [2]);
  });

  test("Total Fragments that disagrees: fewer is dropped, more starts the reassembly anew (RFC 7383 §2.6)", () => {
    const known = established(SEED);
    const three = known.seal(Exchange.INFORMATIONAL, bulky(1500), { largest: 700 });
    const two = known.seal(Exchange.INFORMATIONAL, bulky(1500), { largest: 1100 });
    const five = known.seal(Exchange.INFORMATIONAL, bulky(1500), { largest: 450 });
    assert.deepEqual([two.length, three.length], [2, 3]);
    assert.ok(five.length > 3);
    known.deliver([three[0]!, three[1]!]);
    assert.equal(known.deliver([two[1]!]).responses.length, 0);
    assert.equal(drops(known, "fragment-total-mismatch"), 1);
    known.deliver([five[0]!]);
    assert.equal(drops(known, "fragment-reassembly-restarted"), 1);
    assert.equal(known.deliver([three[2]!]).responses.length, 0, "the old set is gone");
    const done = known.deliver(five.slice(1));
    assert.deepEqual(done.responses.map((r) => r.messageId), [2]);
  });

  test("nothing is kept from a fragment that fails its ICV, has impossible numbers, or lies outside the window", () => {
    const known = established(SEED);
    const fragments = known.seal(Exchange.INFORMATIONAL, bulky(2000), { largest: 600 });
    const tampered = fragments[0]!.slice();
    tampered[tampered.length - 1]! ^= 1;
    known.deliver([tampered]);
    assert.equal(drops(known, "bad-icv"), 1);
    for (const [number, total] of [[0, 3], [4, 3], [1, 0]] as const) {
      const bad = fragments[0]!.slice();
      const view = new DataView(bad.buffer);
      view.setUint16(32, number);
      view.setUint16(34, total);
      known.deliver([bad]);
    }
    assert.equal(drops(known, "fragment-invalid"), 3);
    known.deliver(known.seal(Exchange.INFORMATIONAL, bulky(2000), { largest: 600, messageId: 7 }));
    assert.ok(drops(known, "message-id-out-of-window") >= 1);
    assert.equal(known.core.footprint().reassemblyBytes, 0);
    assert.equal(known.core.list()[0]!.state, "established");
  });

  test("a fragment seen again after its message completed: fragment 1 resends the cached answer, the others are ignored", () => {
    const known = established(SEED);
    const fragments = known.seal(Exchange.INFORMATIONAL, bulky(2000), { largest: 600 });
    assert.equal(known.deliver(fragments).responses.length, 1);
    const cached = known.core.counters.cachedResponses;
    assert.equal(known.deliver(fragments.slice(1)).responses.length, 0);
    assert.equal(known.deliver(fragments.slice(0, 1)).responses.length, 1);
    assert.equal(known.core.counters.cachedResponses, cached + 1);
  });

  test("the answer to a fragmented request is fragmented too when it is big (known SA, fragment_size 576)", () => {
    const known = randomKnownSa(SEED, { fragmentation: true, coreOptions: { fragmentation: { size: 576 } }, localTs: many(2, 100), remoteTs: many(1, 100) });
    const delivery = authenticate(known, { tsi: many(1, 100), tsr: many(2, 100), largest: 500 });
    assert.equal(known.core.list()[0]!.state, "established");
    assert.equal(delivery.responses.length, 1);
    assert.ok(delivery.responses[0]!.fragments >= 4, `${delivery.responses[0]!.fragments} fragments`);
  });
});
