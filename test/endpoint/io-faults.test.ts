// A read loop that throws must cost packets, never engine slots or batch
// regions. The native ports (udpPort.ts, tunPort.ts) catch what their read
// loops throw, give back the batch they were filling (unless submitted) and
// every slot they held (ReadScratch.abandon, the GRO path's orphan slot), and
// report the error to the forwarder, which counts it as the endpoint drop
// "internal-error" and logs it.
//
// Everything here is real: the addon, the sockets, the engine and its worker,
// the forwarder, and (for the TUN) a TUN device in a network namespace made
// for this run. Faults are injected by wrapping the object loadNativeIo()
// returns: every method delegates to the real one, and the test makes one
// chosen call throw, either before it reaches the addon or after the addon
// did its work (the "addon threw mid-batch" case). For a bug in the loop
// itself, the forwarder's addInbound is made to throw on its n-th call.
// Only the other side of the port under test is a stub that collects what
// reaches it.
//
// Writes: a TUN write the kernel refuses after some packets of a batch went
// out must lose only the refused packet (tunPort.ts, write), and a device
// that refuses everything must cost two calls per batch, not one per packet.
// The faults are the addon's own behaviour, scripted: one call cut short and
// the next one throwing; every call throwing.
//
// Where possible the datagrams are queued in the socket before the port
// starts, so the first read takes them all and where the throw lands (which
// packets are lost) is exact.
//
// The TUN case runs in a child process (this same file, started under
// `ip netns exec` with SLUICE_IO_FAULTS_CHILD=1), so the test runner's own
// process never changes namespace.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, test, type TestContext } from "node:test";
import { pino } from "pino";
import { createEngine, type Engine } from "../../src/engine/engine.js";
import { ADDRESS_BYTES, encodeAddress } from "../../src/io/address.js";
import { loadNativeIo, nativeIoUnavailableReason, type NativeIo } from "../../src/io/native.js";
import { parseConfig, type EndpointConfig, type PeerConfig } from "../../src/endpoint/config.js";
import { Forwarder } from "../../src/endpoint/forwarder.js";
import { addStaticPeer, type StaticPeer } from "../../src/endpoint/staticPeers.js";
import type { Entries, InnerPort, OuterPort } from "../../src/endpoint/ports.js";
import { SeqStore } from "../../src/endpoint/seqStore.js";
import { TunPort } from "../../src/endpoint/tunPort.js";
import { NativeUdpPort } from "../../src/endpoint/udpPort.js";
import { InboundSa } from "../../src/esp.js";
import { deriveKeys, icmpEcho4, sealEsp } from "../fixtures/espForge.js";
import { runChildInNamespace, tunDeviceSkip, useNamespace } from "../fixtures/netns.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";

const SELF = fileURLToPath(import.meta.url);
const SECRET_VAR = "SLUICE_IO_FAULTS_SECRET";
const SECRET = "4f1c0e9a2b7d3c5e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f";
const SPI_OUT = 0x1001; // this side seals with it
const SPI_IN = 0x2001; // the peer seals with it; this side opens
const LOCAL_INNER = "10.77.1.1";
const PEER_INNER = "10.77.2.5";
const ENGINE = { workers: 1, slots: 512, batchSize: 16, maxInFlight: 16 } as const;

/* ------------------------------------------------------------ helpers */

/**
 * The real NativeIo, every method delegated, with one call made to throw on
 * demand: `failOnce("copyBatch", { skip: 1 })` lets one call through and
 * throws from the next; `afterCall` lets the addon do the call first.
 */
class FaultyIo {
  readonly io: NativeIo;
  /** Calls per method, faulted ones included. */
  readonly calls: Record<string, number> = {};
  /** Injected throws so far. */
  fired = 0;
  /** What the addon returned to each call that then threw (afterCall). */
  readonly firedResults: unknown[] = [];
  /** Sees every call that reached the addon, with its arguments and result. */
  onReturn: ((method: string, args: unknown[], result: unknown) => void) | undefined;
  #fault: { method: string; skip: number; afterCall: boolean } | undefined;
  #cut: { method: string; count: number } | undefined;
  #broken: string | undefined;

  constructor(real: NativeIo) {
    const io: Record<string, unknown> = { ...real };
    for (const [name, value] of Object.entries(real)) {
      if (typeof value !== "function") continue;
      const method = value as (...args: unknown[]) => unknown;
      io[name] = (...args: unknown[]): unknown => {
        this.calls[name] = (this.calls[name] ?? 0) + 1;
        const fault = this.#fault;
        if (this.#broken === name) {
          this.fired++;
          throw new Error(`injected: ${name} (broken)`);
        }
        const hit = fault !== undefined && fault.method === name && fault.skip-- === 0;
        if (!hit && this.#cut?.method === name) {
          // The addon stopping at a refused packet: this call ends early, the next one throws.
          args = [...args.slice(0, -1), this.#cut.count];
          this.#cut = undefined;
          this.failOnce(name as keyof NativeIo);
        }
        if (hit) {
          this.#fault = undefined;
          this.fired++;
          if (!fault.afterCall) throw new Error(`injected: ${name}`);
        }
        const result = method.apply(real, args);
        this.onReturn?.(name, args, result);
        if (hit) {
          this.firedResults.push(result);
          throw new Error(`injected: ${name} (after the addon returned ${String(result)})`);
        }
        return result;
      };
    }
    this.io = io as unknown as NativeIo;
  }

  failOnce(method: keyof NativeIo, options: { skip?: number; afterCall?: boolean } = {}): void {
    this.#fault = { method, skip: options.skip ?? 0, afterCall: options.afterCall ?? false };
  }

  /**
   * What the addon does when the kernel refuses a packet after `count` were
   * written: the next call of `method` handles only `count` packets (its
   * last argument), and the call after it throws before reaching the addon.
   */
  refuseAfter(method: keyof NativeIo, count: number): void {
    this.#cut = { method, count };
  }

  /** Every call of `method` throws before reaching the addon, until breakAlways(undefined). */
  breakAlways(method: keyof NativeIo | undefined): void {
    this.#broken = method;
  }
}

/** The inner side as a stub: collects (copies of) what the forwarder writes. */
class InnerSink implements InnerPort {
  readonly packets: Buffer[] = [];
  engine: Engine | undefined;
  write(entries: Entries, count: number): void {
    const bytes = this.engine!.bytes;
    for (let i = 0; i < count; i++) this.packets.push(Buffer.from(bytes.slice(entries.offsets[i]!, entries.offsets[i]! + entries.lengths[i]!)));
  }
  start(): void {}
  pause(): void {}
  resume(): void {}
  stop(): void {}
  close(): void {}
  setRoutes(): void {}
}

/** The outer side as a stub: collects (copies of) the ESP packets the forwarder sends. */
class OuterSink implements OuterPort {
  readonly port = 0;
  readonly batchesPerRead = 1;
  readonly packets: Buffer[] = [];
  engine: Engine | undefined;
  send(entries: Entries, count: number): void {
    const bytes = this.engine!.bytes;
    for (let i = 0; i < count; i++) this.packets.push(Buffer.from(bytes.slice(entries.offsets[i]!, entries.offsets[i]! + entries.lengths[i]!)));
  }
  sendKeepalives(_entries: Entries, count: number): number {
    return count;
  }
  sendControl(): boolean {
    return true;
  }
  start(): void {}
  pause(): void {}
  resume(): void {}
  stop(): void {}
  close(): void {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function configText(stateDir: string, tunName = "sluice-rf0"): string {
  return `
keepalive.interval = 0
[local]
address = "127.0.0.1"
port = 0
[tun]
name = "${tunName}"
addresses = ["${LOCAL_INNER}/24"]
[state]
dir = "${stateDir}"
[[peer]]
name = "far"
endpoint = "127.0.0.1:9"
selectors = ["10.77.2.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = ${SPI_OUT}
spi_in = ${SPI_IN}
`;
}

/** The config's peer in the forwarder's table, as the endpoint adds a static peer (fresh state: sequence numbers from 0). */
function addPeer(engine: Engine, forwarder: Forwarder, store: SeqStore, config: PeerConfig): StaticPeer {
  return addStaticPeer(forwarder.table, engine, store, config);
}

/** An ESP packet from the peer (an ICMP echo request from its selector to this side) with sequence number `seq`: 80 bytes. */
function fromPeer(seq: number): Buffer {
  return sealEsp(deriveKeys(SECRET, SPI_IN, SPI_OUT), SPI_IN, BigInt(seq), icmpEcho4(PEER_INNER, LOCAL_INNER, 0x7e57, seq));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The ICMP sequence numbers of the inner packets that arrived (each names the ESP sequence number it was sealed with). */
function icmpSeqs(packets: Buffer[]): number[] {
  return packets.map((p) => p.readUInt16BE(26));
}

interface Counts {
  slots: number;
  batches: number;
}

/** Free slots and batch regions once every batch in flight completed; the SAs hold no packet. */
async function settledCounts(engine: Engine, expected: Counts, peer: StaticPeer): Promise<Counts & { pending: number }> {
  await engine.idle();
  // Completions release their batch synchronously; a short grace covers a read callback still queued.
  await waitUntil(() => engine.freeSlots === expected.slots && engine.freeBatches === expected.batches, "the engine's slots and batches to come back", 500).catch(() => {});
  return { slots: engine.freeSlots, batches: engine.freeBatches, pending: peer.child.in.pending + peer.child.out.pending };
}

/* ---------------------------------------------------- the UDP (outer) port */

interface UdpRig {
  faults: FaultyIo;
  port: NativeUdpPort;
  engine: Engine;
  forwarder: Forwarder;
  peer: StaticPeer;
  inner: InnerSink;
  logs: LogSink;
  /** Starts forwarding; returns the free slots and batches right after (the keepalive slot taken, nothing read yet). */
  start(): Counts;
  /** Sends datagrams from a plain node:dgram socket to the port (resolves once the kernel took them). */
  send(datagrams: Buffer[]): Promise<void>;
}

async function udpRig(t: TestContext, real: NativeIo, gro: boolean): Promise<UdpRig | null> {
  process.env[SECRET_VAR] = SECRET;
  const dir = mkdtempSync(join(tmpdir(), "sluice-io-faults-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config: EndpointConfig = parseConfig(configText(dir));
  const faults = new FaultyIo(real);
  const saved = process.env.SLUICE_GRO;
  process.env.SLUICE_GRO = gro ? "1" : "0";
  let port: NativeUdpPort;
  try {
    port = NativeUdpPort.open(faults.io, config);
  } finally {
    if (saved === undefined) delete process.env.SLUICE_GRO;
    else process.env.SLUICE_GRO = saved;
  }
  if (port.groEnabled !== gro) {
    port.close();
    return null; // the kernel has no UDP_GRO: the caller skips
  }
  const engine = await createEngine({ ...ENGINE, ioScratch: port.ioScratchBytes });
  const logs = new LogSink();
  const forwarder = new Forwarder(engine, pino({ level: "info" }, logs));
  const inner = new InnerSink();
  inner.engine = engine;
  port.attach(forwarder);
  const peer = addPeer(engine, forwarder, new SeqStore(dir), config.peers[0]!);
  const sender = createSocket("udp4");
  await new Promise<void>((resolve) => sender.bind(0, "127.0.0.1", resolve));
  t.after(async () => {
    sender.close();
    forwarder.stop();
    await engine.close();
    port.close();
  });
  return {
    faults, port, engine, forwarder, peer, inner, logs,
    start(): Counts {
      forwarder.start(inner, port);
      return { slots: engine.freeSlots, batches: engine.freeBatches };
    },
    async send(datagrams: Buffer[]): Promise<void> {
      await Promise.all(datagrams.map((d) => new Promise<void>((resolve, reject) => sender.send(d, port.port, "127.0.0.1", (e) => (e ? reject(e) : resolve())))));
      await sleep(20); // loopback delivers within the send; this is slack only
    },
  };
}

/** Makes the forwarder's addInbound throw on its n-th call from now on (a bug in the read loop's path). */
function breakAddInbound(forwarder: Forwarder, n: number): { fired: () => boolean } {
  const original = forwarder.addInbound.bind(forwarder);
  let calls = 0;
  forwarder.addInbound = (...args) => {
    if (++calls === n) throw new Error("injected: addInbound");
    original(...args);
  };
  return { fired: () => calls >= n };
}

function internalErrors(forwarder: Forwarder): number {
  return forwarder.counters.drops["internal-error"] ?? 0;
}

const addonSkip = loadNativeIo() ? false : `native I/O addon unavailable: ${nativeIoUnavailableReason}`;

if (process.env.SLUICE_IO_FAULTS_CHILD === "1") {
  await tunChild();
} else {
  describe("native UDP port: a read loop that throws gives back every slot and batch", { skip: addonSkip }, () => {
    const real = loadNativeIo()!;

    test("plain path (SLUICE_GRO=0): udpRecvBatch throwing once is handled in place; nothing leaks or is lost", async (t) => {
      const rig = (await udpRig(t, real, false))!;
      const { engine, forwarder, faults, inner, logs } = rig;
      const base = rig.start();
      assert.deepEqual(base, { slots: ENGINE.slots - 1, batches: ENGINE.maxInFlight }, "only the keepalive slot is taken at start");
      faults.failOnce("udpRecvBatch");
      await rig.send(range(1, 5).map(fromPeer));
      await waitUntil(() => inner.packets.length === 5, "the 5 packets at the inner stub");
      assert.equal(faults.fired, 1);
      assert.deepEqual(icmpSeqs(inner.packets), range(1, 5), "the throw came before recvmmsg: nothing was taken from the socket, the next read got it all");
      // The port catches a receive error itself: counted and logged, not an internal error.
      assert.equal(logs.events("udp-receive-error").length, 1);
      assert.match(String(logs.events("udp-receive-error")[0]!.error), /injected: udpRecvBatch/);
      assert.equal(forwarder.counters.drops["udp-receive-error"], 1);
      assert.equal(internalErrors(forwarder), 0);
      assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
    });

    test("plain path (SLUICE_GRO=0): a throw mid-batch (addInbound, 3rd packet of 8) drops that read, counts internal-error, leaks nothing", async (t) => {
      const rig = (await udpRig(t, real, false))!;
      const { engine, forwarder, faults, inner, logs } = rig;
      const reads: number[] = [];
      faults.onReturn = (method, _args, result) => {
        if (method === "udpRecvBatch" && (result as number) > 0) reads.push(result as number);
      };
      await rig.send(range(1, 8).map(fromPeer)); // queued before the port reads
      const bug = breakAddInbound(forwarder, 3);
      const base = rig.start();
      await waitUntil(bug.fired, "the injected throw");
      assert.deepEqual(reads, [8], "the 8 queued datagrams came in one read");
      assert.equal(internalErrors(forwarder), 1);
      const logged = logs.events("internal-error");
      assert.equal(logged.length, 1);
      assert.equal(logged[0]!.level, 50, "logged as an error");
      assert.match(String(logged[0]!.error), /injected: addInbound/);
      // 2 slots were in the batch, 6 were still the read's: all 8 come back, and the batch region.
      assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
      assert.equal(inner.packets.length, 0, "the abandoned batch was not submitted");
      assert.equal(engine.saSeq(rig.peer.child.in), 0n, "nothing of the abandoned read reached the replay window");
      // The port goes on: later packets, and the lost ones sent again, all arrive.
      await rig.send(range(9, 11).map(fromPeer));
      await waitUntil(() => inner.packets.length === 3, "3 later packets at the inner stub");
      await rig.send(range(1, 8).map(fromPeer));
      await waitUntil(() => inner.packets.length === 11, "the 8 lost packets, sent again");
      assert.deepEqual(icmpSeqs(inner.packets), [...range(9, 11), ...range(1, 8)]);
      assert.equal(internalErrors(forwarder), 1);
      assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
    });

    describe("GRO path", () => {
      const SIZE = fromPeer(1).length;
      const tx = real.udpOpen(4, "127.0.0.1", 0);
      after(() => real.close(tx.fd));

      /** One UDP GSO send of these ESP packets (equal sizes): it reaches a GRO socket as one super-packet. */
      function sendGso(rig: UdpRig, seqs: number[]): void {
        const packets = seqs.map(fromPeer);
        const buffer = new Uint8Array(packets.length * SIZE);
        const offsets = new Int32Array(packets.length);
        const lengths = new Int32Array(packets.length);
        packets.forEach((p, i) => {
          assert.equal(p.length, SIZE);
          buffer.set(p, i * SIZE);
          offsets[i] = i * SIZE;
          lengths[i] = SIZE;
        });
        const to = new Uint8Array(ADDRESS_BYTES);
        encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rig.port.port });
        assert.equal(real.udpSendGso(tx.fd, buffer, offsets, lengths, packets.length, to, SIZE), 1);
      }

      /** Records each non-empty receive: how many areas, and the first one's length and segment size. */
      function recordReceives(rig: UdpRig): { n: number; total: number; segment: number }[] {
        const receives: { n: number; total: number; segment: number }[] = [];
        rig.faults.onReturn = (method, args, result) => {
          if (method !== "udpRecvBatch" || (result as number) === 0) return;
          receives.push({ n: result as number, total: (args[4] as Int32Array)[0]!, segment: (args[7] as Int32Array)[0]! });
        };
        return receives;
      }

      const groSkip = tx.gso ? false : "the kernel has no UDP_SEGMENT: no GSO send to make a GRO super-packet";

      test("copyBatch throwing on a full batch (2nd of 40 packets in batches of 16): the in-flight batch completes, the one being filled is given back", { skip: groSkip }, async (t) => {
        const rig = await udpRig(t, real, true);
        if (rig === null) return t.skip("the kernel has no UDP_GRO");
        const { engine, forwarder, faults, inner, logs } = rig;
        const receives = recordReceives(rig);
        sendGso(rig, range(1, 40)); // queued before the port reads
        await sleep(20);
        faults.failOnce("copyBatch", { skip: 1 });
        const base = rig.start();
        assert.deepEqual(base, { slots: ENGINE.slots - 1, batches: ENGINE.maxInFlight });
        await waitUntil(() => faults.fired === 1, "the injected throw");
        assert.deepEqual(receives, [{ n: 1, total: 40 * SIZE, segment: SIZE }], "the 40 packets came as one GRO super-packet");
        assert.equal(internalErrors(forwarder), 1);
        assert.match(String(logs.events("internal-error")[0]!.error), /injected: copyBatch/);
        // Packets 1-16 were submitted before the throw; 17-32 were in the abandoned batch; 33-40 never reached a batch.
        await waitUntil(() => inner.packets.length >= 16, "the first batch at the inner stub");
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
        assert.deepEqual(icmpSeqs(inner.packets), range(1, 16));
        assert.equal(engine.saSeq(rig.peer.child.in), 16n);
        // Later traffic flows, and the lost packets were never accepted (so they are accepted now).
        sendGso(rig, range(41, 80));
        await waitUntil(() => inner.packets.length === 56, "40 later packets");
        sendGso(rig, range(17, 40));
        await waitUntil(() => inner.packets.length === 80, "the 24 lost packets, sent again");
        assert.deepEqual(icmpSeqs(inner.packets), [...range(1, 16), ...range(41, 80), ...range(17, 40)]);
        assert.equal(faults.calls.copyBatch, 2 + 3 + 2, "copies: 2 (the faulted read), 3 and 2 after");
        assert.equal(internalErrors(forwarder), 1);
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
      });

      test("copyBatch throwing after the addon copied (end of a receive, 10 packets): the batch is given back", { skip: groSkip }, async (t) => {
        const rig = await udpRig(t, real, true);
        if (rig === null) return t.skip("the kernel has no UDP_GRO");
        const { engine, forwarder, faults, inner } = rig;
        sendGso(rig, range(1, 10));
        await sleep(20);
        faults.failOnce("copyBatch", { afterCall: true });
        const base = rig.start();
        await waitUntil(() => faults.fired === 1, "the injected throw");
        assert.equal(internalErrors(forwarder), 1);
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
        assert.equal(inner.packets.length, 0);
        sendGso(rig, range(11, 20));
        await waitUntil(() => inner.packets.length === 10, "10 later packets");
        assert.deepEqual(icmpSeqs(inner.packets), range(11, 20));
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
      });

      test("a throw between taking a slot and adding it (addInbound, 20th of 40): the orphan slot comes back too", { skip: groSkip }, async (t) => {
        const rig = await udpRig(t, real, true);
        if (rig === null) return t.skip("the kernel has no UDP_GRO");
        const { engine, forwarder, inner, logs } = rig;
        sendGso(rig, range(1, 40));
        await sleep(20);
        const bug = breakAddInbound(forwarder, 20);
        const base = rig.start();
        await waitUntil(bug.fired, "the injected throw");
        assert.equal(internalErrors(forwarder), 1);
        assert.match(String(logs.events("internal-error")[0]!.error), /injected: addInbound/);
        // 1-16 submitted; 17-19 in the abandoned batch; the 20th's slot taken but not added.
        await waitUntil(() => inner.packets.length >= 16, "the first batch at the inner stub");
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
        assert.deepEqual(icmpSeqs(inner.packets), range(1, 16));
        sendGso(rig, range(41, 50));
        await waitUntil(() => inner.packets.length === 26, "10 later packets");
        assert.deepEqual(await settledCounts(engine, base, rig.peer), { ...base, pending: 0 });
      });
    });
  });

  describe("TUN port in a network namespace: a read loop that throws gives back every slot and batch; a refused write costs one packet", { skip: addonSkip || tunDeviceSkip() }, () => {
    const ns = useNamespace("sl-rf");

    test("tunReadBatch throwing before and after the addon read: internal-error twice, no slot or batch lost, traffic flows; a write refused mid-batch loses only that packet", async () => {
      const report = await runChildInNamespace<TunReport>(ns, SELF, "SLUICE_IO_FAULTS_CHILD");
      const base = report.base;
      assert.deepEqual(base, { slots: ENGINE.slots - 1, batches: ENGINE.maxInFlight }, "only the keepalive slot is taken at start");
      // (a) thrown before the read: nothing taken from the device, all 3 packets sealed after.
      assert.equal(report.before.fired, 1);
      assert.equal(report.before.internalErrors, 1);
      assert.deepEqual(report.before.counts, { ...base, pending: 0 });
      assert.deepEqual(report.before.opened, [1, 2, 3], "the 3 packets, sealed for the peer and opened with its keys, in order");
      // (b) thrown after the addon read into the slots: that read is lost, later packets are sealed.
      assert.equal(report.after.fired, 2);
      assert.equal(report.after.internalErrors, 2);
      assert.deepEqual(report.after.counts, { ...base, pending: 0 });
      assert.deepEqual({ lostRead: report.after.lostRead, late: report.after.late }, { lostRead: 1, late: [] }, "the faulted read took packet 10 into a slot; it was lost with the batch");
      assert.deepEqual(report.after.opened, [11, 12], "later packets flow");
      assert.equal(report.logged, 2);
      // (c) only the refused packet is lost; the two after it are written by the next call.
      assert.deepEqual(report.write, { replies: [20, 21, 23, 24], refused: 1, full: 0, logged: 1, deviceCalls: 2, deviceRefused: 5 },
        "echo 22 refused, the rest answered; a device refusing everything costs two calls for the batch of 5");
    });
  });
}


/* ------------------------------------------ the TUN (inner) port: the child */

interface TunReport {
  base: Counts;
  before: { fired: number; internalErrors: number; counts: Counts & { pending: number }; opened: number[] };
  after: { fired: number; internalErrors: number; counts: Counts & { pending: number }; opened: number[]; lostRead: number; late: number[] };
  write: { replies: number[]; refused: number; full: number; logged: number; deviceCalls: number; deviceRefused: number };
  offload: boolean;
  logged: number;
}

/** Runs inside the namespace: a TunPort on the faulty addon, the outer side a stub, UDP datagrams routed into the TUN. */
async function tunChild(): Promise<void> {
  process.env[SECRET_VAR] = SECRET;
  // No IPv6 in the namespace: no router solicitations or MLD reports read from the TUN between ours.
  for (const which of ["all", "default"]) {
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${which}/disable_ipv6`, "1");
    } catch {
      // No IPv6 at all: nothing to quiet.
    }
  }
  execFileSync("ip", ["link", "set", "lo", "up"]);
  const dir = mkdtempSync(join(tmpdir(), "sluice-io-faults-"));
  const faults = new FaultyIo(loadNativeIo()!);
  const config = parseConfig(configText(dir));
  const tun = TunPort.open(faults.io, config);
  const engine = await createEngine(ENGINE);
  const logs = new LogSink();
  const forwarder = new Forwarder(engine, pino({ level: "info" }, logs));
  const outer = new OuterSink();
  outer.engine = engine;
  tun.attach(forwarder);
  const peer = addPeer(engine, forwarder, new SeqStore(dir), config.peers[0]!);
  // Before start: with offloads, start() reads the device at once.
  const base = { slots: engine.freeSlots - 1, batches: engine.freeBatches };
  forwarder.start(tun, outer);
  const sender = createSocket("udp4");
  await new Promise<void>((resolve) => sender.bind(0, LOCAL_INNER, resolve));
  /** A UDP datagram to the peer's side, routed into the TUN; its payload's first byte names it. */
  const send = (tags: number[]): Promise<void> =>
    Promise.all(tags.map((tag) => new Promise<void>((resolve, reject) => sender.send(Buffer.from([tag, 0x5a, 0x5a, 0x5a]), 9999, PEER_INNER, (e) => (e ? reject(e) : resolve()))))).then(() => undefined);
  // What reached the outer stub, opened with the peer's inbound keys: the tags, in order.
  const far = new InboundSa({ spi: SPI_OUT, ...deriveKeys(SECRET, SPI_OUT, SPI_IN), esn: true, replayWindow: 1024 });
  let seen = 0;
  /** The inner packets that reached the outer stub since the last call, opened. */
  const openedPackets = (): Uint8Array[] => {
    const packets: Uint8Array[] = [];
    for (; seen < outer.packets.length; seen++) {
      const r = far.open(outer.packets[seen]!);
      if (r.status === "ok") packets.push(r.packet!);
    }
    return packets;
  };
  const opened = (): number[] => openedPackets().filter((p) => p[9] === 17).map((p) => p[28]!);
  /** ICMP echo replies: their sequence numbers. */
  const echoReplies = (): number[] => openedPackets().filter((p) => p[9] === 1 && p[20] === 0).map((p) => (p[26]! << 8) | p[27]!);
  try {
    // (a) thrown before the addon reads: the packets stay in the device for the next read.
    faults.failOnce("tunReadBatch");
    await send([1, 2, 3]);
    const beforeTags: number[] = [];
    await waitUntil(() => (beforeTags.push(...opened()), beforeTags.length >= 3 && faults.fired === 1), "3 sealed packets after the throw");
    const before = { fired: faults.fired, internalErrors: internalErrors(forwarder), counts: await settledCounts(engine, base, peer), opened: beforeTags };
    // (b) thrown after the addon read into the slots: what it read is lost with the batch.
    faults.failOnce("tunReadBatch", { afterCall: true });
    await send([10]);
    await waitUntil(() => faults.fired === 2, "the second injected throw");
    await sleep(50);
    const late = opened(); // what the faulted read did not take (nothing, when it read packet 10)
    await send([11, 12]);
    const afterTags: number[] = [];
    await waitUntil(() => (afterTags.push(...opened()), afterTags.length >= 2), "2 sealed packets after the second throw");
    const after_ = { fired: faults.fired, internalErrors: internalErrors(forwarder), counts: await settledCounts(engine, base, peer), opened: afterTags, lostRead: faults.firedResults[0] as number, late };
    // (c) the kernel refusing one packet of a TUN write: five opened packets
    // (echo requests to this side's address) go to tun.write as one batch;
    // the addon writes two and refuses the third. The kernel answers what it
    // got, through the TUN, and the answers are sealed.
    const writeEchoes = (sequences: number[]): void => {
      const entries: Entries = { offsets: new Int32Array(sequences.length), lengths: new Int32Array(sequences.length), peers: new Int32Array(sequences.length) };
      const slots = sequences.map((sequence, i) => {
        const slot = engine.acquireSlot();
        const packet = icmpEcho4(PEER_INNER, LOCAL_INNER, 0x77, sequence);
        entries.offsets[i] = engine.packetOffset(slot);
        entries.lengths[i] = packet.length;
        engine.bytes.set(packet, entries.offsets[i]!);
        return slot;
      });
      tun.write(entries, sequences.length);
      for (const slot of slots) engine.releaseSlot(slot);
    };
    faults.refuseAfter("tunWriteBatch", 2);
    writeEchoes([20, 21, 22, 23, 24]);
    const replies: number[] = [];
    await waitUntil(() => (replies.push(...echoReplies()), replies.length >= 4), "4 echo replies");
    await sleep(50);
    replies.push(...echoReplies());
    const drops = forwarder.counters.drops;
    const refused = (): number => drops["tun-write-error"] ?? 0;
    const write = { replies, refused: refused(), full: drops["tun-write-full"] ?? 0, logged: logs.events("tun-write-error").length, deviceCalls: 0, deviceRefused: 0 };
    // (d) a device that refuses every write (down, gone): two tries, and the whole batch counted.
    const callsBefore = faults.calls.tunWriteBatch ?? 0;
    faults.breakAlways("tunWriteBatch");
    writeEchoes([30, 31, 32, 33, 34]);
    faults.breakAlways(undefined);
    write.deviceCalls = (faults.calls.tunWriteBatch ?? 0) - callsBefore;
    write.deviceRefused = refused() - write.refused;
    const report: TunReport = { base, before, after: after_, write, offload: tun.offload, logged: logs.events("internal-error").length };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    sender.close();
    forwarder.stop();
    await engine.close();
    tun.close();
    far.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
