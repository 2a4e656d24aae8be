// sluice's IKEv2 through a real NAT with strongSwan 5.9 on the other side
// (test/fixtures/interop/'s NatChain: client — nftables `masquerade random`
// — server), both ways round:
//
// 1. sluice is the client behind the NAT, initiating to a strongSwan server:
//    both detect the NAT (sluice status natLocal; strongSwan nat-remote, not
//    faked), IKE_SA_INIT goes to 500 and the rest floats to 4500 (strongSwan
//    logs the float and talks to the NAT's 4500 mapping), sluice sends NAT
//    keepalives (one 0xFF byte to 4500 every second, captured beyond the NAT
//    from the public port, and counted in its metrics), pings flow. Then the
//    NAT forgets its mapping mid-flow (conntrack -D: the next packet gets a
//    new public port) and traffic continues within 3 s: sluice's ESP reaches
//    strongSwan from the new port at once, but libipsec answers the old one
//    until an IKE message moves it, and sluice's liveness check (dpd = 1,
//    sent when the replies stop) is that message. (With dpd = 0 the pings
//    stop for good: 11/60.) strongSwan then rekeys the CHILD_SA at once, a
//    CREATE_CHILD_SA started by the IKE responder: the case that showed
//    sluice keying such children by the IKE SA's roles instead of the
//    exchange's (11/60 pings, every ESP packet on the new child failing
//    strongSwan's ICV check). Before sluice had CREATE_CHILD_SA it answered
//    NO_ADDITIONAL_SAS and strongSwan reauthenticated instead (a new IKE SA,
//    sluice its responder); either way traffic must continue.
// 2. strongSwan is the client behind the NAT (keep_alive = 1, dpd_delay = 1),
//    sluice the server: NAT detected on both sides (sluice natRemote, its
//    remote the NAT's public 4500 mapping; strongSwan nat-local), strongSwan's
//    keepalives counted at sluice, pings flow; the mapping changes mid-flow
//    and sluice follows the client to its new port from its first
//    authenticated ESP packet (rebind) and IKE, so at most a ping or two is
//    lost (observed: none), and pings from the server side reach the client
//    at its new port.
// Needs root, strongSwan, nftables, conntrack, ping, tcpdump: .ci/run installs them.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { sleep } from "../fixtures/interop/command.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs } from "../fixtures/interop/swanctl.js";
import { NatChain } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, onlySa, until } from "../fixtures/interop/steps.js";
import { Proc } from "../fixtures/twoEndpoints.js";

const skip = bedSkip(["ip", "ping", "nft", "conntrack", "tcpdump", "charon-systemd", "swanctl"]);
const METRICS_PORT = 9464;

/** Captures `count` NAT keepalives (UDP to 4500 with the one payload byte 0xFF, RFC 3948 §2.3) on an interface of `ns`; resolves with tcpdump's lines. */
async function captureKeepalives(ns: string, iface: string, count: number, timeoutMs: number): Promise<string[]> {
  const filter = "udp dst port 4500 and udp[4:2] = 9 and udp[8] = 0xff";
  const tcpdump = new Proc(spawn("ip", ["netns", "exec", ns, "tcpdump", "-l", "-n", "-i", iface, "-c", String(count), filter], { stdio: ["ignore", "pipe", "pipe"] }), `tcpdump in ${ns}`);
  const timer = setTimeout(() => tcpdump.kill(), timeoutMs);
  await tcpdump.exit;
  clearTimeout(timer);
  return tcpdump.stdout.trim().split("\n").filter((line) => line !== "");
}

/** Pings through the tunnel for `seconds` at 10 per second while the NAT forgets its mappings after 1 s; returns the pings and the mapping to port 4500 before and after. */
async function pingAcrossRebinding(bed: NatChain, seconds: number): Promise<{ received: number; transmitted: number; oldPort: number; newPort: number }> {
  const count = seconds * 10;
  const flow = bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count, interval: 0.1 });
  await sleep(1000);
  const before = (await bed.forceNewMapping()).filter((m) => m.serverPort === 4500);
  assert.equal(before.length, 1, `one mapping to 4500 before: ${JSON.stringify(before)}`);
  const { received, transmitted } = await flow;
  const after = await bed.mappings(4500);
  assert.equal(after.length, 1, `one mapping to 4500 after: ${JSON.stringify(after)}`);
  assert.notEqual(after[0]!.publicPort, before[0]!.publicPort, "masquerade random gave the flow a new public port");
  return { received, transmitted, oldPort: before[0]!.publicPort, newPort: after[0]!.publicPort };
}

describe("IKEv2 with strongSwan through a NAT", { skip }, () => {
  test("sluice client behind the NAT → strongSwan server: NAT detected, 4500, keepalives, traffic, and traffic again after the NAT's mapping changed", async (t) => {
    const bed = cleanUpAfter(t, await NatChain.create());
    const server = cleanUpAfter(t, await Charon.start(bed.server.ns, { swanctl: bedConfigs(bed.client, bed.server, { initiatorSeenAs: bed.nat.outside }).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.client, [initiatorPeer(bed.server, bed.client, { dpd: 1 })], { extra: "[keepalive]\ninterval = 1", metricsPort: METRICS_PORT }));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.server.site);

    // NAT detected on both sides; IKE_SA_INIT went to 500, the rest floated to 4500.
    const [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours!.natT, ours!.natLocal, ours!.local, ours!.remote], [true, true, `${bed.client.address}:4500`, `${bed.server.address}:4500`]);
    const natted = await bed.mappings();
    const ikePort = natted.find((m) => m.clientPort === 500 && m.serverPort === 500);
    const natTPort = natted.find((m) => m.clientPort === 4500 && m.serverPort === 4500);
    assert.ok(ikePort && natTPort, `mappings for 500 and 4500: ${JSON.stringify(natted)}`);
    const theirs = await onlySa(server);
    assert.deepEqual([theirs.natRemote, theirs.natLocal, theirs.natFake], [true, false, false], "strongSwan sees the NAT in front of sluice, none in front of itself");
    assert.deepEqual([theirs.remoteHost, theirs.remotePort, theirs.localPort], [bed.nat.outside, natTPort.publicPort, 4500]);
    assert.equal(theirs.children[0]!.encap, true);
    await server.waitForLog(new RegExp(`remote endpoint changed from ${bed.nat.outside.replaceAll(".", "\\.")}\\[${ikePort.publicPort}\\] to ${bed.nat.outside.replaceAll(".", "\\.")}\\[${natTPort.publicPort}\\]`));

    // Keepalives: one 0xFF byte to 4500 every second, through the NAT (seen on its outside, from the public port).
    const keepalives = await captureKeepalives(bed.nat.ns, bed.nat.outsideIface, 2, 5000);
    assert.equal(keepalives.length, 2, `two keepalives on the NAT's outside within 5 s: ${keepalives.join(" | ")}`);
    for (const line of keepalives) assert.ok(line.includes(`${bed.nat.outside}.${natTPort.publicPort} > ${bed.server.address}.4500`), line);
    assert.ok(await sluice.counter("sluice_endpoint_keepalives_total", { direction: "out" }) >= 2);

    const ping = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);

    // The NAT forgets the mapping mid-flow. sluice's ESP reaches strongSwan from the new port, but
    // strongSwan answers the old one until an IKE message moves it: sluice's liveness check (dpd = 1 s without
    // inbound traffic) is that message.
    const started = Date.now();
    const flow = await pingAcrossRebinding(bed, 6);
    t.diagnostic(`pings while the mapping changed (${flow.oldPort} → ${flow.newPort}): ${flow.received}/${flow.transmitted} in ${Date.now() - started} ms`);
    assert.ok(flow.received >= flow.transmitted - 30, `at most 3 s of pings lost: ${flow.received}/${flow.transmitted}`);
    const escaped = bed.nat.outside.replaceAll(".", "\\.");
    await server.waitForLog(new RegExp(`remote endpoint changed from ${escaped}\\[${flow.oldPort}\\] to ${escaped}\\[${flow.newPort}\\]`), { timeoutMs: 1000 });
    const afterwards = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 5, interval: 0.1 });
    assert.equal(afterwards.received, 5, afterwards.output);
    const back = await bed.ping(bed.server.ns, bed.client.inner, { from: bed.server.inner, count: 5, interval: 0.1 });
    assert.equal(back.received, 5, back.output);
    const [now] = await server.listSas();
    assert.deepEqual([now!.state, now!.remotePort], ["ESTABLISHED", flow.newPort], "strongSwan talks to the new port");
    assert.ok(await sluice.counter("sluice_ike_liveness_rtt_seconds_count") >= 1, "a liveness check was answered");
    // Whatever IKE SA carries the tunnel now (strongSwan may have replaced it), sluice knows it is behind the NAT and keeps the mapping open.
    const sas = (await sluice.status()).ike.filter((sa) => sa.state === "established");
    assert.equal(sas.length, 1, JSON.stringify(sas));
    assert.equal(sas[0]!.natLocal, true);
    const sent = await sluice.counter("sluice_endpoint_keepalives_total", { direction: "out" });
    await until(async () => ((await sluice.counter("sluice_endpoint_keepalives_total", { direction: "out" })) > sent ? true : undefined), "another keepalive", 3000);
    // strongSwan follows with a CHILD_SA rekey (or, refused, a reauthentication).
    const rekey = server.log().split("\n").filter((l) => /queueing CHILD_REKEY|CHILD_SA net\{\d+\} established|not support CHILD_SA rekeying|reauthenticating/.test(l));
    t.diagnostic(`strongSwan after the move: ${rekey.map((l) => l.replace(/^.*?\] /, "")).join(" | ") || "(no rekey)"}`);
  });

  test("strongSwan client behind the NAT → sluice server: NAT detected, keepalives received, traffic, and sluice follows the client's new port", async (t) => {
    const bed = cleanUpAfter(t, await NatChain.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.server, [responderPeer(bed.client, bed.server)], { metricsPort: METRICS_PORT }));
    const client = cleanUpAfter(t, await Charon.start(bed.client.ns, { keepAlive: 1, swanctl: bedConfigs(bed.client, bed.server, { initiatorOverrides: { dpdDelay: 1 } }).initiator }));
    await client.initiate("net");
    await sluice.routed(bed.client.site);

    const natTPort = (await bed.mappings(4500))[0]!.publicPort;
    const [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours!.natT, ours!.natLocal, ours!.natRemote, ours!.remote], [true, false, true, `${bed.nat.outside}:${natTPort}`], "sluice sees the NAT in front of the client, at its public 4500 mapping");
    const theirs = await onlySa(client);
    assert.deepEqual([theirs.natLocal, theirs.natFake, theirs.remotePort], [true, false, 4500], "strongSwan knows it is behind a NAT");
    await client.waitForLog(/local host is behind NAT, sending keep alives/);
    await until(async () => ((await sluice.counter("sluice_endpoint_keepalives_total", { direction: "in" })) >= 1 ? true : undefined), "a NAT keepalive at sluice", 5000);

    const ping = await bed.ping(bed.client.ns, bed.server.inner, { from: bed.client.inner, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);

    const flow = await pingAcrossRebinding(bed, 5);
    t.diagnostic(`pings while the mapping changed (${flow.oldPort} → ${flow.newPort}): ${flow.received}/${flow.transmitted}`);
    // sluice rebinds on the first authenticated ESP packet from the new port: at most a ping or two lost.
    assert.ok(flow.received >= flow.transmitted - 3, `sluice followed at once: ${flow.received}/${flow.transmitted}`);
    const moved = sluice.events("peer-address");
    assert.ok(moved.length >= 1, "sluice logged the move");
    const [now] = (await sluice.status()).ike;
    assert.equal(now!.remote, `${bed.nat.outside}:${flow.newPort}`, "sluice's IKE SA follows the client");
    const back = await bed.ping(bed.server.ns, bed.client.inner, { from: bed.server.inner, count: 5, interval: 0.1 });
    assert.equal(back.received, 5, back.output);
  });
});
