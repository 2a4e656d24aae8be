// Hostile input to an IKE core: every malformed message (truncated, bad
// lengths, unknown critical payloads, wrong SPIs, bad ICV) is dropped and
// counted by reason; nothing throws; no unauthenticated message changes an
// established SA. A seeded mutation fuzzer over real exchanged messages runs
// a fixed number of cases (SLUICE_IKE_FUZZ_CASES raises it).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, type Datagram } from "../fixtures/ikeBed.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange, Payload } from "../../src/ike/constants.js";
import { Rng, SEED } from "../helpers.js";

/** An established pair with a liveness exchange on the wire too. */
function established(): IkeBed {
  const peers = sitePeers({ a: { dpdMs: 10_000 } });
  const bed = new IkeBed(peers.a, peers.b);
  bed.start();
  assert.ok(bed.runUntil(() => bed.established()));
  bed.advanceBy(10_001);
  return bed;
}

/** What must not change: states, SPIs, children, addresses. */
function snapshot(bed: IkeBed): string {
  const strip = (s: ReturnType<IkeBed["a"]["core"]["list"]>) => s.filter((x) => x.state !== "half-open").map((x) => ({ ...x, lastRttMs: undefined }));
  return JSON.stringify([strip(bed.a.core.list()), strip(bed.b.core.list()), [...bed.a.children.keys()], [...bed.b.children.keys()]]);
}

function deliver(bed: IkeBed, d: Datagram, bytes: Uint8Array): void {
  bed.apply(d.to, d.to.core.receive(bytes, d.path, bed.now));
}

function dropCount(bed: IkeBed, reason: string): number {
  return (bed.a.core.counters.drops[reason] ?? 0) + (bed.b.core.counters.drops[reason] ?? 0);
}

describe("hostile input", () => {
  test("every truncation of every message is dropped and counted", () => {
    const bed = established();
    const before = snapshot(bed);
    const wire = [...bed.wire];
    let cases = 0;
    for (const d of wire) {
      for (let length = 0; length < d.datagram.length; length++) {
        deliver(bed, d, d.datagram.subarray(0, length));
        cases++;
      }
    }
    bed.queue.length = 0;
    assert.equal(snapshot(bed), before);
    assert.ok(dropCount(bed, "truncated") > 0 && dropCount(bed, "bad-length") > 0);
    const dropped = Object.values(bed.a.core.counters.drops).reduce((x, y) => x + y, 0) + Object.values(bed.b.core.counters.drops).reduce((x, y) => x + y, 0);
    assert.ok(dropped >= cases, `${dropped} drops for ${cases} truncated messages`);
  });

  test("a bad ICV: every byte of an IKE_AUTH and an INFORMATIONAL flipped in turn changes nothing", () => {
    const bed = established();
    const before = snapshot(bed);
    const targets = bed.wire.filter((d) => [Exchange.IKE_AUTH, Exchange.INFORMATIONAL].includes(decodeMessage(d.datagram).header.exchange as 35));
    for (const d of targets) {
      for (let i = 0; i < d.datagram.length; i++) {
        const bytes = d.datagram.slice();
        bytes[i]! ^= 0x40;
        deliver(bed, d, bytes);
      }
    }
    bed.queue.length = 0;
    assert.equal(snapshot(bed), before);
    assert.ok(dropCount(bed, "bad-icv") > 0, "flips inside the SK payload fail the ICV");
    assert.ok(dropCount(bed, "unknown-spi") > 0, "flips in the SPIs find no SA");
  });

  test("wrong SPIs, an unknown critical payload, a wrong version, a response to nothing", () => {
    const bed = established();
    const before = snapshot(bed);
    const init = bed.wire[0]!;
    // Unknown critical payload in a new IKE_SA_INIT request: refused by the parser.
    const critical = init.datagram.slice();
    const firstPayload = critical[16]!;
    critical[16] = 99; // next payload: an unknown type …
    const withCritical = new Uint8Array(critical.length + 4);
    withCritical.set(critical.subarray(0, 28));
    withCritical.set([firstPayload, 0x80, 0, 4], 28); // … critical, empty
    withCritical.set(critical.subarray(28), 32);
    new DataView(withCritical.buffer).setUint32(24, withCritical.length);
    new DataView(withCritical.buffer).setBigUint64(0, 0x1122334455667788n);
    deliver(bed, init, withCritical);
    assert.equal(dropCount(bed, "unsupported-critical"), 1);
    // A non-critical unknown payload is skipped: the request is answered.
    withCritical[29] = 0;
    const answered = bed.wire.length;
    deliver(bed, init, withCritical);
    assert.equal(bed.wire.length, answered + 1);
    // Wrong version.
    const v3 = init.datagram.slice();
    v3[17] = 0x30;
    deliver(bed, init, v3);
    assert.equal(dropCount(bed, "bad-version"), 1);
    // An IKE_AUTH with an SPI nobody has.
    const auth = bed.wire.find((d) => decodeMessage(d.datagram).header.exchange === Exchange.IKE_AUTH)!;
    const alien = auth.datagram.slice();
    new DataView(alien.buffer).setBigUint64(8, 0xdeadbeefn);
    deliver(bed, auth, alien);
    assert.ok(dropCount(bed, "unknown-spi") >= 1);
    bed.queue.length = 0;
    assert.equal(snapshot(bed), before);
  });

  test("a DELETE replayed after the window moves on is ignored", () => {
    const peers = sitePeers({ a: { dpdMs: 10_000 } });
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    // An old INFORMATIONAL request (a liveness check) replayed later is outside the window.
    bed.advanceBy(10_001);
    const old = bed.wire.filter((d) => decodeMessage(d.datagram).header.exchange === Exchange.INFORMATIONAL)[0]!;
    bed.advanceBy(10_001);
    const before = snapshot(bed);
    deliver(bed, old, old.datagram);
    assert.equal(snapshot(bed), before);
    assert.equal(bed.b.core.counters.drops["message-id-out-of-window"], 1);
  });

  test(`mutation fuzzing over the exchanged messages (seed ${SEED}): nothing throws, no established SA changes`, () => {
    const cases = Number(process.env.SLUICE_IKE_FUZZ_CASES ?? 3000);
    const rng = new Rng(SEED);
    const bed = established();
    const before = snapshot(bed);
    const wire = [...bed.wire];
    for (let i = 0; i < cases; i++) {
      const d = wire[rng.int(wire.length)]!;
      const bytes = mutate(rng, d.datagram);
      try {
        deliver(bed, d, bytes);
      } catch (error) {
        assert.fail(`case ${i} (seed ${SEED}) threw: ${(error as Error).stack}`);
      }
      bed.queue.length = 0;
    }
    assert.equal(snapshot(bed), before);
    assert.equal(dropCount(bed, "internal-error"), 0, "no case reached the safety net");
    // Memory bounded: half-open SAs from mutated IKE_SA_INIT requests expire.
    bed.advanceBy(31_000);
    assert.ok(bed.b.core.list().every((s) => s.state === "established"));
  });
});

function mutate(rng: Rng, original: Uint8Array): Uint8Array {
  let bytes = original.slice();
  const kind = rng.int(6);
  if (kind === 0) bytes[rng.int(bytes.length)] = rng.int(256);
  else if (kind === 1) bytes = bytes.subarray(0, rng.int(bytes.length + 1));
  else if (kind === 2) {
    // A payload length field: somewhere after the header, a random 16-bit value.
    const at = 28 + rng.int(Math.max(1, bytes.length - 30));
    if (at + 1 < bytes.length) new DataView(bytes.buffer, bytes.byteOffset).setUint16(at, rng.int(65536));
  } else if (kind === 3) {
    // The header's next-payload and length fields.
    bytes[16] = [Payload.SA, Payload.KE, Payload.NONCE, Payload.SK, Payload.NOTIFY, rng.int(256)][rng.int(6)]!;
  } else if (kind === 4) {
    const extra = rng.bytes(rng.int(64));
    const grown = new Uint8Array(bytes.length + extra.length);
    grown.set(bytes);
    grown.set(extra, bytes.length);
    bytes = grown;
    if (rng.int(2) === 0 && bytes.length >= 28) new DataView(bytes.buffer).setUint32(24, bytes.length);
  } else {
    for (let n = rng.range(2, 8); n > 0; n--) bytes[rng.int(bytes.length)] ^= 1 << rng.int(8);
  }
  return bytes;
}
