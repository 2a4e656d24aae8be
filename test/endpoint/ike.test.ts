// Two sluice endpoints that negotiate their SAs with IKEv2 (the IKE shell
// around the sans-I/O core), on the portable path over loopback: no root.
//
// 1. a `start` peer connects to a responder: IKE_SA_INIT on the IKE port,
//    IKE_AUTH floated to the NAT-T port through the endpoint's demux; the
//    child SA is installed on both sides; packets cross both ways through
//    ESP; status shows the SAs with their traffic; metrics count the
//    handshake; terminate deletes everything on both sides.
// 2. `trap`: the first packet for the peer's selectors starts the
//    negotiation and is dropped (counted "no-sa"), never sent in clear.
// 3. a reload keeps an unchanged IKE peer's SAs and replaces a changed one's.
// 4. the control socket: status, initiate, terminate (`sluice` CLI client).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import { serveControl, requestControl } from "../../src/endpoint/controlSocket.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";
import { freePorts, ipv4Udp as ipv4, loopbackIkeHeader } from "../fixtures/loopback.js";

const PSK = "sluice-ike-test-psk-0123456789";

interface Pair {
  a: Endpoint;
  b: Endpoint;
  logA: LogSink;
  logB: LogSink;
  receivedA: Buffer[];
  receivedB: Buffer[];
  dir: string;
  stop(): Promise<void>;
}

async function pair(options: { startA?: string; extraA?: string; dpd?: number } = {}): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-ike-"));
  const pskFile = join(dir, "psk");
  writeFileSync(pskFile, PSK, { mode: 0o600 });
  const [ikeA, natA, ikeB, natB] = await freePorts(4);
  const common = (ike: number, nat: number): string => loopbackIkeHeader(dir, ike, nat, 3);
  const configA = `${common(ikeA!, natA!)}
[[peer]]
name = "b"
endpoint = "127.0.0.1:${ikeB}"
selectors = ["10.77.2.0/24"]
local_selectors = ["10.77.1.0/24"]
[peer.ike]
local_id = "a.sluice.test"
remote_id = "b.sluice.test"
psk_file = "${pskFile}"
nat_t_port = ${natB}
start = "${options.startA ?? "start"}"
dpd = ${options.dpd ?? 0}
${options.extraA ?? ""}`;
  const configB = `${common(ikeB!, natB!)}
[[peer]]
name = "a"
selectors = ["10.77.1.0/24"]
local_selectors = ["10.77.2.0/24"]
[peer.ike]
local_id = "b.sluice.test"
remote_id = "a.sluice.test"
psk_file = "${pskFile}"
start = "none"
dpd = 0
`;
  const logA = new LogSink();
  const logB = new LogSink();
  const receivedA: Buffer[] = [];
  const receivedB: Buffer[] = [];
  const b = await Endpoint.start(parseConfig(configB), { path: "portable", reason: "test" }, pino({}, logB), { onInnerPacket: (p) => receivedB.push(Buffer.from(p)), processMetrics: false });
  const a = await Endpoint.start(parseConfig(configA), { path: "portable", reason: "test" }, pino({}, logA), { onInnerPacket: (p) => receivedA.push(Buffer.from(p)), processMetrics: false });
  return {
    a, b, logA, logB, receivedA, receivedB, dir,
    async stop() {
      await a.stop();
      await b.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type IkeEntry = { state: string; children: { packetsIn: number; packetsOut: number }[] };
function ike(endpoint: Endpoint): IkeEntry[] {
  return endpoint.status().ike as IkeEntry[];
}

function up(endpoint: Endpoint): boolean {
  return ike(endpoint).some((sa) => sa.state === "established" && sa.children.length > 0);
}

describe("IKE between two sluice endpoints (portable path, loopback)", () => {
  let p: Pair;
  before(async () => {
    p = await pair();
  });
  after(async () => {
    await p?.stop();
  });

  test("a start peer connects; the child SA carries packets both ways", async () => {
    await waitUntil(() => up(p.a) && up(p.b), "both sides have a child SA", 10_000);
    for (let i = 0; i < 20; i++) assert.equal(p.a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 100 + i)), true);
    await waitUntil(() => p.receivedB.length === 20, "20 packets reach b", 5000);
    for (let i = 0; i < 5; i++) assert.equal(p.b.sendInner(ipv4("10.77.2.1", "10.77.1.1", 50)), true);
    await waitUntil(() => p.receivedA.length === 5, "5 packets reach a", 5000);
    assert.equal(p.receivedB[3]!.length, 28 + 103);
    const [sa] = ike(p.a);
    assert.equal(sa!.children[0]!.packetsOut, 20);
    assert.equal(sa!.children[0]!.packetsIn, 5);
    assert.ok(p.logA.lines.some((l) => l.event === "ike-up" && l.remoteId === "b.sluice.test"), "a logs the IKE SA up with the peer's ID");
    assert.ok(p.logB.lines.some((l) => l.event === "child-up"), "b logs child-up");
    for (const line of [...p.logA.lines, ...p.logB.lines]) assert.ok(!JSON.stringify(line).includes(PSK), "no PSK in the log");
  });

  test("metrics count the handshake and show the SA by state", async () => {
    const text = await p.b.metrics.registry.metrics();
    assert.match(text, /sluice_ike_handshakes_total\{result="completed",reason=""\} 1/);
    assert.match(text, /sluice_ike_sas\{state="established"\} 1/);
    assert.match(text, /sluice_ike_cookies_required 0/);
  });

  test("a packet outside the peer's selectors is not routed", async () => {
    const before = p.a.counters.drops["no-route"] ?? 0;
    assert.equal(p.a.sendInner(ipv4("10.77.1.1", "10.99.0.1", 10)), false);
    assert.equal(p.a.counters.drops["no-route"], before + 1);
  });

  test("terminate deletes the SAs on both sides", async () => {
    const answer = await p.a.terminate("b");
    assert.equal(answer.ok, true);
    await waitUntil(() => ike(p.a).length === 0 && ike(p.b).length === 0, "no IKE SA left", 5000);
    assert.deepEqual([...p.a.table.peers].map((peer) => [peer.name, peer.children.size]), [["b", 0]], "only the peer's trap entry is left");
    const noSa = p.a.counters.drops["no-sa"] ?? 0;
    assert.equal(p.a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 10)), false, "dropped, never sent in clear");
    assert.equal(p.a.counters.drops["no-sa"], noSa + 1);
    assert.ok(p.logB.lines.some((l) => l.event === "ike-down" && l.reason === "deleted by the peer"));
  });

  test("initiate brings it back and answers when the child SA is up", async () => {
    const answer = await p.a.initiate("b");
    assert.deepEqual(answer.ok, true, JSON.stringify(answer));
    assert.ok(up(p.a));
  });
});

describe("IKE rekeying between two endpoints", () => {
  test("child and IKE SA rekeyed from both sides while packets flow: none lost, status shows the new SPIs", async () => {
    const p = await pair();
    try {
      await waitUntil(() => up(p.a) && up(p.b), "up", 10_000);
      const spiBefore = (ike(p.a)[0] as unknown as { children: { spiIn: string }[] }).children[0]!.spiIn;
      let sent = 0;
      const pump = setInterval(() => {
        for (let i = 0; i < 20; i++) if (p.a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 200))) sent++;
      }, 2);
      for (const [endpoint, name, what] of [[p.a, "b", false], [p.b, "a", false], [p.a, "b", true], [p.b, "a", false]] as const) {
        const answer = await endpoint.rekey(name, what);
        assert.equal(answer.ok, true, JSON.stringify(answer));
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      clearInterval(pump);
      await waitUntil(() => p.receivedB.length === sent, `all ${sent} packets arrive (got ${p.receivedB.length})`, 5000);
      assert.ok(sent > 500, `a real flow: ${sent} packets`);
      const [sa] = ike(p.a) as unknown as { rekeyInSeconds?: number; children: { spiIn: string; state: string }[] }[];
      assert.ok(sa!.children.some((c) => c.spiIn !== spiBefore && c.state === "installed"), "a new child carries the traffic");
      assert.ok(p.logA.lines.some((l) => l.event === "child-rekeying"), "a rekeyed");
      assert.ok(p.logB.lines.some((l) => l.event === "child-rekeying"), "b rekeyed");
      assert.ok(p.logA.lines.some((l) => l.event === "ike-rekeying"), "a rekeyed the IKE SA");
      assert.equal(p.a.counters.drops["no-sa"] ?? 0, 0);
      assert.equal(p.b.counters.drops["unknown-spi"] ?? 0, 0);
    } finally {
      await p.stop();
    }
  });
});

describe("IKE trap", () => {
  test("the first packet starts the negotiation and is dropped, never sent in clear", async () => {
    const p = await pair({ startA: "trap" });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(ike(p.a).length, 0, "nothing negotiated before traffic");
      assert.equal(p.a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 10)), false, "caught by the trap: dropped");
      assert.equal(p.a.counters.drops["no-sa"], 1);
      await waitUntil(() => up(p.a) && up(p.b), "the trap brought the tunnel up", 10_000);
      assert.equal(p.receivedB.length, 0, "the triggering packet was dropped");
      assert.equal(p.a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 10)), true);
      await waitUntil(() => p.receivedB.length === 1, "the next packet crosses", 5000);
    } finally {
      await p.stop();
    }
  });
});

describe("IKE reload and control socket", () => {
  test("a reload keeps an unchanged peer's IKE SA and replaces a changed one", async () => {
    const p = await pair();
    try {
      await waitUntil(() => up(p.a) && up(p.b), "up", 10_000);
      const id = (ike(p.a)[0] as unknown as { id: number }).id;
      await p.a.reload(p.a.config as never);
      assert.equal((ike(p.a)[0] as unknown as { id: number }).id, id, "unchanged config: same IKE SA");
      const changed = { ...p.a.config, ikePeers: p.a.config.ikePeers.map((e) => ({ ...e, dpdSeconds: 60 })) };
      await p.a.reload(changed);
      await waitUntil(() => ike(p.a).some((s) => (s as unknown as { id: number }).id !== id && s.state === "established" && s.children.length > 0), "replaced and up again", 10_000);
    } finally {
      await p.stop();
    }
  });

  test("status, initiate and terminate over a 0600 control socket", async () => {
    const p = await pair({ startA: "none" });
    const socket = join(p.dir, "control.sock");
    const server = await serveControl(socket, p.a);
    try {
      assert.equal(statSync(socket).mode & 0o777, 0o600);
      const empty = await requestControl(socket, { command: "status" });
      assert.equal(empty.ok, true);
      const initiated = await requestControl(socket, { command: "initiate", name: "b" });
      assert.equal(initiated.ok, true, JSON.stringify(initiated));
      const status = await requestControl(socket, { command: "status" });
      assert.equal(status.ok, true);
      const sas = (status as unknown as { ike: { peer: string; state: string; remoteId: string; ike: string; children: { spiIn: string }[] }[] }).ike;
      assert.equal(sas[0]!.state, "established");
      assert.equal(sas[0]!.remoteId, "b.sluice.test");
      assert.equal(sas[0]!.ike, "chacha20poly1305/prfsha256/curve25519");
      assert.match(sas[0]!.children[0]!.spiIn, /^[0-9a-f]{8}$/);
      const unknown = await requestControl(socket, { command: "initiate", name: "nobody" });
      assert.deepEqual(unknown, { ok: false, error: "no IKE peer named nobody" });
      const bad = await requestControl(socket, { command: "reboot" } as never);
      assert.equal(bad.ok, false);
      const terminated = await requestControl(socket, { command: "terminate", name: "b" });
      assert.equal(terminated.ok, true);
    } finally {
      server.close();
      await p.stop();
    }
  });
});
