// Rekeying between sluice's IKEv2 and the real strongSwan 5.9
// (test/fixtures/interop/), in both IKE roles and from both sides of each:
// CREATE_CHILD_SA for the child SA (RFC 7296 §1.3.3) started by strongSwan
// (swanctl --rekey) and by sluice (sluice rekey), and for the IKE SA
// (§1.3.2). After each rekey both sides must name the same new SPIs and
// pings must cross both ways on them; after an IKE rekey, a child rekey
// on the new IKE SA (keys from its SK_d) and a clean DELETE prove its keys.
//
// What it caught: the keys of a child made by CREATE_CHILD_SA go by the
// initiator of that exchange (§2.17: initiator-to-responder keys first),
// not by the initiator of the IKE SA; sluice used the IKE SA's role, which
// two sluice cores agree on but strongSwan does not whenever the IKE
// responder starts the exchange (strongSwan: "ESP decryption or ICV
// verification failed" on every packet of the new child).
// Needs root, strongSwan, nftables, conntrack, ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs, type ChildSaInfo } from "../fixtures/interop/swanctl.js";
import { TwoHosts } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, noSas, until } from "../fixtures/interop/steps.js";

const skip = bedSkip();

/** One bed with the tunnel up, sluice in the given IKE role. */
interface Tunnel {
  bed: TwoHosts;
  charon: Charon;
  sluice: SluiceDaemon;
  /** sluice's peer name. */
  peer: string;
}

/** strongSwan's one installed child, once it is not one of `old` (inbound SPIs) and sluice has the same pair installed. */
async function newChild(tunnel: Tunnel, old: Set<string>, what: string): Promise<ChildSaInfo> {
  const { charon, sluice } = tunnel;
  return until(async () => {
    const children = (await charon.listSas()).flatMap((sa) => sa.children).filter((c) => c.state === "INSTALLED");
    if (children.length !== 1 || old.has(children[0]!.spiIn)) return undefined;
    const theirs = children[0]!;
    const ours = (await sluice.status()).ike.flatMap((sa) => sa.children).filter((c) => c.state === "installed");
    return ours.length === 1 && ours[0]!.spiIn === theirs.spiOut && ours[0]!.spiOut === theirs.spiIn ? theirs : undefined;
  }, `${what}: one new child, the same on both sides`, 10_000, () => `${charon.logTail(40)}\n${JSON.stringify(sluice.jsonLines().slice(-10))}`);
}

async function pingsCross(tunnel: Tunnel, what: string): Promise<void> {
  const { bed } = tunnel;
  const there = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 3, interval: 0.1 });
  assert.equal(there.received, 3, `${what}: A → B\n${there.output}\n${tunnel.charon.logTail(20)}`);
  const back = await bed.ping(bed.b.ns, bed.a.inner, { from: bed.b.inner, count: 3, interval: 0.1 });
  assert.equal(back.received, 3, `${what}: B → A\n${back.output}`);
}

async function installedSpis(charon: Charon): Promise<Set<string>> {
  return new Set((await charon.listSas()).flatMap((sa) => sa.children).map((c) => c.spiIn));
}

/** Rekeys the child from each side in turn, then the IKE SA from each side (each followed by a child rekey on the new IKE SA). */
async function rekeyEverything(tunnel: Tunnel, ikeName: string, diagnostic: (text: string) => void): Promise<void> {
  const { charon, sluice, peer } = tunnel;
  await pingsCross(tunnel, "before any rekey");
  for (const [who, rekey] of [
    ["strongSwan", () => charon.swanctl(["--rekey", "--child", "net"])],
    ["sluice", () => sluice.rekey(peer)],
  ] as const) {
    const old = await installedSpis(charon);
    await rekey();
    const child = await newChild(tunnel, old, `child rekeyed by ${who}`);
    diagnostic(`child rekeyed by ${who}: ${[...old].join(",")} → ${child.spiIn}`);
    await pingsCross(tunnel, `child rekeyed by ${who}`);
  }
  for (const [who, rekey] of [
    ["strongSwan", () => charon.swanctl(["--rekey", "--ike", ikeName])],
    ["sluice", () => sluice.rekey(peer, true)],
  ] as const) {
    const [before] = await charon.listSas();
    const spis = (sa: { raw: Record<string, unknown> }): string => `${String(sa.raw["initiator-spi"])}_${String(sa.raw["responder-spi"])}`;
    await rekey();
    const after = await until(async () => {
      const sas = await charon.listSas();
      const ours = (await sluice.status()).ike.filter((sa) => sa.state === "established");
      if (sas.length !== 1 || spis(sas[0]!) === spis(before!) || ours.length !== 1) return undefined;
      return `${ours[0]!.spiI}_${ours[0]!.spiR}` === spis(sas[0]!) ? sas[0]! : undefined;
    }, `IKE SA rekeyed by ${who}: one new IKE SA, the same on both sides`, 10_000, () => charon.logTail(40));
    diagnostic(`IKE SA rekeyed by ${who}: ${spis(before!)} → ${spis(after)}`);
    await pingsCross(tunnel, `IKE SA rekeyed by ${who}`);
    // The new IKE SA's SK_d and SK_e: a child rekey on it.
    const old = await installedSpis(charon);
    await charon.swanctl(["--rekey", "--child", "net"]);
    await newChild(tunnel, old, `child rekeyed on the IKE SA rekeyed by ${who}`);
    await pingsCross(tunnel, `child rekeyed on the IKE SA rekeyed by ${who}`);
  }
  assert.equal(sluice.events("ike-failed").length + sluice.events("child-failed").length, 0);
}

describe("IKEv2 with strongSwan: rekeying", { skip }, () => {
  test("sluice the IKE initiator: child and IKE SA rekeyed from each side, traffic on every new SA", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const charon = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a)]));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    await rekeyEverything({ bed, charon, sluice, peer: "b" }, "site", (text) => t.diagnostic(text));
    assert.equal((await sluice.terminate("b")).ok, true);
    await noSas(charon);
  });

  test("strongSwan the IKE initiator: child and IKE SA rekeyed from each side, traffic on every new SA", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const charon = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: bedConfigs(bed.a, bed.b).initiator }));
    await charon.initiate("net");
    await sluice.routed(bed.a.site);
    await rekeyEverything({ bed, charon, sluice, peer: "a" }, "site", (text) => t.diagnostic(text));
    await charon.terminate({ ike: "site" });
    await until(async () => ((await sluice.status()).ike.length === 0 ? true : undefined), "sluice to forget the IKE SA");
  });
});
