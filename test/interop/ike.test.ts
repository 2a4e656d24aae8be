// sluice's IKEv2 against the real strongSwan 5.9 (charon-systemd with
// kernel-libipsec) in network namespaces, both roles (test/fixtures/interop/):
//
// 1. sluice initiator → strongSwan responder, and strongSwan initiator →
//    sluice responder: pings both ways and a 100 MB TCP transfer through the
//    tunnel (sha256 checked at the far end), both sides' ESP counters showing
//    it crossed ESP; DELETE from each side.
// 2. The same over AES-256-GCM ESP (RFC 4106, esp_proposals aes256gcm16 on
//    both sides): pings both ways and 100 MB over TCP each way (sluice's
//    AES pass seals one and opens the other), strongSwan's child showing
//    AES_GCM_16/256 and both sides' counters the bytes.
// Needs root, strongSwan, nftables, conntrack, ping, iperf3-free (the bytes
// are moved by test/fixtures/netTool.ts): .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs } from "../fixtures/interop/swanctl.js";
import { TwoHosts, type Host } from "../fixtures/interop/topology.js";
import { cleanUpAfter, onlySa } from "../fixtures/interop/steps.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";
import { tcpTransfer } from "../fixtures/interop/tcpTransfer.js";

const skip = bedSkip();

/** Five pings each way between the inner addresses, all answered. */
async function pingBothWays(bed: TwoHosts): Promise<void> {
  const there = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 5, interval: 0.1 });
  assert.equal(there.received, 5, there.output);
  const back = await bed.ping(bed.b.ns, bed.a.inner, { from: bed.b.inner, count: 5, interval: 0.1 });
  assert.equal(back.received, 5, back.output);
}

describe("IKEv2 with strongSwan", { skip }, () => {
  test("sluice initiator → strongSwan responder: ping both ways, 100 MB over TCP, counters on both sides, DELETE from sluice", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a)]));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    await pingBothWays(bed);
    await tcpTransfer(t, bed.a, bed.b, 100 * 1024 * 1024);
    const theirs = await onlySa(responder);
    assert.equal(theirs.state, "ESTABLISHED");
    assert.deepEqual([theirs.encrAlg, theirs.prfAlg, theirs.dhGroup], ["CHACHA20_POLY1305", "PRF_HMAC_SHA2_256", "CURVE_25519"]);
    const [ours] = (await sluice.status()).ike;
    assert.equal(ours!.state, "established");
    const child = ours!.children[0]!;
    const their = theirs.children[0]!;
    assert.equal(child.spiOut, their.spiIn, "our outbound SPI is theirs inbound");
    assert.equal(child.spiIn, their.spiOut);
    assert.ok(child.bytesOut > 100 * 1024 * 1024, `sluice sealed the transfer: ${child.bytesOut} bytes`);
    assert.ok(their.bytesIn > 100 * 1024 * 1024, `strongSwan opened it: ${their.bytesIn} bytes`);
    assert.ok(child.packetsIn >= 10 && their.packetsOut >= 10);
    // DELETE from sluice: strongSwan removes its SAs.
    const terminated = await sluice.terminate("b");
    assert.equal(terminated.ok, true);
    await responder.waitForLog(/deleting IKE_SA|IKE_SA .* deleted|received DELETE for IKE_SA/i, { timeoutMs: 10_000 });
    const deadline = Date.now() + 10_000;
    while ((await responder.listSas()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await responder.listSas()).length, 0, responder.logTail());
  });

  test("strongSwan initiator → sluice responder: ping both ways, 100 MB over TCP, DELETE from strongSwan", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: bedConfigs(bed.a, bed.b).initiator }));
    const output = await initiator.initiate("net");
    assert.match(output, /CHILD_SA net\{\d+\} established/);
    await sluice.waitForEvent("child-up", 5000);
    await sluice.routed(bed.a.site);
    await pingBothWays(bed);
    await tcpTransfer(t, bed.a, bed.b, 100 * 1024 * 1024);
    const theirs = await onlySa(initiator);
    const [ours] = (await sluice.status()).ike;
    assert.equal(ours!.role, "responder");
    assert.equal(ours!.remoteId, "a.sluice.test");
    assert.ok(ours!.children[0]!.bytesIn > 100 * 1024 * 1024, "sluice opened the transfer");
    assert.ok(theirs.children[0]!.bytesOut > 100 * 1024 * 1024, "strongSwan sealed it");
    await initiator.terminate({ ike: "site" });
    await sluice.waitForEvent("ike-down", 10_000);
    assert.equal((await sluice.status()).ike.length, 0);
  });

  test("AES-256-GCM ESP, sluice initiator → strongSwan responder: ping both ways, 100 MB over TCP each way", { timeout: 600_000 }, async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: "aes256gcm16" } }).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: ["aes256gcm16"] })]));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    await pingBothWays(bed);
    await tcpTransfer(t, bed.a, bed.b, 100 * 1024 * 1024);
    await tcpTransfer(t, bed.b, bed.a, 100 * 1024 * 1024, 5202);
    const theirs = await onlySa(responder);
    const their = theirs.children[0]!;
    assert.deepEqual([their.encrAlg, String(their.raw["encr-keysize"] ?? "")], ["AES_GCM_16", "256"]);
    const [ours] = (await sluice.status()).ike;
    const child = ours!.children[0]!;
    assert.equal(child.esp, "aes256gcm16/noesn");
    assert.ok(child.bytesOut > 100 * 1024 * 1024 && their.bytesIn > 100 * 1024 * 1024, `sluice sealed ${child.bytesOut} bytes, strongSwan opened ${their.bytesIn}`);
    assert.ok(child.bytesIn > 100 * 1024 * 1024 && their.bytesOut > 100 * 1024 * 1024, `strongSwan sealed ${their.bytesOut} bytes, sluice opened ${child.bytesIn}`);
  });
});
