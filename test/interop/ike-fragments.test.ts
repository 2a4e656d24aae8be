// RFC 7383 IKE fragmentation against the real strongSwan 5.9, both ways, on a
// path that drops every IP fragment (nftables in both namespaces, before
// conntrack could reassemble them: test/fixtures/interop/impair.ts):
//
// 1. sluice initiator → strongSwan responder, 200 traffic selectors on
//    sluice's side: the IKE_AUTH request (about 3.6 KB) and strongSwan's
//    answer (the same selectors back) each exceed the veth's 1500 bytes, so
//    the handshake completes only through RFC 7383 fragments: strongSwan
//    logs that it reassembled sluice's fragments and split its own answer;
//    no IP fragment was sent (the drop rules counted none); pings cross.
// 2. strongSwan initiator → sluice responder, 200 selectors on sluice's
//    side again: strongSwan's IKE_AUTH request and sluice's answer in fragments.
// 3. The control: sluice with `fragmentation = false` sends the same
//    IKE_AUTH whole, the kernel fragments it, the rule drops the pieces
//    (counted), and no child SA comes up.
// Needs root, strongSwan and nftables (.ci/run installs them).
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { dropFragments, type Impairment } from "../fixtures/interop/impair.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { BED_ID_A, BED_ID_B, siteToSite } from "../fixtures/interop/swanctl.js";
import { TwoHosts, type Topology } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";

const skip = bedSkip();
const SELECTORS = 200;

function cleanUpAfter<T extends Topology | Charon | SluiceDaemon | Impairment>(t: TestContext, thing: T): T {
  t.after(() => ("destroy" in thing ? thing.destroy() : "remove" in thing ? thing.remove() : thing.stop()));
  return thing;
}

/**
 * 200 host selectors in a site (its inner address, .1, among them). They sit
 * on sluice's side of the tunnel: strongSwan installs a route per remote
 * selector, which works, but refuses a local one whose address it does not
 * have (`error installing route with policy`).
 */
function hosts(site: 1 | 2): string[] {
  return Array.from({ length: SELECTORS }, (_, i) => `10.77.${site}.${i + 1}/32`);
}

async function noFragmentsAnywhere(t: TestContext, bed: TwoHosts): Promise<[Impairment, Impairment]> {
  return [cleanUpAfter(t, await dropFragments(bed.a.ns)), cleanUpAfter(t, await dropFragments(bed.b.ns))];
}

async function droppedFragments(rules: Impairment[]): Promise<number> {
  let dropped = 0;
  for (const rule of rules) dropped += (await rule.counters()).dropped;
  return dropped;
}

describe("RFC 7383 fragmentation with strongSwan, IP fragments dropped", { skip }, () => {
  test("sluice initiator → strongSwan responder: a 200-selector IKE_AUTH completes in IKE fragments both ways", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const rules = await noFragmentsAnywhere(t, bed);
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, {
      swanctl: siteToSite({ local: bed.b.address, remote: bed.a.address, localId: BED_ID_B, remoteId: BED_ID_A, localTs: bed.b.site, remoteTs: hosts(1).join(","), connectionExtra: ["fragmentation = yes"] }),
    }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { localSelectors: hosts(1) })]));
    await sluice.waitForEvent("child-up", 20_000);
    await responder.waitForLog(/reassembled fragmented IKE message/);
    await responder.waitForLog(/splitting IKE message \(\d+ bytes\) into \d+ fragments/);
    assert.match(responder.log(), /received fragment #1/);
    const [theirs] = await responder.listSas();
    assert.equal(theirs!.children[0]!.remoteTs.length, SELECTORS, "strongSwan took all 200 selectors");
    const [ours] = (await sluice.status()).ike;
    assert.equal(ours!.children[0]!.localTs.length, SELECTORS);
    assert.equal(await droppedFragments(rules), 0, "no IP fragment was sent: the IKE fragments carried it");
    await sluice.routed(bed.b.site);
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);
  });

  test("strongSwan initiator → sluice responder: the same the other way", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const rules = await noFragmentsAnywhere(t, bed);
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns, {
      swanctl: siteToSite({ local: bed.a.address, remote: bed.b.address, localId: BED_ID_A, remoteId: BED_ID_B, localTs: bed.a.site, remoteTs: hosts(2).join(","), connectionExtra: ["fragmentation = yes"] }),
    }));
    const output = await initiator.initiate("net", { timeoutS: 20 });
    assert.match(output, /CHILD_SA net\{\d+\} established/);
    assert.match(initiator.log(), /splitting IKE message \(\d+ bytes\) into \d+ fragments/, "strongSwan's IKE_AUTH went in fragments");
    assert.match(initiator.log(), /reassembled fragmented IKE message/, "sluice's answer came in fragments");
    await sluice.waitForEvent("child-up", 5000);
    const [ours] = (await sluice.status()).ike;
    assert.equal(ours!.children[0]!.localTs.length, SELECTORS, "sluice narrowed 10.77.2.0/24 to the 200 selectors offered");
    assert.equal(await droppedFragments(rules), 0);
    await sluice.routed(bed.a.site);
    const ping = await bed.ping(bed.b.ns, bed.a.inner, { from: bed.b.inner, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);
  });

  test("the control: with fragmentation = false the same IKE_AUTH is IP-fragmented, dropped, and nothing comes up", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const rules = await noFragmentsAnywhere(t, bed);
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, {
      swanctl: siteToSite({ local: bed.b.address, remote: bed.a.address, localId: BED_ID_B, remoteId: BED_ID_A, localTs: bed.b.site, remoteTs: hosts(1).join(","), connectionExtra: ["fragmentation = yes"] }),
    }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { localSelectors: hosts(1) })], {
      extra: "[ike]\nfragmentation = false\nretransmit_timeout = 0.5\nretransmit_base = 1.2",
    }));
    await sluice.waitForEvents("ike-retransmit", 2, 10_000);
    assert.ok(await droppedFragments(rules) >= 3, "the kernel's fragments of the IKE_AUTH were dropped");
    assert.equal(sluice.events("child-up").length, 0);
    assert.doesNotMatch(responder.log(), /received fragment|IKE_SA .* established/);
  });
});
