// A road warrior and its gateway as two endpoints (no root: the portable path
// over loopback), certificates from a PKI openssl makes for this run: what
// the gateway shows of its client (`sluice status`: identity, virtual IP,
// certificate subject; the client and pool metrics), what the client shows
// of its gateway, and the gateway's inbound policy holding the client to its
// leased address. The same against strongSwan, as root, is
// test/interop/ike-roadwarrior.test.ts.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { formatStatus } from "../../src/cli/control.js";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";
import { createPki, pkiSkip, type TestPki } from "../fixtures/pki.js";
import { freePorts, ipv4Udp as ipv4 } from "../fixtures/loopback.js";

describe("a road warrior and its gateway (portable path)", { skip: pkiSkip() }, () => {
  let pki: TestPki;
  let dir: string;
  before(() => {
    pki = createPki();
    dir = mkdtempSync(join(tmpdir(), "sluice-rw-"));
  });
  after(() => {
    pki?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test("status and metrics show the client (identity, virtual IP, certificate subject) and the pool's use; a foreign source is dropped by policy", async () => {
    const [ikeA, natA, ikeB, natB] = await freePorts(4);
    const common = (ike: number, nat: number): string => `[local]\naddress = "127.0.0.1"\nport = ${nat}\n[state]\ndir = "${dir}"\n[ike]\nport = ${ike}\nretransmit_timeout = 0.5\nretransmit_tries = 2\n[control]\nsocket = false\n`;
    const gateway = `${common(ikeB!, natB!)}
[[pool]]
name = "laptops"
addresses = ["10.3.0.0/24"]

[[peer]]
name = "laptops"
selectors = ["10.3.0.0/24"]
local_selectors = ["10.77.2.0/24"]
[peer.ike]
pools = ["laptops"]
cert_file = "${pki.ee.gw.chain}"
key_file = "${pki.ee.gw.key}"
local_id = "${pki.ee.gw.id}"
ca_files = ["${pki.root.cert}"]
crl_file = "${pki.crl}"
start = "none"
dpd = 0
`;
    const client = `${common(ikeA!, natA!)}
[[peer]]
name = "office"
endpoint = "127.0.0.1:${ikeB}"
selectors = ["10.77.2.0/24"]
[peer.ike]
vips = ["0.0.0.0"]
cert_file = "${pki.ee.p256.chain}"
key_file = "${pki.ee.p256.key}"
local_id = "${pki.ee.p256.id}"
remote_id = "${pki.ee.gw.id}"
ca_files = ["${pki.root.cert}"]
nat_t_port = ${natB}
start = "start"
dpd = 0
`;
    const logA = new LogSink();
    const logB = new LogSink();
    const received: Buffer[] = [];
    const b = await Endpoint.start(parseConfig(gateway), { path: "portable", reason: "test" }, pino({}, logB), { processMetrics: false, onInnerPacket: (p) => received.push(Buffer.from(p)) });
    const a = await Endpoint.start(parseConfig(client), { path: "portable", reason: "test" }, pino({}, logA), { processMetrics: false });
    try {
      await waitUntil(() => logB.events("child-up").length > 0 && logA.events("child-up").length > 0, "child SA up on both", 10_000);
      const [gw] = b.status().ike;
      assert.equal(gw!.role, "responder");
      assert.equal(gw!.remoteId, "p256.sluice.test");
      assert.deepEqual(gw!.virtualIps, ["10.3.0.2"]);
      assert.equal(gw!.remoteCertificate, "C=CH, O=sluice test, CN=p256.sluice.test");
      const text = formatStatus(b.status() as Parameters<typeof formatStatus>[0]);
      assert.match(text, /remote 'p256\.sluice\.test' @ 127\.0\.0\.1:\d+[^\n]*\n {2}remote certificate "C=CH, O=sluice test, CN=p256\.sluice\.test"\n {2}remote virtual IP 10\.3\.0\.2\n/);
      const [cl] = a.status().ike;
      assert.deepEqual(cl!.virtualIps, ["10.3.0.2"]);
      assert.equal(cl!.remoteCertificate, "C=CH, O=sluice test, CN=gw.sluice.test");
      assert.match(formatStatus(a.status() as Parameters<typeof formatStatus>[0]), /local virtual IP 10\.3\.0\.2/);

      const metrics = await b.metrics.registry.metrics();
      assert.match(metrics, /sluice_ike_clients\{peer="laptops",vip="yes"\} 1/);
      assert.match(metrics, /sluice_pool_size\{pool="laptops"\} 253/);
      assert.match(metrics, /sluice_pool_addresses\{pool="laptops",state="online"\} 1/);
      assert.match(metrics, /sluice_pool_addresses\{pool="laptops",state="offline"\} 0/);
      // The client is no client of its own: it initiated.
      assert.doesNotMatch(await a.metrics.registry.metrics(), /sluice_ike_clients\{/);

      // From its leased address the packet passes; from another address in the pool the gateway drops it (policy).
      assert.equal(a.sendInner(ipv4("10.3.0.2", "10.77.2.1", 32)), true);
      await waitUntil(() => received.length === 1, "the packet from the virtual IP arrives", 5000);
      const policyBefore = b.counters.drops.policy ?? 0;
      a.sendInner(ipv4("10.3.0.7", "10.77.2.1", 32));
      await waitUntil(() => (b.counters.drops.policy ?? 0) === policyBefore + 1, "the gateway to drop the foreign source (policy)", 5000);
      assert.equal(received.length, 1, "nothing from another client's address reached the gateway's inner side");

      // The client leaves: no client, its lease kept offline for it.
      assert.equal((await a.terminate("office")).ok, true);
      await waitUntil(() => (b.status().ike as unknown[]).length === 0, "the gateway dropped the client's IKE SA", 5000);
      const later = await b.metrics.registry.metrics();
      assert.doesNotMatch(later, /sluice_ike_clients\{/);
      assert.match(later, /sluice_pool_addresses\{pool="laptops",state="online"\} 0/);
      assert.match(later, /sluice_pool_addresses\{pool="laptops",state="offline"\} 1/);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
