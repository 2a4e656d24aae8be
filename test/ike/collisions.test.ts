// Exchange collisions (RFC 7296 §2.8.1, §2.8.2, §2.25) through every
// interleaving: two cores start conflicting exchanges at the same moment,
// and every order in which the network may deliver the datagrams in flight
// is tried (a depth-first search over delivery orders, each order replayed
// from the same seed). After each delivery nothing either side seals may be
// unopenable by the other; at the end the two sides agree: one tunnel,
// mirrored keys, no redundant SA left once the old ones' linger time passed.
// Several seeds, so that each side wins the lowest-nonce rule in some runs.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, assertOneTunnel, type Side } from "../fixtures/ikeBed.js";

type Trigger = (bed: IkeBed) => void;

interface Outcome {
  schedules: number;
  endings: Map<string, number>;
}

function established(seed: number): IkeBed {
  const peers = sitePeers({ a: { esp: ["chacha20poly1305-x25519"] }, b: { esp: ["chacha20poly1305-x25519"] } });
  const bed = new IkeBed(peers.a, peers.b, { seed, retransmit: { timeoutMs: 60_000, tries: 1 } });
  bed.start();
  assert.ok(bed.runUntil(() => bed.established()));
  return bed;
}

/** What each side seals can be opened by the other right now. */
function assertNoLoss(bed: IkeBed, where: string): void {
  for (const [from, to] of [[bed.a, bed.b], [bed.b, bed.a]] as [Side, Side][]) {
    for (const id of from.sealing) {
      const spi = from.children.get(id)!.outbound.spi;
      assert.ok([...to.children.values()].some((c) => c.inbound.spi === spi), `${where}: ${to.name} cannot open what ${from.name} seals`);
    }
  }
}

/** Replays `choices` (indices into the in-flight queue) after the trigger; returns the bed and how many datagrams are left in flight. */
function replay(seed: number, trigger: Trigger, choices: number[], lossless: boolean): { bed: IkeBed; left: number } {
  const bed = established(seed);
  trigger(bed);
  for (const [step, choice] of choices.entries()) {
    const [d] = bed.queue.splice(choice, 1);
    bed.apply(d!.to, d!.to.core.receive(d!.datagram, d!.path, bed.now));
    if (lossless) assertNoLoss(bed, `seed ${seed}, schedule [${choices.slice(0, step + 1)}]`);
  }
  return { bed, left: bed.queue.length };
}

/**
 * Every delivery order; `check` judges each end state and names it.
 * `lossless`: a rekey must never leave a sealed packet unopenable (a DELETE
 * may: the deleting side stops accepting at once, by design).
 */
function explore(seed: number, trigger: Trigger, check: (bed: IkeBed, schedule: number[]) => string, lossless = true, limit = 20_000): Outcome {
  const outcome: Outcome = { schedules: 0, endings: new Map() };
  const walk = (choices: number[]): void => {
    const { bed, left } = replay(seed, trigger, choices, lossless);
    if (left === 0) {
      // Time passes: retries after TEMPORARY_FAILURE, lingering SAs go.
      bed.advanceBy(30_000);
      let ending: string;
      try {
        ending = check(bed, choices);
      } catch (error) {
        throw new Error(`seed ${seed}, schedule [${choices}]: ${(error as Error).message}`);
      }
      outcome.endings.set(ending, (outcome.endings.get(ending) ?? 0) + 1);
      outcome.schedules++;
      explored++;
      return;
    }
    assert.ok(outcome.schedules < limit, "too many schedules");
    for (let i = 0; i < left; i++) walk([...choices, i]);
  };
  walk([]);
  return outcome;
}

const SEEDS = [1, 2, 3, 4, 5, 6];
/** Schedules explored by the test running now (reported as a diagnostic). */
let explored = 0;

function oneIkeSa(bed: IkeBed): void {
  assert.equal(bed.a.core.list().length, 1, `a: ${JSON.stringify(bed.a.core.list().map((s) => s.state))}`);
  assert.equal(bed.b.core.list().length, 1);
  assert.equal(bed.a.core.list()[0]!.spiI, bed.b.core.list()[0]!.spiI);
  assert.equal(bed.a.core.list()[0]!.spiR, bed.b.core.list()[0]!.spiR);
}

function oneChildEach(bed: IkeBed): void {
  assert.equal(bed.a.children.size, 1, "a: no redundant child left");
  assert.equal(bed.b.children.size, 1, "b: no redundant child left");
  assertOneTunnel(bed);
}

describe("collisions through every interleaving", () => {
  test("both sides rekey the same child SA (§2.8.1): the lowest nonce loses", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    const endings = new Map<string, number>();
    let schedules = 0;
    for (const seed of SEEDS) {
      const outcome = explore(seed, (bed) => {
        bed.apply(bed.a, bed.a.core.rekey("site-b", "child", bed.now));
        bed.apply(bed.b, bed.b.core.rekey("site-a", "child", bed.now));
      }, (bed) => {
        oneIkeSa(bed);
        oneChildEach(bed);
        const collisions = [...bed.events(bed.a, "child-rekey-collision"), ...bed.events(bed.b, "child-rekey-collision")].map((e) => e.message.includes("ours") ? "ours" : "peer's");
        return collisions.length > 0 ? `collision seen (${collisions.join(", ")})` : "one side's rekey refused";
      });
      schedules += outcome.schedules;
      for (const [k, v] of outcome.endings) endings.set(k, (endings.get(k) ?? 0) + v);
    }
    assert.ok(schedules >= 20, `${schedules} schedules`);
    assert.ok([...endings.keys()].some((k) => k.startsWith("collision")), `the collision rule ran: ${JSON.stringify([...endings])}`);
  });

  test("a child rekey crossing a DELETE of that child: the DELETE wins, nothing is left", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    let schedules = 0;
    for (const seed of SEEDS) {
      schedules += explore(seed, (bed) => {
        bed.apply(bed.a, bed.a.core.rekey("site-b", "child", bed.now));
        const child = bed.b.core.list()[0]!.children[0]!;
        bed.apply(bed.b, bed.b.core.deleteChild("site-a", child.id, bed.now));
      }, (bed) => {
        oneIkeSa(bed);
        assert.equal(bed.a.children.size, 0, `a: ${[...bed.a.children.keys()]}`);
        assert.equal(bed.b.children.size, 0, `b: ${[...bed.b.children.keys()]}`);
        return "deleted";
      }, false).schedules;
    }
    assert.ok(schedules >= 10, `${schedules} schedules`);
  });

  test("both sides rekey the IKE SA (§2.8.2): one survives on both sides, the child undisturbed", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    const endings = new Map<string, number>();
    for (const seed of SEEDS) {
      const outcome = explore(seed, (bed) => {
        bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
        bed.apply(bed.b, bed.b.core.rekey("site-a", "ike", bed.now));
      }, (bed) => {
        oneIkeSa(bed);
        oneChildEach(bed);
        const collisions = [...bed.events(bed.a, "ike-rekey-collision"), ...bed.events(bed.b, "ike-rekey-collision")];
        return collisions.length > 0 ? "collision resolved" : "no collision";
      });
      for (const [k, v] of outcome.endings) endings.set(k, (endings.get(k) ?? 0) + v);
    }
    assert.ok(endings.has("collision resolved"), JSON.stringify([...endings]));
  });

  test("an IKE rekey crossing a child rekey: one is refused for now (TEMPORARY_FAILURE) and both complete", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    for (const seed of SEEDS) {
      explore(seed, (bed) => {
        bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
        bed.apply(bed.b, bed.b.core.rekey("site-a", "child", bed.now));
      }, (bed) => {
        oneIkeSa(bed);
        oneChildEach(bed);
        assert.equal(bed.events(bed.a, "ike-rekeying").length + bed.events(bed.b, "ike-rekeyed").length >= 1, true);
        return "both done";
      });
    }
  });

  test("an IKE rekey crossing a DELETE of the IKE SA: the DELETE wins on both sides", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    for (const seed of SEEDS) {
      explore(seed, (bed) => {
        bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
        bed.apply(bed.b, bed.b.core.terminate("site-a", bed.now));
      }, (bed) => {
        assert.deepEqual(bed.a.core.list().map((s) => s.state), [], "a has no IKE SA");
        assert.deepEqual(bed.b.core.list().map((s) => s.state), [], "b has no IKE SA");
        assert.equal(bed.a.children.size + bed.b.children.size, 0);
        return "deleted";
      }, false);
    }
  });
});

// What the live collisions with strongSwan found (test/interop/ike-rekey-collision.test.ts),
// replayed between two cores: a lost answer, a peer that aborts its rekey, a request for a child
// the peer has and we do not have yet.
describe("collisions as strongSwan met them", () => {
  /** An established pair whose cores look at the children's traffic (as the endpoint's do) and retransmit quickly. */
  function liveBed(seed: number): IkeBed {
    const peers = sitePeers({ a: { esp: ["chacha20poly1305-x25519"] }, b: { esp: ["chacha20poly1305-x25519"] } });
    const usage = (): { bytes: number; packets: number; sentSequence: number } => ({ bytes: 0, packets: 0, sentSequence: 0 });
    const bed = new IkeBed(peers.a, peers.b, { seed, retransmit: { timeoutMs: 500, base: 1.4, tries: 8 }, childUsage: { a: usage, b: usage } });
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    return bed;
  }

  const internalErrors = (bed: IkeBed): number => bed.events(bed.a, "ike-internal-error").length + bed.events(bed.b, "ike-internal-error").length;

  test("an IKE rekey collision whose answer to us is lost while the peer deletes the old SA: no timer spins, the old SA goes, nothing reconnects", () => {
    // Live: sluice spun at 100% CPU. Its old IKE SA, rekeyed (the peer's new SA had the children) and waiting
    // for the answer to its own rekey, kept the usage check's deadline, which only an established SA acts on.
    let waited = 0;
    for (const seed of SEEDS) {
      const bed = liveBed(seed);
      bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
      bed.apply(bed.b, bed.b.core.rekey("site-a", "ike", bed.now));
      // Both requests cross; b's answer to a's request is lost (once: a retransmission gets it again if b still has the SA).
      const aRequest = bed.queue.find((d) => d.from === bed.a)!.datagram;
      const sameExchange = (x: Uint8Array): boolean => Buffer.from(x.subarray(0, 16)).equals(Buffer.from(aRequest.subarray(0, 16))) && Buffer.from(x.subarray(20, 24)).equals(Buffer.from(aRequest.subarray(20, 24)));
      let lost = false;
      bed.drop = (d) => {
        if (lost || d.from !== bed.b || (d.datagram[19]! & 0x20) === 0 || !sameExchange(d.datagram)) return false;
        return (lost = true);
      };
      bed.advanceBy(120_000);
      assert.equal(internalErrors(bed), 0, `seed ${seed}: a deadline nothing acted on`);
      if (bed.events(bed.a, "ike-down").some((e) => String(e.message).includes("never answered our colliding rekey"))) waited++;
      oneIkeSa(bed);
      oneChildEach(bed);
      assert.equal(bed.events(bed.a, "ike-connecting").length + bed.events(bed.b, "ike-connecting").length, 1, `seed ${seed}: no new IKE SA made (only the first)`);
    }
    assert.ok(waited > 0, "some seed left a waiting for an answer that never came");
  });

  test("the peer gives its colliding IKE rekey up and never deletes what it made (strongSwan: \"peer did not notice IKE_SA rekey collision\"): the redundant SA goes after the half-open time", () => {
    let redundant = 0;
    for (const seed of SEEDS) {
      const bed = liveBed(seed);
      bed.apply(bed.a, bed.a.core.rekey("site-b", "ike", bed.now));
      bed.apply(bed.b, bed.b.core.rekey("site-a", "ike", bed.now));
      // Deliver the two requests; then b falls silent on the SA a made for b's request (as an aborting peer is).
      bed.deliverOne();
      bed.deliverOne();
      const madeForB = bed.a.core.list().find((s) => s.role === "responder");
      const silent = madeForB ? Buffer.from(madeForB.spiI, "hex") : undefined;
      // b's DELETE of that SA (an INFORMATIONAL request on it) never comes.
      bed.drop = (d) => silent !== undefined && d.from === bed.b && Buffer.from(d.datagram.subarray(0, 8)).equals(silent) && d.datagram[18] === 37 && (d.datagram[19]! & 0x20) === 0;
      bed.advanceBy(120_000);
      assert.equal(internalErrors(bed), 0);
      if (bed.events(bed.a, "ike-deleting").some((e) => String(e.message).includes("not deleted by the peer"))) redundant++;
      assert.equal(bed.a.core.list().filter((s) => s.state === "established").length, 1, `seed ${seed}: a keeps one IKE SA: ${JSON.stringify(bed.a.core.list().map((s) => s.state))}`);
      oneChildEach(bed);
    }
    assert.ok(redundant > 0, "some seed had a delete the redundant SA the silent peer made");
  });

  test("a rekey request naming a child we do not know yet, our own CREATE_CHILD_SA that made it unanswered: TEMPORARY_FAILURE, and one tunnel in the end", (t) => {
    explored = 0;
    t.after(() => t.diagnostic(`${explored} delivery orders over ${SEEDS.length} seeds`));
    let temporary = 0;
    for (const seed of SEEDS) {
      explore(seed, (bed) => {
        // a rekeys; b answers, and at once rekeys every child it has, the new one (whose SPI a learns only from the answer) among them.
        bed.apply(bed.a, bed.a.core.rekey("site-b", "child", bed.now));
        bed.deliverOne();
        bed.apply(bed.b, bed.b.core.rekey("site-a", "child", bed.now));
      }, (bed) => {
        oneIkeSa(bed);
        oneChildEach(bed);
        if (bed.events(bed.b, "child-rekey-failed").some((e) => e.fields.reason === "TEMPORARY_FAILURE")) temporary++;
        return "one tunnel";
      });
    }
    assert.ok(temporary > 0, "some order had a refuse a rekey of the child its own exchange made, for now");
  });
});
