// The peer/SA table at run time, through two portable endpoints X and Y in
// this process over loopback (no root): what the IKE shell will do with it.
//
// 1. Children installed, rekeyed (RFC 7296 §2.8: the new child takes the
//    routes, the old one's outbound retired, its inbound still opening
//    stragglers until removed) and removed while a stream of packets flows
//    X → Y: nothing refused (no pause), nothing lost, both inbound SAs of a
//    peer open at once, a removed child's SPI is unknown.
// 2. A packet in flight when its child (or peer) is removed is dropped and
//    counted, never delivered; slots come back.
// 3. NAT rebinding: an authenticated ESP packet from a new address moves the
//    peer (and calls onPeerAddress); a forged, a replayed one or one for a
//    peer with rebind off does not.
// 4. IKE datagrams (non-ESP marker) reach onControl without the marker, with
//    their source; sendControl reaches an address that is no peer, with and
//    without the marker.
// 5. A trap: packets to its selectors are dropped ("no-sa"), nothing goes on
//    the wire, onAcquire is called once a second at most; a child for them
//    takes over.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import type { Forwarder } from "../../src/endpoint/forwarder.js";
import type { Child, Peer } from "../../src/endpoint/peer.js";
import type { ChildSpec } from "../../src/endpoint/peerTable.js";
import { parsePrefix } from "../../src/endpoint/prefix.js";
import type { SocketAddress } from "../../src/io/address.js";
import { icmpEcho4, sealEsp, type SaKeys } from "../fixtures/espForge.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";
import { freePort, ipv4Udp } from "../fixtures/loopback.js";

const SECRET_VAR = "SLUICE_TEST_CHILDREN_SECRET";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function boundSocket(): Promise<Socket> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return socket;
}

function send(socket: Socket, port: number, datagram: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => socket.send(datagram, port, "127.0.0.1", (error) => (error ? reject(error) : resolve())));
}

/** An IPv4/UDP packet whose payload is the 32-bit number `id`. */
function tagged(src: string, dst: string, id: number): Buffer {
  const packet = ipv4Udp(src, dst, 4);
  packet.writeUInt32BE(id, 28);
  return packet;
}

/** One SA's keys: the ones handed to installChild (which wipes them) are copies. */
interface Sa {
  spi: number;
  keys: SaKeys;
}

function newSa(spi: number): Sa {
  const bytes = randomBytes(36);
  return { spi, keys: { key: bytes.subarray(0, 32), salt: bytes.subarray(32) } };
}

function keysOf(sa: Sa): { spi: number; key: Uint8Array; salt: Uint8Array } {
  return { spi: sa.spi, key: Uint8Array.from(sa.keys.key), salt: Uint8Array.from(sa.keys.salt) };
}

/** The spec of one side's child: it seals with `out` and opens with `inbound`. */
function spec(out: Sa, inbound: Sa, remote: string[], local: string[] = []): ChildSpec {
  return {
    outbound: keysOf(out), inbound: keysOf(inbound), esn: true, replayWindow: 1024,
    localSelectors: local.map(parsePrefix), remoteSelectors: remote.map(parsePrefix),
  };
}

const X_NET = "10.61.1.0/24";
const Y_NET = "10.61.2.0/24";
const X_HOST = "10.61.1.5";
const Y_HOST = "10.61.2.9";

/** A portable endpoint whose only static peer goes nowhere (the config needs one); keepalives off. */
function config(port: number, dir: string, name: string): string {
  return `
keepalive.interval = 0
[local]
address = "127.0.0.1"
port = ${port}
[engine]
workers = 1
[state]
dir = "${join(dir, `state-${name}`)}"
[[peer]]
name = "static"
endpoint = "127.0.0.1:9"
selectors = ["10.62.${name === "x" ? 2 : 1}.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = ${name === "x" ? 0x9001 : 0x9002}
spi_in = ${name === "x" ? 0x9002 : 0x9001}
`;
}

const forwarderOf = (endpoint: Endpoint): Forwarder => (endpoint as unknown as { forwarder: Forwarder }).forwarder;

describe("the peer/SA table at run time (portable path, two endpoints in this process)", () => {
  let dir: string;
  let x: Endpoint;
  let y: Endpoint;
  const logs = { x: new LogSink(), y: new LogSink() };
  /** The ids of the tagged packets that reached y, in arrival order. */
  const atY: number[] = [];
  const atYPeers: string[] = [];
  let peerYatX: Peer;
  let peerXatY: Peer;

  before(async () => {
    process.env[SECRET_VAR] = "7a".repeat(32);
    dir = mkdtempSync(join(tmpdir(), "sluice-children-"));
    const ports = { x: await freePort(), y: await freePort() };
    const path = { path: "portable" as const, reason: "the test asks for the portable path" };
    x = await Endpoint.start(parseConfig(config(ports.x, dir, "x")), path, pino({}, logs.x), { onInnerPacket: () => {}, processMetrics: false });
    y = await Endpoint.start(parseConfig(config(ports.y, dir, "y")), path, pino({}, logs.y), {
      onInnerPacket: (packet, peer) => {
        if (packet.length === 32) {
          atY.push(Buffer.from(packet).readUInt32BE(28));
          atYPeers.push(peer);
        }
      },
      processMetrics: false,
    });
    peerYatX = x.table.addPeer({ name: "y", address: { family: 4, address: "127.0.0.1", port: y.port }, keepalive: false });
    peerXatY = y.table.addPeer({ name: "x", address: { family: 4, address: "127.0.0.1", port: x.port }, keepalive: false, rebind: true });
  });

  after(async () => {
    await x?.stop();
    await y?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("install, rekey and remove children while a stream flows X → Y: no pause, no loss, two inbound SAs at once, stragglers opened until removal", async () => {
    // Child 1: X seals with a1 (Y opens a1), Y seals with b1.
    const a1 = newSa(0xa1000001);
    const b1 = newSa(0xb1000001);
    const c1x = x.table.installChild(peerYatX, spec(a1, b1, [Y_NET], [X_NET]));
    const c1y = y.table.installChild(peerXatY, spec(b1, a1, [X_NET], [Y_NET]));
    assert.equal(x.sendInner(tagged(X_HOST, Y_HOST, 0)), true);
    await waitUntil(() => atY.length === 1, "the first packet through child 1");
    assert.equal(atYPeers[0], "x");

    // The stream: 4 packets a millisecond for 1.2 s, counted as refused (a pause or backpressure) or sent.
    let next = 1;
    let refused = 0;
    let sealedByC1 = 0;
    const stream = setInterval(() => {
      for (let i = 0; i < 4; i++) {
        if (x.sendInner(tagged(X_HOST, Y_HOST, next))) next++;
        else refused++;
      }
    }, 1);
    try {
      await sleep(200);
      // Rekey: the responder's new inbound first, then the initiator's new child (which takes the routes).
      const a2 = newSa(0xa2000002);
      const b2 = newSa(0xb2000002);
      const c2y = y.table.installChild(peerXatY, spec(b2, a2, [X_NET], [Y_NET]));
      const c2x = x.table.installChild(peerYatX, spec(a2, b2, [Y_NET], [X_NET]));
      x.table.retireOutbound(c1x);
      y.table.retireOutbound(c1y);
      // What c1 sealed before it was retired completes (a batch or two in flight), then nothing more.
      await sleep(30);
      sealedByC1 = c1x.out.counters.packets;
      await sleep(200);
      assert.equal(c1x.out.counters.packets, sealedByC1, "the retired child sealed more packets");
      assert.ok(c2x.out.counters.packets > 50, `the new child sealed only ${c2x.out.counters.packets} packets`);
      // Both inbound SAs of x at y open at once: the stream through c2, a straggler of c1 (a number c1 never used).
      assert.equal(peerXatY.children.size, 2);
      const c1In = c1y.in.counters.packets;
      const sock = await boundSocket();
      await send(sock, y.port, sealEsp(a1.keys, a1.spi, BigInt(sealedByC1) + 5n, tagged(X_HOST, Y_HOST, 999_999)));
      await waitUntil(() => c1y.in.counters.packets === c1In + 1, "the straggler opened by the old child");
      await waitUntil(() => atY.includes(999_999), "the straggler delivered");
      assert.ok(c2y.in.counters.packets > 50);
      // Removed: the old SPI is unknown from now on.
      x.table.removeChild(c1x);
      y.table.removeChild(c1y);
      const unknown = y.counters.drops["unknown-spi"] ?? 0;
      await send(sock, y.port, sealEsp(a1.keys, a1.spi, BigInt(sealedByC1) + 6n, tagged(X_HOST, Y_HOST, 999_998)));
      await waitUntil(() => (y.counters.drops["unknown-spi"] ?? 0) === unknown + 1, "the removed child's SPI counted unknown");
      sock.close();
      await sleep(200);
    } finally {
      clearInterval(stream);
    }
    await waitUntil(() => atY.filter((id) => id < 999_998).length === next, `all ${next} packets at y`, 5000);
    const ids = atY.filter((id) => id < 999_998);
    assert.deepEqual([...ids].sort((p, q) => p - q), Array.from({ length: next }, (_, i) => i), "a packet was lost or duplicated");
    assert.equal(refused, 0, `${refused} packets were refused while children changed (a pause or backpressure)`);
    assert.ok(next > 500, `only ${next} packets in the stream`);
    assert.equal(atY.includes(999_998), false, "a packet of the removed child was delivered");
    assert.equal(peerXatY.children.size, 1);
    // No reservation files for negotiated children: only the static peer's (named by its SPIs, 0x9001 and 0x9002).
    for (const name of readdirSync(join(dir, "state-y"))) assert.match(name, /^(out|in)-0000900[12]-/, `a reservation file of a negotiated child: ${name}`);
    assert.deepEqual(x.table.childCounters(c1x), { packetsIn: 0, bytesIn: 0, packetsOut: sealedByC1, bytesOut: sealedByC1 * 32 });
  });

  test("the inbound policy is the child's: a source outside its remote selectors, or a destination outside its local ones, is dropped", async () => {
    const child = [...peerXatY.children][0]!;
    const out = [...peerYatX.children][0]!;
    const before = { ...y.counters.drops };
    const n = atY.length;
    // x routes by destination only; y checks source and destination against the child's selectors.
    x.table.installChild(peerYatX, spec(newSa(0xa3000003), newSa(0xb3000003), ["10.61.9.0/24"]));
    assert.equal(x.sendInner(tagged("10.61.7.1", Y_HOST, 1)), true, "outside X_NET: sealed anyway by x");
    assert.equal(x.sendInner(tagged(X_HOST, "10.61.3.1", 2)), false, "no route there");
    assert.ok(child.sources.size > 0 && out.outboundActive);
    await waitUntil(() => (y.counters.drops.policy ?? 0) === (before.policy ?? 0) + 1, "the policy drop at y");
    await sleep(30);
    assert.equal(atY.length, n);
  });

  test("a packet in flight when its child is removed is dropped as child-removed, never delivered; a sealed one whose peer went is not sent", async () => {
    const fy = forwarderOf(y);
    const child = [...peerXatY.children].at(-1)!;
    const freeSlots = y.engine.freeSlots;
    // Remove the child after the datagram was taken into a batch and before the batch completes.
    const original = fy.addInbound.bind(fy);
    let armed = true;
    fy.addInbound = (...args) => {
      original(...args);
      if (armed) {
        armed = false;
        queueMicrotask(() => y.table.removeChild(args[2]));
      }
    };
    const n = atY.length;
    const removed = y.counters.drops["child-removed"] ?? 0;
    try {
      assert.equal(x.sendInner(tagged(X_HOST, Y_HOST, 4242)), true);
      await waitUntil(() => (y.counters.drops["child-removed"] ?? 0) === removed + 1, "the in-flight packet dropped as child-removed");
    } finally {
      fy.addInbound = original;
    }
    assert.equal(child.removed, true);
    assert.equal(atY.length, n, "the packet was delivered");
    await y.engine.idle();
    assert.equal(y.engine.freeSlots, freeSlots, "a slot was not given back");

    // Outbound: a peer removed while its packet is being sealed.
    const fx = forwarderOf(x);
    const temp = x.table.addPeer({ name: "temp", address: { family: 4, address: "127.0.0.1", port: 9 }, keepalive: false });
    x.table.installChild(temp, spec(newSa(0xa4000004), newSa(0xb4000004), ["10.63.0.0/24"]));
    const originalOut = fx.submitSeal.bind(fx);
    fx.submitSeal = (batch) => {
      originalOut(batch);
      x.table.removePeer(temp);
    };
    const gone = x.counters.drops["peer-removed"] ?? 0;
    try {
      assert.equal(x.sendInner(tagged(X_HOST, "10.63.0.1", 1)), true);
      await waitUntil(() => (x.counters.drops["peer-removed"] ?? 0) === gone + 1, "the sealed packet of the removed peer dropped");
    } finally {
      fx.submitSeal = originalOut;
    }
    assert.equal(temp.removed, true);
  });

  test("NAT rebinding: an authenticated packet from a new address moves the peer; forged, replayed and rebind-off packets do not", async () => {
    // A fresh child pair, so the numbers below are known.
    const a = newSa(0xa5000005);
    const b = newSa(0xb5000005);
    for (const child of [...peerXatY.children]) y.table.removeChild(child);
    for (const child of [...peerYatX.children]) x.table.removeChild(child);
    const cy = y.table.installChild(peerXatY, spec(b, a, [X_NET], [Y_NET]));
    x.table.installChild(peerYatX, spec(a, b, [Y_NET], [X_NET]));
    const moves: { peer: string; address: SocketAddress }[] = [];
    y.setControlHooks({ onPeerAddress: (peer, address) => moves.push({ peer: peer.name, address }) });
    const before = y.table.peerAddress(peerXatY);
    assert.deepEqual(before, { family: 4, address: "127.0.0.1", port: x.port });
    const logged = logs.y.events("peer-address").length;

    const nat = await boundSocket();
    const spoofer = await boundSocket();
    const heardAtNat: Buffer[] = [];
    nat.on("message", (message) => heardAtNat.push(message));
    try {
      // Forged (a wrong ICV) from the spoofer: refused, and the peer stays.
      const forged = sealEsp(a.keys, a.spi, 10n, tagged(X_HOST, Y_HOST, 1));
      forged[forged.length - 1]! ^= 1;
      await send(spoofer, y.port, forged);
      await waitUntil(() => (cy.in.counters.drops.auth ?? 0) === 1, "the forged packet refused");
      assert.deepEqual(y.table.peerAddress(peerXatY), before);

      // Authentic, from the NAT's new mapping: the peer moves there.
      await send(nat, y.port, sealEsp(a.keys, a.spi, 11n, tagged(X_HOST, Y_HOST, 2)));
      const natPort = nat.address().port;
      await waitUntil(() => moves.length === 1, "onPeerAddress");
      assert.deepEqual(moves[0], { peer: "x", address: { family: 4, address: "127.0.0.1", port: natPort } });
      assert.deepEqual(y.table.peerAddress(peerXatY), { family: 4, address: "127.0.0.1", port: natPort });
      assert.equal(logs.y.events("peer-address").length, logged + 1);
      // y's packets for x go there now.
      assert.equal(y.sendInner(tagged(Y_HOST, X_HOST, 7)), true);
      await waitUntil(() => heardAtNat.some((m) => m.readUInt32BE(0) === b.spi), "y's ESP at the new address");

      // The same authentic packet replayed from the spoofer: a replay, and the peer stays at the NAT's address.
      await send(spoofer, y.port, sealEsp(a.keys, a.spi, 11n, tagged(X_HOST, Y_HOST, 2)));
      await waitUntil(() => (cy.in.counters.drops.replay ?? 0) === 1, "the replay refused");
      assert.deepEqual(y.table.peerAddress(peerXatY), { family: 4, address: "127.0.0.1", port: natPort });

      // Rebinding off (the side behind a NAT, RFC 7296 §2.23): authentic packets from elsewhere move nothing.
      peerXatY.rebind = false;
      await send(spoofer, y.port, sealEsp(a.keys, a.spi, 12n, tagged(X_HOST, Y_HOST, 3)));
      await waitUntil(() => cy.in.counters.packets === 2, "the packet from elsewhere opened");
      await sleep(20);
      assert.deepEqual(y.table.peerAddress(peerXatY), { family: 4, address: "127.0.0.1", port: natPort });
      assert.equal(moves.length, 1);
      // Back to x's own address, so the tests below talk to x again.
      peerXatY.rebind = true;
      y.table.setPeerAddress(peerXatY, { family: 4, address: "127.0.0.1", port: x.port });
      assert.ok(peerXatY.lastInbound > 0 && performance.now() - peerXatY.lastInbound < 5000, "the last inbound time was not set");
    } finally {
      nat.close();
      spoofer.close();
      y.setControlHooks({});
    }
  });

  test("IKE datagrams reach onControl without the marker and with their source; sendControl reaches an address that is no peer", async () => {
    const heard: { datagram: Buffer; from: SocketAddress }[] = [];
    y.setControlHooks({ onControl: (datagram, from) => heard.push({ datagram: Buffer.from(datagram), from }) });
    const stranger = await boundSocket();
    const atStranger: Buffer[] = [];
    stranger.on("message", (message) => atStranger.push(message));
    try {
      const ike = randomBytes(200);
      const before = { controlIn: y.counters.controlIn, nonEsp: y.counters.drops["non-esp"] ?? 0, keepalives: y.counters.keepalivesIn };
      await send(stranger, y.port, Buffer.concat([Buffer.alloc(4), ike]));
      await send(stranger, y.port, Buffer.from([0xff]));
      await waitUntil(() => heard.length === 1 && y.counters.keepalivesIn === before.keepalives + 1, "the IKE datagram at onControl, the keepalive counted");
      assert.ok(heard[0]!.datagram.equals(ike), "the datagram arrived changed (or with its marker)");
      assert.deepEqual(heard[0]!.from, { family: 4, address: "127.0.0.1", port: stranger.address().port });
      assert.equal(y.counters.controlIn, before.controlIn + 1);
      assert.equal(y.counters.drops["non-esp"] ?? 0, before.nonEsp, "counted non-esp although a hook took it");

      const to = { family: 4 as const, address: "127.0.0.1", port: stranger.address().port };
      const reply = randomBytes(120);
      assert.equal(y.sendControl(reply, to, { marker: true }), true);
      assert.equal(y.sendControl(reply, to, { marker: false }), true);
      await waitUntil(() => atStranger.length === 2, "both control datagrams at the stranger");
      assert.ok(atStranger[0]!.equals(Buffer.concat([Buffer.alloc(4), reply])), "with the marker");
      assert.ok(atStranger[1]!.equals(reply), "without the marker");
      assert.equal(y.counters.controlOut, 2);
      // Without a hook, IKE is counted and dropped as before.
      y.setControlHooks({});
      await send(stranger, y.port, Buffer.concat([Buffer.alloc(4), ike]));
      await waitUntil(() => (y.counters.drops["non-esp"] ?? 0) === before.nonEsp + 1, "non-esp counted without a hook");
      // A hook that throws costs nothing but a count and a log line.
      y.setControlHooks({ onControl: () => { throw new Error("hook bug"); } });
      await send(stranger, y.port, Buffer.concat([Buffer.alloc(4), ike]));
      await waitUntil(() => (y.counters.drops["hook-error"] ?? 0) === 1, "the hook's throw counted");
    } finally {
      stranger.close();
      y.setControlHooks({});
    }
  });

  test("a trap drops packets to its selectors (no-sa), sends nothing, calls onAcquire once a second at most; a child takes over", async () => {
    const listener = await boundSocket();
    const heard: Buffer[] = [];
    listener.on("message", (message) => heard.push(message));
    const acquired: { peer: string; packet: Buffer }[] = [];
    x.setControlHooks({ onAcquire: (peer, packet) => acquired.push({ peer: peer.name, packet: Buffer.from(packet) }) });
    try {
      const trapNet = "10.64.0.0/16";
      const peer = x.table.addPeer({ name: "trapped", address: { family: 4, address: "127.0.0.1", port: listener.address().port }, keepalive: false, trapSelectors: [parsePrefix(trapNet)] });
      const noSa = x.counters.drops["no-sa"] ?? 0;
      const first = tagged(X_HOST, "10.64.1.1", 1);
      for (let i = 0; i < 5; i++) assert.equal(x.sendInner(i === 0 ? first : tagged(X_HOST, "10.64.1.1", i + 1)), false);
      assert.equal(x.counters.drops["no-sa"], noSa + 5);
      await waitUntil(() => acquired.length === 1, "onAcquire");
      await sleep(50);
      assert.equal(acquired.length, 1, "onAcquire more than once within a second");
      assert.equal(acquired[0]!.peer, "trapped");
      assert.ok(acquired[0]!.packet.equals(first), "onAcquire got another packet than the one that triggered it");
      await sleep(1000);
      assert.equal(x.sendInner(tagged(X_HOST, "10.64.1.1", 9)), false);
      await waitUntil(() => acquired.length === 2, "onAcquire again after a second");
      assert.equal(heard.length, 0, "something was sent for a trapped packet");
      // A child for the trap's prefix routes in its place; removed, the trap is back.
      const child = x.table.installChild(peer, spec(newSa(0xa6000006), newSa(0xb6000006), [trapNet]));
      assert.equal(x.sendInner(tagged(X_HOST, "10.64.1.1", 10)), true);
      await waitUntil(() => heard.length === 1, "the ESP packet at the peer");
      assert.equal(heard[0]!.readUInt32BE(0), 0xa6000006);
      x.table.removeChild(child);
      assert.equal(x.sendInner(tagged(X_HOST, "10.64.1.1", 11)), false);
      assert.equal(x.counters.drops["no-sa"], noSa + 7);
      x.table.removePeer(peer);
      assert.equal(x.sendInner(tagged(X_HOST, "10.64.1.1", 12)), false);
      assert.equal(x.counters.drops["no-sa"], noSa + 7, "a removed peer's trap still caught packets");
    } finally {
      listener.close();
      x.setControlHooks({});
    }
  });

  test("installChild refuses an inbound SPI in use and a removed peer, adding nothing, and wipes the keys it was given", () => {
    const a = newSa(0xa7000007);
    const taken = [...peerXatY.children][0]!.in.spi;
    const s = spec(a, newSa(taken), [X_NET]);
    const liveSas = y.engine.stats().sas.length;
    assert.throws(() => y.table.installChild(peerXatY, s), { name: "RangeError", message: /already in use/ });
    assert.equal(y.engine.stats().sas.length, liveSas);
    for (const key of [s.outbound.key, s.outbound.salt, s.inbound.key, s.inbound.salt]) assert.ok(key.every((b) => b === 0), "a key was not wiped");
    const gone = y.table.addPeer({ name: "gone", address: null, keepalive: false });
    y.table.removePeer(gone);
    assert.throws(() => y.table.installChild(gone, spec(a, newSa(0xb7000007), [X_NET])), { name: "TypeError" });
    // A peer without an address yet: its routed packets are dropped before sealing (no number spent).
    const later = x.table.addPeer({ name: "later", address: null, keepalive: true });
    const child: Child = x.table.installChild(later, spec(newSa(0xa8000008), newSa(0xb8000008), ["10.65.0.0/24"]));
    assert.equal(x.sendInner(tagged(X_HOST, "10.65.0.1", 1)), false);
    assert.equal(x.counters.drops["no-peer-address"], 1);
    assert.equal(child.out.counters.packets, 0);
    x.table.removePeer(later);
  });
});
