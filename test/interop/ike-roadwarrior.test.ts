// Road warriors against the real strongSwan 5.9 in network namespaces
// (test/fixtures/interop/), certificates from a PKI the openssl command makes
// for this run (test/fixtures/pki.ts):
//
// 1. strongSwan as a road-warrior client (vips = 0.0.0.0, ::) of a sluice
//    gateway with [[pool]]s: it gets one address of each family from
//    sluice's pool (swanctl --list-sas, ip addr in its namespace), pings the
//    host behind the gateway from it, and after swanctl --terminate and
//    --initiate gets the same addresses back; sluice status shows the client.
// 2. sluice as a client (vips) of a strongSwan gateway with pools: the
//    address on sluice's TUN, the routes into it, the DNS servers in the
//    namespace's resolv.conf through resolvconf, traffic through; all of it
//    taken back by a clean stop (and a full tunnel of both families, Ed25519
//    this time). The gateway restarts: the client connects
//    again by itself, and has its address, routes and DNS again.
// 3. The kill switch: a sluice client with kill_switch = true and a capture
//    on its outer interface while traffic to a tunnelled destination runs
//    the whole time; the gateway stopped (sluice trying to reconnect), then
//    sluice killed with SIGKILL:
//    not one clear packet to that destination leaves; `sluice down` then
//    removes the table, and the next ping goes out in clear.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { mustRun, runIn, sleep } from "../fixtures/interop/command.js";
import { TwoHosts } from "../fixtures/interop/topology.js";
import { SluiceDaemon, type SluiceIkePeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, until } from "../fixtures/interop/steps.js";
import { certCharon, hasOpenresolv, isolateResolvconf, poolGateway, roadWarriorClient, sluiceDown, sluiceStatus } from "../fixtures/interop/roadWarrior.js";
import { createPki, pkiSkip, type EeFiles, type TestPki } from "../fixtures/pki.js";
import { hasTool } from "../fixtures/netns.js";

const skip = bedSkip() || pkiSkip();

/** The pool sluice's gateway hands out, and its DNS servers. */
const POOL = `[[pool]]\nname = "laptops"\naddresses = ["10.3.0.0/24", "fd00:3::/120"]\ndns = ["10.3.0.1", "fd00:3::1"]\n`;

/** sluice as a gateway with the "laptops" pool for any client the root certifies. */
function gatewayPeer(pki: TestPki, site: string): SluiceIkePeer {
  return {
    name: "laptops",
    selectors: ["10.3.0.0/24", "fd00:3::/120"],
    localSelectors: [site],
    localId: pki.ee.gw.id,
    remoteId: "%any",
    psk: null,
    start: "none",
    ike: { pools: ["laptops"], cert_file: pki.ee.gw.chain, key_file: pki.ee.gw.key, ca_files: [pki.root.cert], crl_file: pki.crl },
  };
}

/** sluice as a client of a gateway at `gateway`, asking for an IPv4 address, tunnelling `selectors`. */
function clientPeer(pki: TestPki, ee: EeFiles, gateway: string, selectors: string[], extra: Partial<SluiceIkePeer> = {}): SluiceIkePeer {
  return {
    name: "office",
    endpoint: gateway,
    selectors,
    localSelectors: ["0.0.0.0/0"],
    localId: ee.id,
    remoteId: "gw.sluice.test",
    psk: null,
    start: "start",
    dpdAction: "restart",
    ...extra,
    ike: { vips: ["0.0.0.0"], cert_file: ee.chain, key_file: ee.key, ca_files: [pki.root.cert], crl_file: pki.crl, ...extra.ike },
  };
}

/** The virtual IPs strongSwan's IKE_SA got (swanctl --list-sas: local-vips). */
function localVips(raw: Record<string, unknown>): string[] {
  const vips = raw["local-vips"];
  return Array.isArray(vips) ? vips.map(String) : typeof vips === "string" ? [vips] : [];
}

describe("road warriors with strongSwan", { skip }, () => {
  let pki: TestPki;
  before(() => {
    pki = createPki();
  });
  after(() => pki?.destroy());

  test("strongSwan client (vips 0.0.0.0, ::) → sluice gateway with pools: addresses from the pool, ping behind the gateway, the same addresses after a reconnect", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const gateway = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [gatewayPeer(pki, bed.b.site)], { extra: POOL, metricsPort: 9561 }));
    const client = cleanUpAfter(t, await certCharon(bed.a.ns, pki, pki.ee.p256));
    await client.load(roadWarriorClient({ local: bed.a.address, gateway: bed.b.address, id: pki.ee.p256.id, gatewayId: pki.ee.gw.id, remoteTs: [bed.b.site] }));

    const connect = async (): Promise<string[]> => {
      const output = await client.initiate("net", { ike: "rw" });
      assert.match(output, /CHILD_SA net\{\d+\} established/);
      const [sa] = await client.listSas();
      const vips = localVips(sa!.raw);
      assert.equal(vips.length, 2, `local-vips ${JSON.stringify(sa!.raw["local-vips"])}\n${client.logTail()}`);
      return vips;
    };
    const vips = await connect();
    const [v4, v6] = [vips.find((v) => !v.includes(":"))!, vips.find((v) => v.includes(":"))!];
    assert.match(v4, /^10\.3\.0\.\d+$/);
    assert.match(v6, /^fd00:3::[0-9a-f]+$/);
    // charon (kernel-libipsec) put them on an interface of its namespace.
    const addresses = await mustRun("ip", ["-n", bed.a.ns, "addr", "show"]);
    assert.ok(addresses.includes(`${v4}/32`), addresses);
    assert.match(addresses, new RegExp(`${v6.replaceAll(":", ":")}/128`));
    // The child's client side is exactly its virtual IPs (sluice narrowed the selectors).
    const [sa] = await client.listSas();
    assert.deepEqual([...sa!.children[0]!.localTs].sort(), [`${v4}/32`, `${v6}/128`].sort());

    await gateway.routed("10.3.0.0/24");
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: v4, count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);
    const lease = gateway.events("vip-lease");
    assert.equal(lease.length, 1);
    assert.match(String(lease[0]!.msg), new RegExp(`p256\\.sluice\\.test gets ${v4.replaceAll(".", "\\.")}`));

    // sluice status: the client with its identity, virtual IPs and certificate subject.
    const status = await sluiceStatus(bed.b.ns, gateway.socket);
    assert.match(status, new RegExp(`remote 'p256\\.sluice\\.test'`));
    assert.match(status, new RegExp(`virtual IP ${v4.replaceAll(".", "\\.")}, ${v6}`));
    assert.match(status, /certificate "C=CH, O=sluice test, CN=p256\.sluice\.test"/);

    // Metrics: one client with a virtual IP, two addresses of the pool in use (one per family).
    assert.equal(await gateway.counter("sluice_ike_clients", { peer: "laptops", vip: "yes" }), 1);
    assert.equal(await gateway.counter("sluice_pool_addresses", { pool: "laptops", state: "online" }), 2);
    assert.equal(await gateway.counter("sluice_pool_size", { pool: "laptops" }), 253 + 254);

    // Reconnect: the lease follows the identity.
    await client.terminate({ ike: "rw" });
    await until(async () => ((await gateway.status()).ike.length === 0 ? true : undefined), "the gateway to drop the client's IKE SA");
    assert.equal(await gateway.counter("sluice_ike_clients"), 0);
    assert.equal(await gateway.counter("sluice_pool_addresses", { pool: "laptops", state: "offline" }), 2, "the leases are kept for the client while it is away");
    const again = await connect();
    assert.deepEqual([...again].sort(), [...vips].sort());
    const ping2 = await bed.ping(bed.a.ns, bed.b.inner, { from: v4, count: 2, interval: 0.1 });
    assert.equal(ping2.received, 2, ping2.output);
  });

  test("sluice client (vips) → strongSwan gateway with pools: address on the TUN, routes, DNS through resolvconf, traffic; all taken back on stop", { skip: hasOpenresolv() ? false : "needs openresolv (resolvconf) for the DNS check" }, async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const resolv = isolateResolvconf(bed.a.ns);
    t.after(() => resolv.destroy());
    const gatewayConf = poolGateway({ local: bed.b.address, id: pki.ee.gw.id, pool4: "10.4.0.10-10.4.0.20", dns: ["10.77.2.53", "10.77.2.54"], localTs: [bed.b.site] });
    const gateway = cleanUpAfter(t, await certCharon(bed.b.ns, pki, pki.ee.gw));
    await gateway.load(gatewayConf);
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [clientPeer(pki, pki.ee.p384, bed.b.address, [bed.b.site])]));
    await sluice.waitForEvent("child-up", 15_000);
    const [network] = await sluice.waitForEvents("client-network", 1);
    assert.deepEqual(network!.addresses, ["10.4.0.10"]);
    assert.deepEqual(network!.dns, ["10.77.2.53", "10.77.2.54"]);
    assert.equal(network!.dnsManager, "resolvconf");
    const addresses = await mustRun("ip", ["-n", bed.a.ns, "addr", "show", "dev", "sluice0"]);
    assert.match(addresses, /inet 10\.4\.0\.10\/32/);
    await sluice.routed(bed.b.site);
    assert.match(resolv.read(), /nameserver 10\.77\.2\.53\nnameserver 10\.77\.2\.54/);
    // The gateway's view: the lease, and a child narrowed to it.
    const [sa] = await gateway.listSas();
    assert.deepEqual(sa!.raw["remote-vips"], ["10.4.0.10"]);
    assert.deepEqual(sa!.children[0]!.remoteTs, ["10.4.0.10/32"]);
    // Traffic: without -I the kernel takes the virtual IP as source (the TUN's address).
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);
    const [child] = (await gateway.listSas())[0]!.children;
    assert.ok(child!.packetsIn >= 3, `strongSwan counted ${child!.packetsIn} packets in`);

    // The gateway restarts (its DELETE, then a new charon): the client connects again by itself (dpd_action restart).
    await gateway.stop();
    await sluice.waitForEvents("ike-reconnect", 1, 5000);
    const again = cleanUpAfter(t, await certCharon(bed.b.ns, pki, pki.ee.gw));
    await again.load(gatewayConf);
    await sluice.waitForEvents("child-up", 2, 30_000);
    const [back] = await again.listSas();
    assert.deepEqual(back!.raw["remote-vips"], ["10.4.0.10"]);
    await sluice.routed(bed.b.site);
    const ping2 = await bed.ping(bed.a.ns, bed.b.inner, { count: 3, interval: 0.1 });
    assert.equal(ping2.received, 3, ping2.output);
    assert.match(resolv.read(), /nameserver 10\.77\.2\.53/);

    await sluice.stop();
    assert.equal(resolv.read().includes("10.77.2.53"), false, resolv.read());
    const left = await runIn(bed.a.ns, "ip", ["addr", "show", "dev", "sluice0"]);
    assert.notEqual(left.code, 0, "the TUN device went with sluice");
  });

  test("sluice client, full tunnel (vips 0.0.0.0 and ::, selectors 0.0.0.0/0 and ::/0) → strongSwan gateway: both addresses, the /1 routes of each family, IPv4 and IPv6 through", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // An IPv6 host behind the gateway (the bed's links are IPv4 only; the tunnel carries IPv6 inside).
    await mustRun("ip", ["-n", bed.b.ns, "addr", "add", "fd00:77:2::1/128", "dev", "lo"]);
    const gateway = cleanUpAfter(t, await certCharon(bed.b.ns, pki, pki.ee.gw));
    await gateway.load(poolGateway({ local: bed.b.address, id: pki.ee.gw.id, pool4: "10.4.0.10-10.4.0.20", pool6: "fd00:4::10-fd00:4::20", localTs: ["0.0.0.0/0", "::/0"] }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [clientPeer(pki, pki.ee.ed25519, bed.b.address, ["0.0.0.0/0", "::/0"], { localSelectors: ["0.0.0.0/0", "::/0"], ike: { vips: ["0.0.0.0", "::"] } })]));
    await sluice.waitForEvent("child-up", 15_000);
    const [network] = await sluice.waitForEvents("client-network", 1);
    assert.deepEqual([...(network!.addresses as string[])].sort(), ["10.4.0.10", "fd00:4::10"]);
    const [sa] = await gateway.listSas();
    assert.deepEqual([...(sa!.raw["remote-vips"] as string[])].sort(), ["10.4.0.10", "fd00:4::10"]);
    assert.deepEqual([...sa!.children[0]!.remoteTs].sort(), ["10.4.0.10/32", "fd00:4::10/128"]);
    // A full tunnel is routed as two halves of each family, so the system's default routes stay.
    await sluice.routed("0.0.0.0/1");
    await sluice.routed("128.0.0.0/1");
    const routes6 = await mustRun("ip", ["-n", bed.a.ns, "-6", "route", "show", "dev", "sluice0"]);
    assert.match(routes6, /^::\/1 /m);
    assert.match(routes6, /^8000::\/1 /m);
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { count: 3, interval: 0.1 });
    assert.equal(ping.received, 3, ping.output);
    const ping6 = await runIn(bed.a.ns, "ping", ["-6", "-n", "-q", "-c", "3", "-i", "0.1", "-W", "1", "fd00:77:2::1"], { timeoutMs: 20_000 });
    assert.match(ping6.stdout, /3 packets transmitted, 3 received/, ping6.stdout + ping6.stderr);
    // IKE and ESP to the gateway still go outside the tunnel: the tunnel stays up through all of this.
    const [child] = (await gateway.listSas())[0]!.children;
    assert.ok(child!.packetsIn >= 6, `strongSwan counted ${child!.packetsIn} packets in`);
  });

  test("kill switch: gateway stopped, sluice SIGKILLed, not one clear packet to a tunnelled destination; sluice down opens the network", { skip: hasTool("tcpdump") ? false : "needs tcpdump" }, async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // sluice down also removes a resolvconf entry: kept to the test's own files, never the machine's.
    const resolv = isolateResolvconf(bed.a.ns);
    t.after(() => resolv.destroy());
    // A default route towards B: without the tunnel (and the kill switch), a packet to B's inner address leaves in clear.
    await mustRun("ip", ["-n", bed.a.ns, "route", "add", "default", "via", bed.b.address]);
    const gateway = cleanUpAfter(t, await certCharon(bed.b.ns, pki, pki.ee.gw));
    await gateway.load(poolGateway({ local: bed.b.address, id: pki.ee.gw.id, pool4: "10.4.0.10-10.4.0.20", localTs: [bed.b.site] }));
    // The tunnelled destination is B's inner address; B's link address stays outside (IKE, ESP).
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [clientPeer(pki, pki.ee.p256, bed.b.address, [bed.b.site])], { extra: "[client]\nkill_switch = true\n" }));
    await sluice.waitForEvent("child-up", 15_000);
    await sluice.routed(bed.b.site);
    const table = await mustRun("ip", ["netns", "exec", bed.a.ns, "nft", "list", "table", "inet", "sluice_killswitch"]);
    assert.match(table, /sluice0/);

    // Everything on A's outer interface that is not IKE/ESP-in-UDP: a clear packet to 10.77.2.1 would be here.
    const capture = spawn("ip", ["netns", "exec", bed.a.ns, "tcpdump", "-n", "-l", "-i", bed.a.iface, "-U", "not arp and not (udp port 500 or udp port 4500)"], { stdio: ["ignore", "pipe", "pipe"] });
    let captured = "";
    let tcpdumpErr = "";
    capture.stdout.setEncoding("utf8").on("data", (text: string) => (captured += text));
    capture.stderr.setEncoding("utf8").on("data", (text: string) => (tcpdumpErr += text));
    t.after(() => capture.kill("SIGKILL"));
    await until(() => (tcpdumpErr.includes("listening on") ? true : undefined), "tcpdump to listen", 10_000, () => tcpdumpErr);
    // Traffic to the tunnelled destination the whole time: pings every 0.2 s and a UDP datagram every 0.1 s.
    const pinger = spawn("ip", ["netns", "exec", bed.a.ns, "ping", "-n", "-i", "0.2", bed.b.inner], { stdio: "ignore" });
    const udp = spawn("ip", ["netns", "exec", bed.a.ns, process.execPath, "-e",
      `const s = require("node:dgram").createSocket("udp4"); setInterval(() => s.send("sluice kill switch probe", 9999, ${JSON.stringify(bed.b.inner)}, () => {}), 100);`], { stdio: "ignore" });
    t.after(() => {
      pinger.kill("SIGKILL");
      udp.kill("SIGKILL");
    });
    await sleep(1000);
    const [sa] = await gateway.listSas();
    assert.ok(sa!.children[0]!.packetsIn > 0, "traffic went through the tunnel before the gateway stopped");

    await gateway.stop();
    // Reconnecting (nobody answers): the table holds meanwhile.
    await sluice.waitForEvents("ike-reconnect", 1, 5000);
    await sluice.waitForEvents("ike-connecting", 2, 5000);
    await sleep(1000);
    sluice.kill("SIGKILL");
    await sluice.exit;
    await sleep(2000);
    // The table outlived sluice: fail closed.
    await mustRun("ip", ["netns", "exec", bed.a.ns, "nft", "list", "table", "inet", "sluice_killswitch"]);
    assert.equal(captured.includes(bed.b.inner), false, `clear packets to the tunnelled destination left:\n${captured}`);

    const down = await sluiceDown(bed.a.ns, sluice.socket);
    assert.equal(down.code, 0, down.output);
    assert.match(down.output, /kill switch removed/);
    const gone = await runIn(bed.a.ns, "nft", ["list", "table", "inet", "sluice_killswitch"]);
    assert.notEqual(gone.code, 0, "the kill switch table is gone");
    // The network is open again: the pings now leave in clear (nothing routes them into a tunnel).
    await until(() => (captured.includes(`> ${bed.b.inner}`) ? true : undefined), "a clear packet to the destination after sluice down", 5000, () => captured);
  });
});
