// The endpoint on the portable path (node:dgram, no TUN): the application is
// the inner side, handing packets in with sendInner and getting them back
// through onInnerPacket, and every check of the native path still holds.
//
// 1. Two portable endpoints in this process, over loopback (no root): packets
//    arrive unchanged with the peer's name; no route, malformed, too long and
//    backpressure make sendInner return false and are counted; an inner
//    source outside the sender's selectors is dropped as "policy"; keepalives,
//    non-ESP markers, unknown SPIs, short and oversized datagrams and replays
//    are handled as on the native path; a reload changes the routes; no slot
//    leaks; each endpoint says once which path it runs on and why.
// 2. Reloads (no root): an unchanged peer keeps its SA; a changed one with
//    the same keys gets new SAs that start at the old counters, so a number
//    accepted before stays refused.
// 3. Keepalives reach every peer, more than one batch's worth (no root).
// 4. `sluice up` with SLUICE_IO=portable (no root): it starts, says so with
//    the reason, warns that there is no TUN, counts opened packets it cannot
//    deliver as "no-inner-port", reloads its peers on SIGHUP (a bad file is
//    logged and changes nothing), and exits 0 on SIGTERM.
// 5. (root, ip netns) a native endpoint with a TUN in namespace A and a
//    portable one in namespace B (test/fixtures/portableEcho.ts, which answers
//    pings through sendInner): ping from A to B's inner address works, small,
//    MTU-sized and over IPv6 too.
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import type { Forwarder } from "../../src/endpoint/forwarder.js";
import type { NativeIo } from "../../src/io/native.js";
import { CLI, ROOT, Metrics, missingRequirements, Proc, SECRET_ENV, sleep, TwoEndpoints } from "../fixtures/twoEndpoints.js";
import { deriveKeys, icmpEcho4, sealEsp } from "../fixtures/espForge.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";
import { freePort, ipv4Udp } from "../fixtures/loopback.js";

/** An IPv4/UDP packet from `src` to `dst` with `payloadLength` bytes patterned by `seed`. */
const ipv4 = (src: string, dst: string, payloadLength: number, seed: number): Buffer => ipv4Udp(src, dst, payloadLength, (i) => seed * 7 + i * 13);

const REASON_ENV = "SLUICE_IO=portable asks for the portable path";

function sendDatagrams(port: number, datagrams: Uint8Array[]): Promise<void> {
  const socket = createSocket("udp4");
  return new Promise((resolve, reject) => {
    let left = datagrams.length;
    for (const datagram of datagrams) {
      socket.send(datagram, port, "127.0.0.1", (error) => {
        if (error) reject(error);
        if (--left === 0) socket.close(() => resolve());
      });
    }
  });
}

/* ------------------------------------------------------- two endpoints in one process */

const SECRET_VAR = "SLUICE_TEST_PORTABLE_SECRET";
const SECRET = "5e".repeat(32);
const SPI_XY = 0x3001;
const SPI_YX = 0x3002;

function loopbackConfig(self: "x" | "y", ports: { x: number; y: number }, dir: string): string {
  const other = self === "x" ? "y" : "x";
  const selectors = other === "y" ? '["10.77.2.0/24", "fd77:2::/64"]' : '["10.77.1.0/24", "fd77:1::/64"]';
  return `
[local]
address = "127.0.0.1"
port = ${ports[self]}
[engine]
workers = 1
[state]
dir = "${join(dir, `state-${self}`)}"
[keepalive]
interval = 1

[[peer]]
name = "${other}"
endpoint = "127.0.0.1:${ports[other]}"
selectors = ${selectors}
secret_env = "${SECRET_VAR}"
spi_out = 0x${(self === "x" ? SPI_XY : SPI_YX).toString(16)}
spi_in = 0x${(self === "x" ? SPI_YX : SPI_XY).toString(16)}
`;
}

describe("portable path: two endpoints in one process over loopback", () => {
  let dir: string;
  let ports: { x: number; y: number };
  let x: Endpoint;
  let y: Endpoint;
  const logs = { x: new LogSink(), y: new LogSink() };
  /** What y's onInnerPacket got (copies). */
  const atY: { packet: Buffer; peer: string }[] = [];
  const atX: { packet: Buffer; peer: string }[] = [];

  before(async () => {
    process.env[SECRET_VAR] = SECRET;
    dir = mkdtempSync(join(tmpdir(), "sluice-portable-"));
    ports = { x: await freePort(), y: await freePort() };
    const path = { path: "portable" as const, reason: "the test asks for the portable path" };
    x = await Endpoint.start(parseConfig(loopbackConfig("x", ports, dir)), path, pino({}, logs.x), {
      onInnerPacket: (packet, peer) => atX.push({ packet: Buffer.from(packet), peer }),
    });
    y = await Endpoint.start(parseConfig(loopbackConfig("y", ports, dir)), path, pino({}, logs.y), {
      onInnerPacket: (packet, peer) => atY.push({ packet: Buffer.from(packet), peer }),
    });
  });

  after(async () => {
    await x?.stop();
    await y?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("each endpoint says once which path it runs on, and why", async () => {
    for (const [name, sink] of Object.entries(logs)) {
      const lines = sink.events("io-path");
      assert.equal(lines.length, 1, `${name}: ${lines.length} io-path lines`);
      assert.deepEqual({ io: lines[0]!.io, reason: lines[0]!.reason, tun: lines[0]!.tun }, { io: "portable", reason: "the test asks for the portable path", tun: false });
      assert.equal(sink.events("no-tun").length, 0, `${name} warned about no TUN although it has an onInnerPacket`);
      assert.equal(sink.events("up").length, 1);
    }
    assert.equal(x.io.path, "portable");
    assert.equal(x.port, ports.x);
    // onInnerPacket belongs to the portable path: on the native one opened packets go to the TUN (refused before any I/O).
    await assert.rejects(
      Endpoint.start(parseConfig(loopbackConfig("x", ports, dir)), { path: "native", io: {} as NativeIo }, pino({}, new LogSink()), { onInnerPacket: () => {} }),
      { name: "TypeError", message: /portable path/ },
    );
  });

  test("packets given to sendInner arrive at the other side's onInnerPacket unchanged, in order, with the peer's name", async () => {
    const sent: Buffer[] = [];
    // In rounds, so that a round fits a loopback socket buffer.
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 50; i++) {
        const n = round * 50 + i;
        const packet = ipv4("10.77.1.5", "10.77.2.9", n === 0 ? 0 : n === 1 ? 1372 : (n * 37) % 1373, n);
        assert.equal(x.sendInner(packet), true, `packet ${n} was refused: ${JSON.stringify(x.counters.drops)}`);
        packet.fill(0); // copied at once: the caller may reuse it
        sent.push(ipv4("10.77.1.5", "10.77.2.9", n === 0 ? 0 : n === 1 ? 1372 : (n * 37) % 1373, n));
      }
      await waitUntil(() => atY.length === sent.length, `${sent.length} packets at y (got ${atY.length})`);
    }
    sent.forEach((packet, i) => {
      assert.equal(atY[i]!.peer, "x");
      assert.ok(atY[i]!.packet.equals(packet), `packet ${i} (${packet.length} bytes) arrived changed`);
    });
    const out = x.engine.stats().sas.find((sa) => sa.direction === "out")!;
    const inY = y.engine.stats().sas.find((sa) => sa.direction === "in")!;
    assert.equal(out.packets, 200);
    assert.equal(inY.packets, 200);
    // And back: y answers through its own sendInner.
    assert.equal(y.sendInner(ipv4("10.77.2.9", "10.77.1.5", 100, 1)), true);
    await waitUntil(() => atX.length === 1, "the packet back at x");
    assert.equal(atX[0]!.peer, "y");
    assert.deepEqual(x.counters.drops, {});
    assert.deepEqual(y.counters.drops, {});
  });

  test("no route, not an IP packet, longer than a slot: sendInner returns false and counts why", async () => {
    assert.equal(x.sendInner(ipv4("10.77.1.5", "10.99.0.1", 10, 0)), false);
    assert.equal(x.sendInner(new Uint8Array([0x45, 0, 0])), false);
    assert.equal(x.sendInner(new Uint8Array(x.engine.maxPacket + 1).fill(0x45, 0, 1)), false);
    assert.deepEqual(x.counters.drops, { "no-route": 1, "inner-malformed": 1, "inner-too-long": 1 });
    const sealed = x.engine.stats().sas.find((sa) => sa.direction === "out")!.packets;
    await sleep(50);
    assert.equal(x.engine.stats().sas.find((sa) => sa.direction === "out")!.packets, sealed, "a refused packet was sealed");
  });

  test("an inner source outside the sender's selectors is dropped as policy, never delivered", async () => {
    const before = atY.length;
    // x routes by destination only; y checks the source against x's selectors.
    assert.equal(x.sendInner(ipv4("10.55.0.1", "10.77.2.9", 10, 0)), true);
    await waitUntil(() => (y.counters.drops.policy ?? 0) === 1, "a policy drop at y");
    await sleep(50);
    assert.equal(atY.length, before);
  });

  test("backpressure: sendInner returns false and counts it, nothing queues, and the endpoint recovers", async () => {
    const before = x.counters.drops.backpressure ?? 0;
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      if (x.sendInner(ipv4("10.77.1.5", "10.77.2.9", 16, i))) accepted++;
      else refused++;
    }
    assert.ok(refused > 0, "5000 packets in one turn never ran out of room");
    // Bounded by the batches the engine may have in flight (16 × 64), not by the 5000 offered.
    assert.ok(accepted <= 16 * 64, `${accepted} packets were taken in one turn`);
    assert.equal((x.counters.drops.backpressure ?? 0) - before, refused);
    await x.engine.idle();
    await sleep(100);
    await y.engine.idle();
    const n = atY.length;
    assert.equal(x.sendInner(ipv4("10.77.1.5", "10.77.2.9", 16, 1)), true, "still refused after the engine drained");
    await waitUntil(() => atY.length === n + 1, "a packet after the flood");
  });

  test("keepalives, non-ESP markers, unknown SPIs, short and oversized datagrams and replays are handled as on the native path", async () => {
    await waitUntil(() => y.counters.keepalivesIn > 0 && x.counters.keepalivesOut > 0, "a keepalive from x at y", 3000);
    const drops = { ...y.counters.drops };
    const keepalives = y.counters.keepalivesIn;
    const keys = deriveKeys(SECRET, SPI_XY, SPI_YX);
    // A number x has not used yet, close enough above its counter that x's own later packets stay inside y's window.
    const next = x.engine.stats().sas.find((sa) => sa.direction === "out")!.seq + 100n;
    const fresh = sealEsp(keys, SPI_XY, next, icmpEcho4("10.77.1.5", "10.77.2.9", 7, 1));
    const unknown = Buffer.alloc(40, 1);
    unknown.writeUInt32BE(0x7777, 0);
    const delivered = atY.length;
    await sendDatagrams(ports.y, [
      Buffer.from([0xff]),
      Buffer.from([0, 0, 0, 0, 1, 2, 3, 4, 5]),
      unknown,
      Buffer.from([0, 0, 0x30, 1, 0]),
      Buffer.alloc(3000, 0x30),
      fresh,
    ]);
    await waitUntil(() => atY.length === delivered + 1, "the freshly sealed packet at y");
    await sendDatagrams(ports.y, [fresh]);
    const replays = (): number => y.engine.stats().sas.find((sa) => sa.direction === "in")!.drops.replay ?? 0;
    await waitUntil(() => replays() === 1, "the replayed packet refused");
    assert.equal(atY.length, delivered + 1, "a replayed packet was delivered");
    assert.equal(y.counters.keepalivesIn - keepalives >= 1, true);
    const delta = (reason: string): number => (y.counters.drops[reason] ?? 0) - (drops[reason] ?? 0);
    assert.deepEqual(
      { "non-esp": delta("non-esp"), "unknown-spi": delta("unknown-spi"), "udp-malformed": delta("udp-malformed"), "udp-truncated": delta("udp-truncated") },
      { "non-esp": 1, "unknown-spi": 1, "udp-malformed": 1, "udp-truncated": 1 },
    );
  });

  test("a reload changes the routes; no slot leaks", async () => {
    assert.equal(x.sendInner(ipv4("10.77.1.5", "10.78.0.1", 10, 0)), false);
    const text = loopbackConfig("x", ports, dir).replace('["10.77.2.0/24", "fd77:2::/64"]', '["10.77.2.0/24", "fd77:2::/64", "10.78.0.0/16"]');
    await x.reload(parseConfig(text));
    const n = atY.length;
    assert.equal(x.sendInner(ipv4("10.77.1.5", "10.78.0.1", 10, 0)), true);
    await waitUntil(() => atY.length === n + 1, "a packet on the new route");
    await x.engine.idle();
    await y.engine.idle();
    await sleep(50);
    // All slots but the keepalive's are free again.
    for (const endpoint of [x, y]) assert.equal(endpoint.engine.freeSlots, endpoint.engine.layout.slotCount - 1);
  });
});

/* ------------------------------------------------------- reloads */

describe("portable path: reloading the peers (what SIGHUP does)", () => {
  let dir: string;
  let ports: { x: number; y: number };
  let x: Endpoint;
  let y: Endpoint;
  const logY = new LogSink();
  const atY: Buffer[] = [];
  const inboundOfY = (): { seq: bigint; replays: number } => {
    const sa = y.engine.stats().sas.find((s) => s.direction === "in")!;
    return { seq: sa.seq, replays: sa.drops.replay ?? 0 };
  };

  before(async () => {
    process.env[SECRET_VAR] = SECRET;
    dir = mkdtempSync(join(tmpdir(), "sluice-reload-"));
    ports = { x: await freePort(), y: await freePort() };
    const path = { path: "portable" as const, reason: "the test asks for the portable path" };
    x = await Endpoint.start(parseConfig(loopbackConfig("x", ports, dir)), path, pino({ level: "silent" }));
    y = await Endpoint.start(parseConfig(loopbackConfig("y", ports, dir)), path, pino({}, logY), {
      onInnerPacket: (packet) => atY.push(Buffer.from(packet)),
    });
  });

  after(async () => {
    await x?.stop();
    await y?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an unchanged peer keeps its SA; a changed one with the same keys gets new SAs that carry the counters over, so old packets stay refused", async () => {
    for (let i = 0; i < 3; i++) assert.equal(x.sendInner(ipv4("10.77.1.5", "10.77.2.9", 16, i)), true);
    await waitUntil(() => atY.length === 3, "x's first packets at y");
    const before = inboundOfY();
    assert.ok(before.seq >= 3n);

    await y.reload(parseConfig(loopbackConfig("y", ports, dir)));
    const unchanged = logY.events("reload").at(-1)!;
    assert.deepEqual({ kept: unchanged.kept, added: unchanged.added }, { kept: ["x"], added: [] });

    const changed = loopbackConfig("y", ports, dir).replace('["10.77.1.0/24", "fd77:1::/64"]', '["10.77.1.0/24", "fd77:1::/64", "10.79.0.0/16"]');
    await y.reload(parseConfig(changed));
    const replaced = logY.events("reload").at(-1)!;
    assert.deepEqual({ kept: replaced.kept, added: replaced.added, removed: replaced.removed }, { kept: [], added: ["x"], removed: ["x"] });
    assert.equal(inboundOfY().seq, before.seq, "the new inbound SA starts at the old one's top");

    // A number the old SA accepted, sealed again with the same keys: refused by the new SA.
    const keys = deriveKeys(SECRET, SPI_XY, SPI_YX);
    const delivered = atY.length;
    await sendDatagrams(ports.y, [sealEsp(keys, SPI_XY, before.seq, icmpEcho4("10.77.1.5", "10.77.2.9", 7, 1))]);
    await waitUntil(() => inboundOfY().replays === 1, "the old number refused as a replay");
    // x goes on sealing above it, and its packets still arrive.
    assert.equal(x.sendInner(ipv4("10.77.1.5", "10.77.2.9", 16, 9)), true);
    await waitUntil(() => atY.length === delivered + 1, "x's next packet at y");
    assert.equal(inboundOfY().seq, before.seq + 1n);
    // The new selector is y's policy for x now: a source in it is delivered.
    assert.equal(x.sendInner(ipv4("10.79.0.1", "10.77.2.9", 16, 10)), true);
    await waitUntil(() => atY.length === delivered + 2, "a packet from the new selector");

    // Replacing the peer again and again reuses the removed peers' ids: the table does not grow per reload.
    const forwarderOfY = (y as unknown as { forwarder: Forwarder }).forwarder;
    const registered = forwarderOfY.peerById.length;
    for (let i = 0; i < 6; i++) {
      await y.reload(parseConfig(i % 2 === 0 ? loopbackConfig("y", ports, dir) : changed));
      assert.deepEqual(logY.events("reload").at(-1)!.added, ["x"], "each of these reloads replaced the peer");
    }
    assert.equal(forwarderOfY.peerById.length, registered, "no new ids for replacements");
    assert.equal(forwarderOfY.peerById.filter((peer) => peer !== undefined).length, 1, "only the configured peer is registered");
    assert.equal(x.sendInner(ipv4("10.79.0.1", "10.77.2.9", 16, 11)), true);
    await waitUntil(() => atY.length === delivered + 3, "x's packets still arrive after the reloads");
  });

  test("a reload in the same turn as sendInner: the gathered packet is sealed before the peer's counters pass to its replacement (no number twice)", async () => {
    const inboundOfX = (): { seq: bigint; replays: number } => {
      const sa = x.engine.stats().sas.find((s) => s.direction === "in")!;
      return { seq: sa.seq, replays: sa.drops.replay ?? 0 };
    };
    const before = inboundOfX();
    // Gathered for the check phase; the reload (same keys, one more selector: the peer is replaced) starts in this turn.
    assert.equal(y.sendInner(ipv4("10.77.2.9", "10.77.1.5", 16, 20)), true);
    const reloaded = y.reload(parseConfig(loopbackConfig("y", ports, dir).replace('["10.77.1.0/24", "fd77:1::/64"]', '["10.77.1.0/24", "fd77:1::/64", "10.80.0.0/16"]')));
    await reloaded;
    assert.deepEqual(logY.events("reload").at(-1)!.added, ["x"], "the peer was replaced");
    assert.equal(y.sendInner(ipv4("10.77.2.9", "10.77.1.5", 16, 21)), true);
    // Each number once: had the first packet been sealed by the old SA after its counter passed on, x would refuse the second as a replay.
    await waitUntil(() => inboundOfX().seq === before.seq + 2n, "both packets accepted at x");
    assert.equal(inboundOfX().replays, before.replays);
  });
});

/* ------------------------------------------------------- keepalives to more peers than a batch holds */

test("keepalives reach every peer, more of them than one batch's entries (70 peers, batches of 64)", async () => {
  process.env[SECRET_VAR] = SECRET;
  const dir = mkdtempSync(join(tmpdir(), "sluice-keepalive-"));
  const PEERS = 70;
  const sockets = await Promise.all(Array.from({ length: PEERS }, async () => {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    return socket;
  }));
  const heard = new Set<number>();
  sockets.forEach((socket, i) => socket.on("message", (message) => {
    if (message.length === 1 && message[0] === 0xff) heard.add(i);
  }));
  const peers = sockets.map((socket, i) => `
[[peer]]
name = "p${i}"
endpoint = "127.0.0.1:${socket.address().port}"
selectors = ["10.${100 + Math.floor(i / 200)}.${i % 200}.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = ${0x4000 + 2 * i}
spi_in = ${0x4001 + 2 * i}
`).join("");
  const config = `[local]\naddress = "127.0.0.1"\nport = ${await freePort()}\n[engine]\nworkers = 1\n[state]\ndir = "${join(dir, "state")}"\n[keepalive]\ninterval = 1\n${peers}`;
  const endpoint = await Endpoint.start(parseConfig(config), { path: "portable", reason: "the test asks for the portable path" }, pino({ level: "silent" }));
  try {
    assert.equal(endpoint.engine.layout.batchSize < PEERS, true, "more peers than one batch's entries");
    await waitUntil(() => heard.size === PEERS, `a keepalive at each of ${PEERS} peers`, 5000);
  } finally {
    await endpoint.stop();
    for (const socket of sockets) socket.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/* ------------------------------------------------------- sluice up on the portable path */

describe("sluice up with SLUICE_IO=portable", { skip: existsSync(CLI) ? false : `the CLI is not compiled (no ${CLI})` }, () => {
  test("starts without a TUN, says why, counts what it cannot deliver, reloads on SIGHUP, and exits 0 on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-portable-cli-"));
    try {
      const metricsPort = await freePort();
      const config = join(dir, "sluice.toml");
      const text = `
[local]
address = "127.0.0.1"
port = 0
[tun]
name = "slportable0"
[engine]
workers = 1
[state]
dir = "${join(dir, "state")}"

[[peer]]
name = "far"
endpoint = "127.0.0.1:9"
selectors = ["10.66.2.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = 0x4001
spi_in = 0x4002
`;
      writeFileSync(config, text);
      const child = spawn(process.execPath, [CLI, "up", "-c", config, "--metrics", `127.0.0.1:${metricsPort}`], {
        cwd: ROOT, env: { ...process.env, SLUICE_IO: "portable", [SECRET_VAR]: SECRET }, stdio: ["ignore", "pipe", "pipe"],
      });
      const proc = new Proc(child, "sluice up (portable)");
      try {
        const up = await proc.waitForEvent("up", 20000);
        await proc.waitForEvent("metrics", 10000);
        const lines = proc.jsonLines();
        const ioPath = lines.filter((line) => line.event === "io-path");
        assert.equal(ioPath.length, 1, `want one io-path line:\n${proc.stdout}`);
        assert.deepEqual({ io: ioPath[0]!.io, reason: ioPath[0]!.reason, tun: ioPath[0]!.tun }, { io: "portable", reason: REASON_ENV, tun: false });
        const warning = lines.filter((line) => line.event === "no-tun");
        assert.equal(warning.length, 1, `want one no-tun warning:\n${proc.stdout}`);
        assert.equal(warning[0]!.level, 40);
        assert.match(String(warning[0]!.msg), /no TUN device/);
        assert.equal(up.tun, null);
        const port = Number(/:(\d+)$/.exec(String(up.udp))![1]);
        assert.ok(port > 0, `up line: ${JSON.stringify(up)}`);
        // Two packets the far side sealed: one from inside its selectors (opened, then no inner port), one from outside (policy).
        const keys = deriveKeys(SECRET, 0x4002, 0x4001);
        await sendDatagrams(port, [
          sealEsp(keys, 0x4002, 1n, icmpEcho4("10.66.2.7", "10.66.1.1", 1, 1)),
          sealEsp(keys, 0x4002, 2n, icmpEcho4("10.55.0.7", "10.66.1.1", 1, 2)),
        ]);
        let metrics: Metrics | undefined;
        const deadline = Date.now() + 5000;
        for (;;) {
          metrics = new Metrics(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
          if (metrics.endpointDrops("no-inner-port") + metrics.endpointDrops("policy") >= 2 || Date.now() > deadline) break;
          await sleep(50);
        }
        assert.equal(metrics.endpointDrops("no-inner-port"), 1, metrics.text);
        assert.equal(metrics.endpointDrops("policy"), 1, metrics.text);
        assert.equal(metrics.sa("sluice_sa_packets_total", 0x4002, "in"), 2);
        // SIGHUP reads the file again: the unchanged peer is kept, a new one added.
        writeFileSync(config, `${text}
[[peer]]
name = "near"
endpoint = "127.0.0.1:9"
selectors = ["10.66.3.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = 0x4003
spi_in = 0x4004
`);
        child.kill("SIGHUP");
        const reload = await proc.waitForEvent("reload", 10000);
        assert.deepEqual({ kept: reload.kept, added: reload.added, removed: reload.removed }, { kept: ["far"], added: ["near"], removed: [] });
        // A config that does not parse: logged, naming the key; the running peers stay.
        writeFileSync(config, `${text}\n[[peer]]\nname = "bad"\n`);
        child.kill("SIGHUP");
        const failed = await proc.waitForEvent("reload-failed", 10000);
        assert.match(String(failed.error), /peer\[1\]/);
        assert.equal(proc.jsonLines().filter((line) => line.event === "reload").length, 1, "the bad config was applied");
        child.kill("SIGTERM");
        const exit = await proc.exit;
        assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${proc.stderr}`);
        assert.equal(proc.stderr, "");
        assert.ok(proc.jsonLines().some((line) => line.event === "down"), "no down line");
      } finally {
        proc.kill();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/* ------------------------------------------------------- a TUN endpoint and a portable one, in namespaces */

const ECHO = join(ROOT, "dist/test/fixtures/portableEcho.js");
const skip = missingRequirements(["ip", "ping"]) ?? (existsSync(ECHO) ? undefined : `the echo fixture is not compiled (no ${ECHO})`);

describe("portable path: ping from a TUN endpoint (namespace A) to a portable one (namespace B)", { skip: skip ?? false }, () => {
  let f: TwoEndpoints;
  let b: Proc;

  before(async () => {
    f = await TwoEndpoints.create({ sides: ["a"] });
    b = f.spawn(f.ns.b, process.execPath, [ECHO, f.config.b], { env: { ...process.env, SLUICE_IO: "portable", [SECRET_ENV]: f.secret } });
    await b.waitForEvent("up", 20000);
  });

  after(async () => {
    await f?.cleanup();
  });

  test("pings cross the tunnel both ways: default, 1300-byte and MTU-sized payloads, and IPv6", async () => {
    let ok = false;
    for (let i = 0; i < 10 && !ok; i++) ok = (await f.ping("a", f.inner.b4, { count: 1, wait: 1 })).received === 1;
    assert.ok(ok, `no answer from the portable endpoint at all\n${b.stdout}\n${b.stderr}`);
    const cases = [
      { target: f.inner.b4, size: 56, count: 5 },
      { target: f.inner.b4, size: 1300, count: 3 },
      { target: f.inner.b4, size: 1400 - 28, count: 3 },
      { target: f.inner.b6, size: 56, count: 3 },
      { target: f.inner.b6, size: 1400 - 48, count: 3 },
    ];
    for (const c of cases) {
      const result = await f.ping("a", c.target, { count: c.count, interval: 0.2, size: c.size, dontFragment: true });
      assert.equal(result.received, c.count, `ping -s ${c.size} ${c.target}: ${result.received}/${c.count}\n${result.output}`);
    }
    const pings = 5 + 3 + 3 + 3 + 3;
    const metrics = await f.metrics("a");
    assert.ok(metrics.sa("sluice_sa_packets_total", f.spiAB, "out") >= pings);
    assert.ok(metrics.sa("sluice_sa_packets_total", f.spiBA, "in") >= pings);

    b.kill("SIGTERM");
    const exit = await b.exit;
    assert.deepEqual(exit, { code: 0, signal: null }, `portable endpoint exit; stderr: ${b.stderr}`);
    const lines = b.jsonLines();
    const ioPath = lines.filter((line) => line.event === "io-path");
    assert.equal(ioPath.length, 1, `want one io-path line:\n${b.stdout}`);
    assert.deepEqual({ io: ioPath[0]!.io, reason: ioPath[0]!.reason, tun: ioPath[0]!.tun }, { io: "portable", reason: REASON_ENV, tun: false });
    const stats = lines.find((line) => line.event === "echo-stats") as
      { requests: number; answered: number; refused: number; counters: { drops: Record<string, number> }; sas: { spi: number; direction: string; packets: number }[] } | undefined;
    assert.ok(stats, `no echo-stats line:\n${b.stdout}`);
    assert.ok(stats.requests >= pings + 1, `${stats.requests} echo requests reached the application`);
    assert.equal(stats.answered, stats.requests, `only ${stats.answered} of ${stats.requests} replies were taken by sendInner`);
    assert.equal(stats.refused, 0);
    const sa = (spi: number, direction: string): number => stats.sas.find((s) => s.spi === spi && s.direction === direction)?.packets ?? 0;
    assert.ok(sa(f.spiAB, "in") >= stats.requests, `B opened ${sa(f.spiAB, "in")} packets`);
    assert.ok(sa(f.spiBA, "out") >= stats.answered, `B sealed ${sa(f.spiBA, "out")} packets`);
    assert.equal(stats.counters.drops["no-inner-port"], undefined);
    assert.ok(lines.some((line) => line.event === "down"), "no down line from the portable endpoint");
  });
});
