// Live rekey collisions with the real strongSwan 5.9 (issue 13's proof):
// sluice (`sluice rekey`) and strongSwan (`swanctl --rekey`) rekey the same
// child SA, or the IKE SA, at the same moment, over and over, in both IKE
// roles. After each round the tunnel must pass traffic both ways and both
// sides must hold exactly one IKE SA and one child SA with each other's SPIs:
// no redundant SA left over, none missing.
//
// "At the same moment" on one machine: both requests must be on the wire
// before either side has seen the other's, a window of a few milliseconds
// that two commands started together mostly miss (a first try froze one side
// with SIGSTOP while both were asked: strongSwan, thawed, mostly answered the
// peer's request before starting its own, and the rekeys ran one after the
// other). So a round holds IKE messages back with nftables (holdIke): the
// first side's request is held at the second side's door; the second side's
// request reaches the first side, which has its own outstanding (a collision
// there), and its answer is held too; then the second side's requests are
// held instead and the first side's retransmission gets through, reaching
// the second side while its own is outstanding (a collision there as well);
// last, the second side's retransmission gets the first side's cached
// answer. Each side answers the other's request before its own is answered,
// as in a true crossing, in both orders of who went first. Rounds that
// start both commands together without a hold are mixed in.
//
// What it found in sluice's core (regression tests in
// test/ike/collisions.test.ts, "collisions as strongSwan met them"):
// - sluice spun at 100% CPU: an old IKE SA that lost the collision and
//   waited, rekeyed, for the answer to its own rekey kept the usage check's
//   deadline, which only an established SA acts on: due again at once, for
//   ever;
// - that answer never comes when it was lost and strongSwan deleted the old
//   SA meanwhile: the old SA failed as a dead connection and a new IKE SA was
//   initiated, a duplicate; now it goes quietly;
// - strongSwan gives its rekey up when our DELETE of the old IKE SA arrives
//   before our answer ("peer did not notice IKE_SA rekey collision, abort
//   active rekeying") and never deletes the SA we made for it: it stayed,
//   established and empty; now we delete it after the half-open time;
// - and, replaying between two cores a side that answers a rekey and at once
//   rekeys every child it has (as `swanctl --rekey` may pick the new one): a
//   rekey request for a child whose SPI we learn only from the answer to our
//   own CREATE_CHILD_SA got CHILD_SA_NOT_FOUND, and the peer dropped the
//   child we were about to seal with; TEMPORARY_FAILURE now (RFC 7296 §2.25).
// Needs root, strongSwan, nftables, conntrack, ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { sleep } from "../fixtures/interop/command.js";
import { holdIke, type Impairment } from "../fixtures/interop/impair.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs } from "../fixtures/interop/swanctl.js";
import { TwoHosts } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, until } from "../fixtures/interop/steps.js";

const skip = bedSkip();
const ESP = "chacha20poly1305-x25519";
/** Both sides retransmit after 0.5 s, then 0.7 s, 1 s … (a held request gets through soon after the hold goes). */
const RETRANSMIT = { timeout: 0.5, base: 1.4, tries: 8 };
/** sluice's redundant or rekeyed IKE SA whose peer never deletes it goes after half_open_timeout: 10 s instead of 30 here. */
const SLUICE_RETRANSMIT = "[ike]\nretransmit_timeout = 0.5\nretransmit_base = 1.4\nretransmit_tries = 8\nhalf_open_timeout = 10";

interface Tunnel {
  bed: TwoHosts;
  charon: Charon;
  sluice: SluiceDaemon;
  /** sluice's name for the peer. */
  peer: string;
}

type First = "strongSwan" | "sluice" | "neither";

/** Both sides rekey `what` so that the two requests cross (see the file's comment); `first` is whose request goes first. */
async function collide(tunnel: Tunnel, what: "child" | "ike", first: First): Promise<void> {
  const { charon, sluice, peer, bed } = tunnel;
  const theirs = (): Promise<unknown> => charon.swanctl(["--rekey", ...(what === "child" ? ["--child", "net"] : ["--ike", "site"])]);
  const ours = (): Promise<unknown> => sluice.rekey(peer, what === "ike");
  if (first === "neither") {
    await Promise.allSettled([theirs(), ours()]);
    return;
  }
  const address = (ns: string): string => (ns === bed.a.ns ? bed.a.address : bed.b.address);
  const strongSwan = { ns: charon.ns, rekey: theirs };
  const ourSide = { ns: sluice.ns, rekey: ours };
  const [one, two] = first === "strongSwan" ? [strongSwan, ourSide] : [ourSide, strongSwan];
  const pending: Promise<unknown>[] = [];
  // The first side's messages wait at the second side's door: its request, and later its answer to the second's.
  const holdOne = await holdIke(two.ns, address(one.ns));
  let holdTwo: Impairment | undefined;
  try {
    pending.push(one.rekey()); // swanctl returns when its exchange is done: not awaited here
    await sleep(500);
    pending.push(two.rekey()); // reaches the first side, whose own request is outstanding
    await sleep(500);
    // Now the second side's retransmissions wait, and the first side's get through (retransmitted 0.5, 1.2, 2.2 s … after it was sent).
    holdTwo = await holdIke(one.ns, address(two.ns), "requests");
    await holdOne.remove();
    await sleep(2000);
    await holdTwo.remove();
  } finally {
    await holdOne.remove();
    await holdTwo?.remove();
  }
  // swanctl fails when its rekey was refused (TEMPORARY_FAILURE): the outcome is judged by the SAs, not by it.
  await Promise.allSettled(pending);
}

/**
 * Both sides: exactly one established IKE SA (the same SPIs) and exactly one
 * child SA in all (each other's SPIs, installed, on that IKE SA). With
 * `strict`, nothing else at all; without, an IKE SA that is rekeyed or being
 * deleted may still be around if it holds no child (a lost answer leaves each
 * side's redundant SA to its own timeout: a few seconds for sluice here,
 * strongSwan's retransmissions of a DELETE the other side cannot read).
 */
async function clean(tunnel: Tunnel, what: string, strict = false, timeoutMs = 30_000): Promise<{ ike: string; child: string }> {
  const { charon, sluice } = tunnel;
  let last = "";
  return until(async () => {
    const [theirs, ours] = [await charon.listSas(), (await sluice.status()).ike];
    last = `strongSwan: ${JSON.stringify(theirs.map((sa) => ({ state: sa.state, spis: `${String(sa.raw["initiator-spi"])}_${String(sa.raw["responder-spi"])}`, children: sa.children.map((c) => `${c.state} ${c.spiIn}/${c.spiOut}`) })))}\n`
      + `sluice: ${JSON.stringify(ours.map((sa) => ({ state: sa.state, spis: `${sa.spiI}_${sa.spiR}`, children: sa.children.map((c) => `${c.state} ${c.spiIn}/${c.spiOut}`) })))}`;
    if (strict && (theirs.length !== 1 || ours.length !== 1)) return undefined;
    const s = theirs.filter((sa) => sa.state === "ESTABLISHED");
    const o = ours.filter((sa) => sa.state === "established");
    if (s.length !== 1 || o.length !== 1) return undefined;
    if (theirs.flatMap((sa) => sa.children).length !== 1 || ours.flatMap((sa) => sa.children).length !== 1) return undefined;
    const spis = `${String(s[0]!.raw["initiator-spi"])}_${String(s[0]!.raw["responder-spi"])}`;
    if (spis !== `${o[0]!.spiI}_${o[0]!.spiR}` || s[0]!.children.length !== 1 || o[0]!.children.length !== 1) return undefined;
    const [sc, oc] = [s[0]!.children[0]!, o[0]!.children[0]!];
    if (sc.state !== "INSTALLED" || oc.state !== "installed" || sc.spiIn !== oc.spiOut || sc.spiOut !== oc.spiIn) return undefined;
    return { ike: spis, child: `${oc.spiIn}/${oc.spiOut}` };
  }, `${what}: one IKE SA and one child SA on each side, the same SPIs${strict ? ", nothing else" : ""}`, timeoutMs, () => `${last}\n--- strongSwan:\n${charon.logTail(40)}\n--- sluice:\n${sluice.jsonLines().slice(-20).map((l) => `${String(l.event)}: ${String(l.msg)}`).join("\n")}`);
}

async function pingsCross(tunnel: Tunnel, what: string): Promise<void> {
  const { bed } = tunnel;
  for (const [from, to] of [[bed.a, bed.b], [bed.b, bed.a]] as const) {
    const result = await bed.ping(from.ns, to.inner, { from: from.inner, count: 3, interval: 0.1 });
    assert.equal(result.received, 3, `${what}: ${from.inner} → ${to.inner}\n${result.output}\n${tunnel.charon.logTail(20)}`);
  }
}

/** The rounds: child and IKE SA, strongSwan's request first and sluice's first, twice each, and one started together; then a child again on the last IKE SA. */
const ROUNDS: { what: "child" | "ike"; first: First }[] = [
  { what: "child", first: "strongSwan" }, { what: "child", first: "sluice" }, { what: "child", first: "neither" },
  { what: "child", first: "strongSwan" }, { what: "child", first: "sluice" },
  { what: "ike", first: "strongSwan" }, { what: "ike", first: "sluice" }, { what: "ike", first: "neither" },
  { what: "ike", first: "strongSwan" }, { what: "ike", first: "sluice" },
  { what: "child", first: "sluice" },
];

/** What the rounds showed in each side's log. */
function collisionsSeen(tunnel: Tunnel): { sluice: Record<string, number>; strongSwan: Record<string, number> } {
  const { charon, sluice } = tunnel;
  const count = (event: string): number => sluice.events(event).length;
  const log = charon.log().split("\n");
  const lines = (pattern: RegExp): number => log.filter((line) => pattern.test(line)).length;
  return {
    sluice: {
      childCollisions: count("child-rekey-collision"),
      ikeCollisions: count("ike-rekey-collision"),
      childRefused: count("child-rekey-failed"),
      ikeRefused: count("ike-rekey-failed"),
      childRekeyed: count("child-rekeyed"),
      ikeRekeyed: count("ike-rekeyed"),
    },
    strongSwan: {
      collisions: lines(/collision/i),
      temporaryFailure: lines(/TEMPORARY_FAILURE|TEMP_FAIL/),
      childRekeyed: lines(/CHILD_SA \S+ state change: REKEYING => REKEYED/),
      ikeRekeyed: lines(/IKE_SA \S+ rekeyed between/),
    },
  };
}

async function rounds(t: TestContext, tunnel: Tunnel): Promise<void> {
  let before = await clean(tunnel, "before the first round");
  await pingsCross(tunnel, "before the first round");
  for (const [i, round] of ROUNDS.entries()) {
    const what = `round ${i + 1} (${round.what}, ${round.first === "neither" ? "both at once" : `${round.first}'s request first`})`;
    await collide(tunnel, round.what, round.first);
    // A rekey refused with TEMPORARY_FAILURE is tried again a few seconds later: wait for the SAs to change and settle.
    const after = await until(async () => {
      const now = await clean(tunnel, what);
      return (round.what === "child" ? now.child !== before.child : now.ike !== before.ike) ? now : undefined;
    }, `${what}: the ${round.what} SA replaced`, 30_000);
    t.diagnostic(`${what}: IKE ${before.ike} → ${after.ike}, child ${before.child} → ${after.child}`);
    await pingsCross(tunnel, what);
    before = after;
  }
  // Nothing left over: once retries and redundant SAs' timeouts have run, one pair of SAs and nothing else on either side.
  await clean(tunnel, "after the rounds", true, 90_000);
  await pingsCross(tunnel, "after the rounds");
  const seen = collisionsSeen(tunnel);
  t.diagnostic(`collisions: ${JSON.stringify(seen)}`);
  assert.equal(tunnel.sluice.events("ike-failed").length + tunnel.sluice.events("ike-internal-error").length, 0, "no IKE SA failed, no internal error");
  // The rounds must have made both sides meet the other's rekey of the same SA (or refuse it for now): else nothing was tested.
  assert.ok(seen.sluice.childCollisions + seen.sluice.childRefused > 0, `a child rekey collision happened\n${JSON.stringify(seen)}`);
  assert.ok(seen.sluice.ikeCollisions + seen.sluice.ikeRefused > 0, `an IKE rekey collision happened\n${JSON.stringify(seen)}`);
}

describe("IKEv2 with strongSwan: live rekey collisions", { skip }, () => {
  test("sluice the IKE initiator: child and IKE SA rekeyed by both sides at once, round after round", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const charon = cleanUpAfter(t, await Charon.start(bed.b.ns, { retransmit: RETRANSMIT, swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: ESP } }).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: [ESP] })], { extra: SLUICE_RETRANSMIT }));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    await rounds(t, { bed, charon, sluice, peer: "b" });
  });

  test("strongSwan the IKE initiator: child and IKE SA rekeyed by both sides at once, round after round", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b, { espProposals: [ESP] })], { extra: SLUICE_RETRANSMIT }));
    const charon = cleanUpAfter(t, await Charon.start(bed.a.ns, { retransmit: RETRANSMIT, swanctl: bedConfigs(bed.a, bed.b, { initiatorOverrides: { espProposals: ESP } }).initiator }));
    await charon.initiate("net");
    await sluice.routed(bed.a.site);
    await rounds(t, { bed, charon, sluice, peer: "a" });
  });
});
