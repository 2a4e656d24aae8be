// The demux and control datagrams on the native UDP port (recvmmsg, and GRO
// unless the kernel lacks it), over loopback: no root, no TUN (the inner side
// is a stub). Per receive path:
//
// - IKE datagrams (non-ESP marker, RFC 3948 §2.2) reach onControl without
//   the marker and with their source address; with GRO, a GSO burst of them
//   arrives as one super-packet and each reaches onControl with the
//   sender's address (a super-packet comes from one source);
// - an authenticated ESP packet from a new address moves its peer (NAT
//   rebinding); a forged one from another address does not;
// - sendControl reaches an address that is no peer, with and without the
//   marker.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { pino } from "pino";
import { createEngine } from "../../src/engine/engine.js";
import { parseConfig } from "../../src/endpoint/config.js";
import { Forwarder } from "../../src/endpoint/forwarder.js";
import type { Entries, InnerPort } from "../../src/endpoint/ports.js";
import { parsePrefix } from "../../src/endpoint/prefix.js";
import { NativeUdpPort } from "../../src/endpoint/udpPort.js";
import { ADDRESS_BYTES, encodeAddress, type SocketAddress } from "../../src/io/address.js";
import { loadNativeIo, nativeIoUnavailableReason, type NativeIo } from "../../src/io/native.js";
import { sealEsp, icmpEcho4 } from "../fixtures/espForge.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";

const SPI_IN = 0xc1000001;
const SPI_OUT = 0xc2000002;

class InnerSink implements InnerPort {
  count = 0;
  write(_entries: Entries, count: number): void {
    this.count += count;
  }
  start(): void {}
  pause(): void {}
  resume(): void {}
  stop(): void {}
  close(): void {}
  setRoutes(): void {}
}

async function boundSocket(): Promise<Socket> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return socket;
}

function send(socket: Socket, port: number, datagram: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => socket.send(datagram, port, "127.0.0.1", (error) => (error ? reject(error) : resolve())));
}

/** A forwarder on a native UDP port with one peer and one child; what the addon's receives reported, recorded. */
async function rig(t: TestContext, real: NativeIo, gro: boolean) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-demux-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  process.env.SLUICE_TEST_DEMUX_SECRET = "11".repeat(32);
  const config = parseConfig(`
keepalive.interval = 0
[local]
address = "127.0.0.1"
port = 0
[state]
dir = "${dir}"
[[peer]]
endpoint = "127.0.0.1:9"
selectors = ["10.70.0.0/24"]
secret_env = "SLUICE_TEST_DEMUX_SECRET"
spi_out = 0x1001
spi_in = 0x1002
`);
  /** Segment sizes of every receive (> 0: a GRO super-packet). */
  const segments: number[] = [];
  const io: NativeIo = {
    ...real,
    udpRecvBatch: (fd, buffer, offsets, capacity, lengths, addresses, count, segs) => {
      const n = real.udpRecvBatch(fd, buffer, offsets, capacity, lengths, addresses, count, segs);
      if (segs) for (let i = 0; i < n; i++) segments.push(segs[i]!);
      return n;
    },
  };
  const saved = process.env.SLUICE_GRO;
  process.env.SLUICE_GRO = gro ? "1" : "0";
  let port: NativeUdpPort;
  try {
    port = NativeUdpPort.open(io, config);
  } finally {
    if (saved === undefined) delete process.env.SLUICE_GRO;
    else process.env.SLUICE_GRO = saved;
  }
  if (port.groEnabled !== gro) {
    port.close();
    return null;
  }
  const engine = await createEngine({ workers: 1, slots: 1024, batchSize: 64, maxInFlight: 8, ioScratch: port.ioScratchBytes });
  const logs = new LogSink();
  const forwarder = new Forwarder(engine, pino({}, logs));
  port.attach(forwarder);
  const inner = new InnerSink();
  const home = await boundSocket();
  const keys = { in: randomBytes(36), out: randomBytes(36) };
  const peer = forwarder.table.addPeer({ name: "far", address: { family: 4, address: "127.0.0.1", port: home.address().port }, keepalive: false, rebind: true });
  const child = forwarder.table.installChild(peer, {
    inbound: { spi: SPI_IN, key: Uint8Array.from(keys.in.subarray(0, 32)), salt: Uint8Array.from(keys.in.subarray(32)) },
    outbound: { spi: SPI_OUT, key: Uint8Array.from(keys.out.subarray(0, 32)), salt: Uint8Array.from(keys.out.subarray(32)) },
    esn: true, localSelectors: [], remoteSelectors: [parsePrefix("10.71.0.0/24")],
  });
  forwarder.start(inner, port);
  t.after(async () => {
    home.close();
    forwarder.stop();
    await engine.close();
    port.close();
  });
  const inKeys = { key: keys.in.subarray(0, 32), salt: keys.in.subarray(32) };
  return { port, forwarder, engine, peer, child, inner, home, segments, inKeys, logs };
}

const real = loadNativeIo();
const skip = real ? false : `native I/O addon unavailable: ${nativeIoUnavailableReason}`;

describe("native UDP port: demux with kinds and sources, control datagrams", { skip }, () => {
  for (const gro of [false, true]) {
    test(`${gro ? "GRO" : "recvmmsg (SLUICE_GRO=0)"}: IKE to onControl with its source, NAT rebinding from authenticated ESP only, sendControl to a non-peer`, async (t) => {
      const r = await rig(t, real!, gro);
      if (r === null) return t.skip("the kernel has no UDP_GRO");
      const { port, forwarder, peer, child, home, segments, inKeys } = r;
      const heard: { datagram: Buffer; from: SocketAddress }[] = [];
      forwarder.hooks = { onControl: (datagram, from) => heard.push({ datagram: Buffer.from(datagram), from }) };
      const stranger = await boundSocket();
      t.after(() => stranger.close());

      // IKE from a plain socket.
      const ike = randomBytes(300);
      await send(stranger, port.port, Buffer.concat([Buffer.alloc(4), ike]));
      await waitUntil(() => heard.length === 1, "the IKE datagram at onControl");
      assert.ok(heard[0]!.datagram.equals(ike));
      assert.deepEqual(heard[0]!.from, { family: 4, address: "127.0.0.1", port: stranger.address().port });

      if (gro && port.gsoAvailable) {
        // A GSO burst: four IKE datagrams of 500 bytes in one send, received as one super-packet from one source.
        const sender = real!.udpOpen(4, "127.0.0.1", 0);
        t.after(() => real!.close(sender.fd));
        const burst = new Uint8Array(4 * 500);
        const offsets = new Int32Array(4);
        const lengths = new Int32Array(4);
        for (let i = 0; i < 4; i++) {
          burst.fill(0, i * 500, i * 500 + 4);
          burst.fill(0x40 + i, i * 500 + 4, (i + 1) * 500);
          offsets[i] = i * 500;
          lengths[i] = 500;
        }
        const to = new Uint8Array(ADDRESS_BYTES);
        encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: port.port });
        assert.equal(real!.udpSendGso(sender.fd, burst, offsets, lengths, 4, to, 500), 1);
        await waitUntil(() => heard.length === 5, "the four datagrams of the GSO burst at onControl");
        assert.ok(segments.some((size) => size === 500), `no GRO super-packet was received (segment sizes ${segments.join(", ")})`);
        for (let i = 0; i < 4; i++) {
          const { datagram, from } = heard[1 + i]!;
          assert.equal(datagram.length, 496);
          assert.ok(datagram.every((b) => b === 0x40 + i), `datagram ${i} of the burst arrived changed`);
          assert.deepEqual(from, { family: 4, address: "127.0.0.1", port: sender.port });
        }
      }

      // ESP: forged from the stranger (no move), then authentic from it (the peer moves there).
      const before = { family: 4, address: "127.0.0.1", port: home.address().port };
      const forged = sealEsp(inKeys, SPI_IN, 1n, icmpEcho4("10.71.0.1", "10.70.0.1", 1, 1));
      forged[20]! ^= 0x80;
      await send(stranger, port.port, forged);
      await waitUntil(() => (child.in.counters.drops.auth ?? 0) === 1, "the forged packet refused");
      assert.deepEqual(forwarder.table.peerAddress(peer), before);
      await send(stranger, port.port, sealEsp(inKeys, SPI_IN, 2n, icmpEcho4("10.71.0.1", "10.70.0.1", 1, 2)));
      await waitUntil(() => child.in.counters.packets === 1, "the authentic packet opened");
      assert.deepEqual(forwarder.table.peerAddress(peer), { family: 4, address: "127.0.0.1", port: stranger.address().port });
      assert.equal(r.inner.count, 1);
      assert.ok(peer.lastInbound > 0);

      // sendControl to a socket that is no peer.
      const listener = await boundSocket();
      t.after(() => listener.close());
      const got: Buffer[] = [];
      listener.on("message", (message) => got.push(message));
      const reply = randomBytes(64);
      const address = { family: 4 as const, address: "127.0.0.1", port: listener.address().port };
      assert.equal(forwarder.sendControl(reply, address, true), true);
      assert.equal(forwarder.sendControl(reply, address, false), true);
      await waitUntil(() => got.length === 2, "both control datagrams");
      assert.ok(got[0]!.equals(Buffer.concat([Buffer.alloc(4), reply])));
      assert.ok(got[1]!.equals(reply));
      // An address the socket cannot reach (IPv6 from an IPv4 socket): false and counted, no throw.
      assert.equal(forwarder.sendControl(reply, { family: 6, address: "::1", port: 9 }, true), false);
      assert.equal(forwarder.counters.drops["control-send-error"], 1);
      assert.equal(forwarder.counters.controlOut, 2);
    });
  }
});
