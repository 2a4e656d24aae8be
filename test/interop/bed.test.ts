// The interop bed itself, proven with strongSwan on both ends (and the
// reference for the sluice-vs-strongSwan tests that will use the same
// fixtures, test/fixtures/interop/): two charons negotiate IKEv2 with a PSK,
// ChaCha20-Poly1305 + X25519 for IKE and ChaCha20-Poly1305 for ESP in UDP,
// and carry pings between their inner addresses,
// - between two namespaces joined by a veth, both sides' SA counters agreeing
//   with the pings;
// - behind a masquerading NAT: NAT detected, traffic flows, then the NAT
//   forgets the mapping mid-flow (the client's next packet gets a new public
//   port) and traffic flows again once strongSwan noticed (a DPD from the new
//   port; libipsec itself never reports a moved ESP flow);
// - through a path that drops 30% of UDP 500/4500 datagrams both ways: the
//   handshake completes by retransmission (short retransmit timeouts keep
//   it quick).
// The capture tool records a fixture whose every ESP packet OpenSSL and
// sluice both open; its key and ESP tools reproduce the committed fixture's
// files (that part needs nothing).
// Needs root, strongSwan (charon-systemd, swanctl, kernel-libipsec),
// nftables, conntrack and ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { dropUdp } from "../fixtures/interop/impair.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs, type IkeSaInfo } from "../fixtures/interop/swanctl.js";
import { NatChain, TwoHosts, type Topology } from "../fixtures/interop/topology.js";
import { sleep } from "../fixtures/interop/command.js";
import { recordCapture } from "../fixtures/interop/capture.js";
import { keysFromLog, keysText, sasJson, type SasJson } from "../fixtures/interop/charonKeys.js";
import { checkEsp } from "../fixtures/interop/espDecrypt.js";
import { espPackets, readPcap } from "../fixtures/pcap.js";
import { InboundSa } from "../../src/esp.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const skip = bedSkip();

/** Tears down in reverse order of creation, whatever the test did. */
function cleanUpAfter<T extends Topology | Charon>(t: TestContext, thing: T): T {
  t.after(() => ("stop" in thing ? thing.stop() : thing.destroy()));
  return thing;
}

/** The one IKE_SA a charon has, with its one CHILD_SA. */
async function onlySa(charon: Charon): Promise<IkeSaInfo> {
  const sas = await charon.listSas();
  assert.equal(sas.length, 1, `${charon.ns}: IKE_SAs ${JSON.stringify(sas.map((s) => s.name))}\n${charon.logTail()}`);
  assert.equal(sas[0]!.children.length, 1, `${charon.ns}: CHILD_SAs of ${sas[0]!.name}`);
  return sas[0]!;
}

/** The negotiated algorithms the project speaks, on both SAs. */
function assertProposals(sa: IkeSaInfo): void {
  assert.equal(sa.state, "ESTABLISHED");
  assert.deepEqual([sa.encrAlg, sa.prfAlg, sa.dhGroup], ["CHACHA20_POLY1305", "PRF_HMAC_SHA2_256", "CURVE_25519"]);
  const child = sa.children[0]!;
  assert.equal(child.state, "INSTALLED");
  assert.deepEqual([child.mode, child.protocol, child.encrAlg, child.encap], ["TUNNEL", "ESP", "CHACHA20_POLY1305", true]);
}

describe("interop bed: strongSwan against strongSwan", { skip }, () => {
  test("two namespaces: the tunnel comes up, pings cross it, and both sides count them", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const conf = bedConfigs(bed.a, bed.b);
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: conf.responder }));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: conf.initiator }));

    const output = await initiator.initiate("net");
    assert.match(output, /selected proposal: ESP:CHACHA20_POLY1305\/NO_EXT_SEQ/);
    assert.match(output, /CHILD_SA net\{\d+\} established/);

    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 5, interval: 0.1 });
    assert.equal(ping.received, 5, ping.output);

    const i = await onlySa(initiator);
    const r = await onlySa(responder);
    assertProposals(i);
    assertProposals(r);
    assert.deepEqual([i.initiator, r.initiator], [true, false]);
    assert.deepEqual([i.localHost, i.remoteHost, i.localPort, i.remotePort], [bed.a.address, bed.b.address, 4500, 4500], "ESP in UDP on 4500 both ways");
    assert.deepEqual([r.localId, r.remoteId], ["b.sluice.test", "a.sluice.test"]);
    const [ic, rc] = [i.children[0]!, r.children[0]!];
    assert.equal(ic.spiOut, rc.spiIn, "the initiator sends on the SPI the responder receives on");
    assert.equal(rc.spiOut, ic.spiIn);
    assert.deepEqual([ic.localTs, ic.remoteTs], [[bed.a.site], [bed.b.site]]);
    // Five echo requests of 84 bytes one way, five replies the other: the counters of both ends agree.
    assert.deepEqual([ic.packetsOut, rc.packetsIn, rc.packetsOut, ic.packetsIn], [5, 5, 5, 5]);
    assert.deepEqual([ic.bytesOut, rc.bytesIn, rc.bytesOut, ic.bytesIn], [420, 420, 420, 420]);

    // The DELETE reaches the responder: nothing left on either side.
    await initiator.terminate({ ike: "site" });
    assert.deepEqual(await initiator.listSas(), []);
    await responder.waitForLog(/IKE_SA deleted/);
    assert.deepEqual(await responder.listSas(), []);
  });

  test("behind a NAT: detected, traffic flows, and flows again after the NAT moved the flow to a new port", async (t) => {
    const bed = cleanUpAfter(t, await NatChain.create());
    const conf = bedConfigs(bed.client, bed.server, {
      initiatorSeenAs: bed.nat.outside,
      // Real NAT detection (no faked encap); the client's DPD after 1 s of silence is what tells the server.
      initiatorOverrides: { encap: false, dpdDelay: 1 },
      responderOverrides: { encap: false },
    });
    const server = cleanUpAfter(t, await Charon.start(bed.server.ns, { swanctl: conf.responder }));
    const client = cleanUpAfter(t, await Charon.start(bed.client.ns, { swanctl: conf.initiator }));
    await client.initiate("net");

    const c = await onlySa(client);
    const s = await onlySa(server);
    assertProposals(c);
    assertProposals(s);
    // (strongSwan's client also marks the server as behind a NAT, nat-remote; not asserted either way.)
    assert.deepEqual([c.natLocal, c.natFake], [true, false], "the client finds itself behind a NAT");
    assert.deepEqual([s.natLocal, s.natRemote, s.natFake], [false, true, false], "the server finds the client behind a NAT");
    const [before] = await bed.mappings(4500);
    assert.ok(before, `the NAT maps the client's port 4500: ${JSON.stringify(await bed.mappings())}`);
    assert.deepEqual([s.remoteHost, s.remotePort], [bed.nat.outside, before.publicPort], "the server talks to the NAT's mapping");
    let ping = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);

    const mark = server.logLines();
    const forgotten = await bed.forceNewMapping();
    assert.ok(forgotten.some((m) => m.publicPort === before.publicPort));
    // Echo requests still reach the server from the new port; its replies go to the old one, into nothing,
    // until the client's DPD (an IKE message from the new port) makes the server move its SAs.
    const started = Date.now();
    let recovered = -1;
    while (Date.now() - started < 15000) {
      ping = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 1, wait: 0.5 });
      if (ping.received === 1) {
        recovered = Date.now() - started;
        break;
      }
    }
    assert.ok(recovered >= 0, `no reply through the tunnel within 15 s of the new mapping\n${server.logTail()}`);
    const [after] = await bed.mappings(4500);
    assert.ok(after && after.publicPort !== before.publicPort, `the NAT chose a new public port (was ${before.publicPort}, now ${after?.publicPort})`);
    const moved = await server.waitForLog(/remote endpoint changed from (\S+)\[(\d+)\] to (\S+)\[(\d+)\]/, { fromLine: mark, timeoutMs: 1000 });
    assert.deepEqual(moved.slice(1).map(String), [bed.nat.outside, String(before.publicPort), bed.nat.outside, String(after.publicPort)]);
    const s2 = (await server.listSas())[0]!;
    assert.equal(s2.remotePort, after.publicPort, "the server now talks to the new mapping");
    const rekeyed = server.log().split("\n").slice(mark).some((line) => /queueing CHILD_REKEY task/.test(line));
    t.diagnostic(`traffic back ${recovered} ms after the NAT forgot the mapping (port ${before.publicPort} -> ${after.publicPort}); server rekeyed the CHILD_SA: ${rekeyed}`);
    ping = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 5, interval: 0.1 });
    assert.equal(ping.received, 5, ping.output);
  });

  test("30% of UDP 500/4500 lost both ways: the handshake completes by retransmission", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const conf = bedConfigs(bed.a, bed.b);
    // Resend after 0.4 s × 1.2^k, 12 times: an exchange fails only if 13 round trips in a row do (0.51^13 ≈ 2e-4).
    const retransmit = { timeout: 0.4, base: 1.2, tries: 12 };
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: conf.responder, retransmit }));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: conf.initiator, retransmit }));
    const loss = await dropUdp(bed.b.ns, 30);

    // A handshake is 4 datagrams, all delivered with probability 0.7^4 ≈ 24%: handshake again (up to 6 times)
    // until one needed a retransmission, so that the test shows one.
    const handshakes: { ms: number; retransmits: number }[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      const mark = initiator.logLines();
      const started = Date.now();
      await initiator.initiate("net", { timeoutS: 25 });
      const lines = initiator.log().split("\n").slice(mark);
      handshakes.push({ ms: Date.now() - started, retransmits: lines.filter((line) => /retransmit \d+ of request with message ID/.test(line)).length });
      if (handshakes.at(-1)!.retransmits > 0) break;
      await initiator.terminate({ ike: "site" }, { force: true, timeoutS: 1 }).catch(() => undefined);
      await sleep(100);
    }
    t.diagnostic(`handshakes (ms, retransmissions): ${handshakes.map((h) => `${h.ms} ms/${h.retransmits}`).join(", ")}`);
    assert.ok(handshakes.at(-1)!.retransmits > 0, "no handshake of six lost a datagram");
    const i = (await initiator.listSas()).find((sa) => sa.state === "ESTABLISHED" && sa.children.length === 1);
    assert.ok(i, initiator.logTail());
    assertProposals(i);

    // ESP shares port 4500, so pings are lost too (about half the round trips): some get through.
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 10, interval: 0.05, wait: 1 });
    assert.ok(ping.received > 0 && ping.received < 10 + 1, ping.output);
    const counters = await loss.counters();
    assert.ok(counters.dropped > 0 && counters.passed > 0, JSON.stringify(counters));
    t.diagnostic(`loss rule: ${counters.dropped} dropped, ${counters.passed} passed (${Math.round((100 * counters.dropped) / (counters.dropped + counters.passed))}%); pings ${ping.received}/10`);
    await loss.remove();
  });
});

describe("interop bed: the capture tools", () => {
  const fixture = (name: string): string => new URL(`../../../test/fixtures/strongswan/${name}`, import.meta.url).pathname;

  test("keys.txt gives the committed sas.json and itself again; the ESP check prints the committed esp-decrypt.txt", () => {
    for (const dir of ["", "tcpdump/"]) {
      const committed = JSON.parse(readFileSync(fixture(`${dir}sas.json`), "utf8")) as SasJson;
      const logged = keysFromLog(readFileSync(fixture(`${dir}keys.txt`), "utf8"));
      assert.deepEqual({ ...sasJson(logged), capture: committed.capture }, committed, `${dir}sas.json`);
      assert.equal(keysText(logged), readFileSync(fixture(`${dir}keys.txt`), "utf8"));
      const check = checkEsp(readPcap(fixture(`${dir}capture.pcap`), { strict: true }), committed.sas);
      assert.ok(check.ok);
      assert.equal(`${check.lines.join("\n")}\n`, readFileSync(fixture(`${dir}esp-decrypt.txt`), "utf8"));
      // A wrong salt fails every packet: the check can fail.
      const wrong = committed.sas.map((sa) => ({ ...sa, salt: sa.salt.replace(/^./, (c) => (c === "0" ? "1" : "0")) }));
      assert.equal(checkEsp(readPcap(fixture(`${dir}capture.pcap`)), wrong).verified, 0);
    }
  });

  test("a fresh capture with logged keys checks out, and sluice opens every ESP packet of it", { skip: bedSkip(["ip", "ping", "tcpdump", "charon-systemd", "swanctl"]) }, async () => {
    const out = mkdtempSync(join(tmpdir(), "sluice-bed-capture-"));
    try {
      const result = await recordCapture({ outDir: out, count: 4, tool: "tcpdump", logs: true });
      assert.match(result.summary, /8 ESP packets, 8 decrypted and verified, 0 failed, expected 8 - OK/);
      const sas = JSON.parse(readFileSync(join(out, "sas.json"), "utf8")) as SasJson;
      assert.equal(sas.keysFrom, "initiator");
      assert.ok(Object.values(sas.ike).every((key) => key !== null && /^[0-9a-f]{64}([0-9a-f]{8})?$/.test(key)), "SK_d, SK_ei, SK_er, SK_pi, SK_pr logged");
      assert.match(readFileSync(join(out, "initiator.log"), "utf8"), /parsed IKE_AUTH response 1/);
      const inbound = new Map(sas.sas.map((sa) => [parseInt(sa.spi, 16), new InboundSa({ spi: parseInt(sa.spi, 16), key: Buffer.from(sa.key, "hex"), salt: Buffer.from(sa.salt, "hex"), esn: false, replayWindow: 64 })]));
      try {
        const packets = espPackets(readPcap(join(out, "capture.pcap"), { strict: true }));
        assert.equal(packets.length, 8);
        for (const p of packets) assert.equal(inbound.get(p.spi)!.open(p.payload).status, "ok", `frame ${p.frame}`);
      } finally {
        for (const sa of inbound.values()) sa.destroy();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
