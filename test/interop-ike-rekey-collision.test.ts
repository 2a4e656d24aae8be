// Live rekey collisions with the real strongSwan 5.9 (issue 13's proof):
// sluice (`sluice rekey`) and strongSwan (`swanctl --rekey`) rekey the same
// child SA, or the IKE SA, at the same moment, over and over, in both IKE
// roles. After each round the tunnel must pass traffic both ways and both
// sides must hold exactly one IKE SA and one child SA with each other's SPIs:
// no redundant SA left over, none missing.
//
// "At the same moment" on one machine: both requests must be on the wire
// before either side has seen the other's, a window of a few milliseconds
// that two commands started together mostly miss. So a round freezes one
// side (SIGSTOP), has it asked to rekey (swanctl's request waits in the
// frozen charon's vici socket, sluice's in its control socket), has the
// other side rekey (its CREATE_CHILD_SA waits in the frozen side's UDP
// socket), and thaws it: the frozen side then finds both its own command
// and the peer's request, and which it handles first is up to it, so the
// rounds cover both orders. One round of each kind starts the two commands
// together without a freeze.
//
// What it found in sluice's core (regression tests in
// test/ike/collisions.test.ts): see the commit that added this file.
// Needs root, strongSwan, nftables, conntrack, ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import { Charon } from "./fixtures/interop/charon.js";
import { sleep } from "./fixtures/interop/command.js";
import { bedSkip } from "./fixtures/interop/requirements.js";
import { bedConfigs } from "./fixtures/interop/swanctl.js";
import { TwoHosts } from "./fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "./fixtures/interop/sluice.js";
import { cleanUpAfter, until } from "./fixtures/interop/steps.js";

const skip = bedSkip();
const ESP = "chacha20poly1305-x25519";

interface Tunnel {
  bed: TwoHosts;
  charon: Charon;
  sluice: SluiceDaemon;
  /** sluice's name for the peer. */
  peer: string;
}

type Frozen = "strongSwan" | "sluice" | "neither";

/** Both sides rekey `what` at once; `frozen` is held (SIGSTOP) while both requests are made. */
async function collide(tunnel: Tunnel, what: "child" | "ike", frozen: Frozen): Promise<void> {
  const { charon, sluice, peer } = tunnel;
  const theirs = (): Promise<unknown> => charon.swanctl(["--rekey", ...(what === "child" ? ["--child", "net"] : ["--ike", "site"])]);
  const ours = (): Promise<unknown> => sluice.rekey(peer, what === "ike");
  if (frozen === "neither") {
    await Promise.all([theirs(), ours()]);
    return;
  }
  const pid = frozen === "strongSwan" ? charon.pid! : sluice.pid;
  const [first, second] = frozen === "strongSwan" ? [theirs, ours] : [ours, theirs];
  process.kill(pid, "SIGSTOP");
  let pending: Promise<unknown>[] = [];
  try {
    // The frozen side's own command first (it waits in a socket), then the other side's request on the wire.
    pending = [first()];
    await sleep(150);
    pending.push(second());
    await sleep(150);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  // swanctl fails when its rekey was refused (TEMPORARY_FAILURE): the outcome is judged by the SAs, not by it.
  await Promise.allSettled(pending);
}

/** Both sides: exactly one IKE SA (the same SPIs) and exactly one child SA (each other's SPIs), nothing else in any state. */
async function clean(tunnel: Tunnel, what: string): Promise<{ ike: string; child: string }> {
  const { charon, sluice } = tunnel;
  let last = "";
  return until(async () => {
    const [theirs, ours] = [await charon.listSas(), (await sluice.status()).ike];
    last = `strongSwan: ${JSON.stringify(theirs.map((sa) => ({ state: sa.state, spis: `${String(sa.raw["initiator-spi"])}_${String(sa.raw["responder-spi"])}`, children: sa.children.map((c) => `${c.state} ${c.spiIn}/${c.spiOut}`) })))}\n`
      + `sluice: ${JSON.stringify(ours.map((sa) => ({ state: sa.state, spis: `${sa.spiI}_${sa.spiR}`, children: sa.children.map((c) => `${c.state} ${c.spiIn}/${c.spiOut}`) })))}`;
    if (theirs.length !== 1 || ours.length !== 1) return undefined;
    const [s, o] = [theirs[0]!, ours[0]!];
    const spis = `${String(s.raw["initiator-spi"])}_${String(s.raw["responder-spi"])}`;
    if (s.state !== "ESTABLISHED" || o.state !== "established" || spis !== `${o.spiI}_${o.spiR}`) return undefined;
    if (s.children.length !== 1 || o.children.length !== 1) return undefined;
    const [sc, oc] = [s.children[0]!, o.children[0]!];
    if (sc.state !== "INSTALLED" || oc.state !== "installed" || sc.spiIn !== oc.spiOut || sc.spiOut !== oc.spiIn) return undefined;
    return { ike: spis, child: `${oc.spiIn}/${oc.spiOut}` };
  }, `${what}: one IKE SA and one child SA on each side, the same SPIs`, 30_000, () => `${last}\n--- strongSwan:\n${charon.logTail(40)}\n--- sluice:\n${sluice.jsonLines().slice(-20).map((l) => `${String(l.event)}: ${String(l.msg)}`).join("\n")}`);
}

async function pingsCross(tunnel: Tunnel, what: string): Promise<void> {
  const { bed } = tunnel;
  for (const [from, to] of [[bed.a, bed.b], [bed.b, bed.a]] as const) {
    const result = await bed.ping(from.ns, to.inner, { from: from.inner, count: 3, interval: 0.1 });
    assert.equal(result.received, 3, `${what}: ${from.inner} → ${to.inner}\n${result.output}\n${tunnel.charon.logTail(20)}`);
  }
}

/** The rounds: child and IKE SA, each with strongSwan frozen, sluice frozen, and neither, twice over for the child. */
const ROUNDS: { what: "child" | "ike"; frozen: Frozen }[] = [
  { what: "child", frozen: "strongSwan" }, { what: "child", frozen: "sluice" }, { what: "child", frozen: "neither" },
  { what: "child", frozen: "strongSwan" }, { what: "child", frozen: "sluice" },
  { what: "ike", frozen: "strongSwan" }, { what: "ike", frozen: "sluice" }, { what: "ike", frozen: "neither" },
  { what: "ike", frozen: "strongSwan" }, { what: "ike", frozen: "sluice" },
  { what: "child", frozen: "strongSwan" },
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
    const what = `round ${i + 1} (${round.what}, ${round.frozen} frozen)`;
    await collide(tunnel, round.what, round.frozen);
    // A rekey refused with TEMPORARY_FAILURE is tried again a few seconds later: wait for the SAs to change and settle.
    const after = await until(async () => {
      const now = await clean(tunnel, what);
      return (round.what === "child" ? now.child !== before.child : now.ike !== before.ike) ? now : undefined;
    }, `${what}: the ${round.what} SA replaced`, 30_000);
    t.diagnostic(`${what}: IKE ${before.ike} → ${after.ike}, child ${before.child} → ${after.child}`);
    await pingsCross(tunnel, what);
    before = after;
  }
  // Nothing late: a retry or a redundant SA's deletion after the last round leaves the same single pair.
  await sleep(12_000);
  await clean(tunnel, "after the rounds");
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
    const charon = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: ESP } }).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: [ESP] })]));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    await rounds(t, { bed, charon, sluice, peer: "b" });
  });

  test("strongSwan the IKE initiator: child and IKE SA rekeyed by both sides at once, round after round", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b, { espProposals: [ESP] })]));
    const charon = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: bedConfigs(bed.a, bed.b, { initiatorOverrides: { espProposals: ESP } }).initiator }));
    await charon.initiate("net");
    await sluice.routed(bed.a.site);
    await rounds(t, { bed, charon, sluice, peer: "a" });
  });
});
