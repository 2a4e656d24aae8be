/**
 * The outer port of the native path: ESP in UDP (RFC 3948) on a socket the
 * addon reads with recvmmsg and writes with sendmmsg, straight from and into
 * engine slots, with UDP GSO and GRO where the kernel has them.
 *
 *   UDP ─udpRecvBatch→ slots (+ source addresses) → Forwarder.classify → addInbound → submitOpen
 *   UDP ←udpSendGso / udpSendBatch─ slots ← Forwarder (#sendSealed)
 *   UDP ←udpSendBatch─ a control datagram (IKE) ← Forwarder.sendControl
 *
 * Why GSO and GRO: the kernel's UDP/IP path costs per datagram. A run of
 * equal-sized packets to one peer (bulk TCP) leaves as one GSO send, and a
 * peer's GSO send arrives as one GRO super-packet, each crossing that path
 * once. The kernel queues or drops while reading is paused (backpressure).
 */
import type { Batch } from "../engine/batch.js";
import { ADDRESS_BYTES, encodeAddress, type SocketAddress } from "../io/address.js";
import type { NativeIo } from "../io/native.js";
import type { EndpointConfig } from "./config.js";
import type { Forwarder } from "./forwarder.js";
import type { Entries, OuterPort } from "./ports.js";
import { ReadScratch } from "./readScratch.js";
import { Readiness } from "./readiness.js";

/** UDP GRO: super-packets are received into this many areas of this size (the I/O scratch). */
const GRO_AREAS = 4;
const GRO_AREA = 65536;
/** The most datagrams one GRO receive can hold: the kernel coalesces up to 64 per area (UDP_GRO_CNT_MAX). */
const GRO_PACKETS = GRO_AREAS * 64;

/** UDP GSO limits: segments per send (the kernel's UDP_MAX_SEGMENTS) and payload bytes. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65507;

export class NativeUdpPort implements OuterPort {
  /** Whether the kernel does UDP GSO on our socket (and SLUICE_GSO=0 did not switch it off). */
  gso: boolean;
  #host: Forwarder | undefined;
  #read: ReadScratch | undefined;
  /** Source addresses of a receive, destinations of a send (28-byte encoding). */
  #addresses = new Uint8Array(0);
  /** Source addresses of a GRO receive, one per area (a super-packet comes from one source). */
  readonly #groAddresses = new Uint8Array(GRO_AREAS * ADDRESS_BYTES);
  /** One control datagram's send: its own arrays, as it may be sent from inside a read or a completion. */
  readonly #control = { offsets: new Int32Array(1), lengths: new Int32Array(1), address: new Uint8Array(ADDRESS_BYTES) };
  /** Receive arrays of the GRO path (offsets of the areas in the I/O scratch). */
  readonly #groState = {
    offsets: new Int32Array(GRO_AREAS),
    lengths: new Int32Array(GRO_AREAS),
    segments: new Int32Array(GRO_AREAS),
    // Datagram copies from the areas into slots, made in one call before each
    // submit (a copyWithin each would enter V8's runtime per packet).
    copyFrom: new Int32Array(GRO_PACKETS),
    copyTo: new Int32Array(GRO_PACKETS),
    copyLengths: new Int32Array(GRO_PACKETS),
    copies: 0,
  };
  /** One GSO send's entries, copied to the front (a subarray per send would allocate two views). */
  readonly #gsoRun = { offsets: new Int32Array(GSO_MAX_SEGMENTS), lengths: new Int32Array(GSO_MAX_SEGMENTS) };
  readonly #readiness: Readiness;
  #closed = false;
  // Bound once: a readiness callback allocates nothing.
  readonly #onUdpReadable = (): void => {
    try {
      this.#readUdpAny();
    } catch (error) {
      const engine = this.#host!.engine;
      this.#read!.abandon(engine, this.#building);
      if (this.#orphan >= 0 && engine.slotInUse(this.#orphan)) engine.releaseSlot(this.#orphan);
      this.#building = null;
      this.#orphan = -1;
      this.#groState.copies = 0;
      this.#host!.internalError(error);
    }
  };
  /** The batch a read loop is filling, and a slot taken for it but not yet added (given back if the loop throws). */
  #building: Batch | null = null;
  #orphan = -1;

  private constructor(
    private readonly io: NativeIo,
    readonly fd: number,
    readonly port: number,
    /** The kernel has UDP_SEGMENT on this socket. */
    readonly gsoAvailable: boolean,
    readonly groEnabled: boolean,
  ) {
    this.gso = gsoAvailable && process.env.SLUICE_GSO !== "0";
    this.#readiness = new Readiness(io, fd, this.#onUdpReadable);
  }

  /** Binds the config's local address and port; asks for GRO unless SLUICE_GRO=0. */
  static open(io: NativeIo, config: EndpointConfig): NativeUdpPort {
    const family = config.local.address.includes(":") ? 6 : 4;
    const udp = io.udpOpen(family, config.local.address, config.local.port, { gro: process.env.SLUICE_GRO !== "0" });
    return new NativeUdpPort(io, udp.fd, udp.port, udp.gso, udp.groEnabled);
  }

  /** Batch regions one receive may fill (the TUN side leaves them free: see Forwarder.innerMayRead). */
  get batchesPerRead(): number {
    return this.groEnabled ? Math.ceil(GRO_PACKETS / this.#host!.engine.layout.batchSize) : 1;
  }

  /** Bytes of the engine's I/O scratch the GRO receive areas need (give it to createEngine). */
  get ioScratchBytes(): number {
    return this.groEnabled ? GRO_AREAS * GRO_AREA : 0;
  }

  /** Connects the port to the forwarding core (before start). */
  attach(host: Forwarder): void {
    const layout = host.engine.layout;
    const size = Math.min(layout.batchSize, this.io.batchMax);
    this.#host = host;
    this.#read = new ReadScratch(size);
    this.#addresses = new Uint8Array(Math.max(size, layout.batchSize) * ADDRESS_BYTES);
    for (let i = 0; i < GRO_AREAS; i++) this.#groState.offsets[i] = layout.ioScratchAt + i * GRO_AREA;
  }

  start(): void {
    this.#readiness.watch();
  }

  pause(): void {
    this.#readiness.pause();
  }

  resume(): void {
    this.#readiness.watch();
  }

  stop(): void {
    this.#readiness.stop();
  }

  close(): void {
    this.#closed = true;
    this.io.close(this.fd);
  }

  receiveOverflows(): number | null {
    return this.#closed ? null : this.io.udpCapabilities(this.fd).drops ?? null;
  }

  // ---- sending ----

  /**
   * Sends entries 0…k-1 in order. Runs of equal-sized packets to one peer
   * (bulk TCP) go out as one UDP GSO send each: the kernel's UDP/IP path is
   * crossed once per run instead of once per packet. The rest go out with
   * sendmmsg. Entries are compacted in place into the sendmmsg list.
   */
  send(entries: Entries, k: number): void {
    const host = this.#host!;
    const offsets = entries.offsets;
    const lengths = entries.lengths;
    const entryPeer = entries.peers;
    let singles = 0;
    let i = 0;
    while (i < k) {
      const peerId = entryPeer[i]!;
      const size = lengths[i]!;
      let j = i + 1;
      let total = size;
      if (this.gso) {
        while (j < k && j - i < GSO_MAX_SEGMENTS && entryPeer[j] === peerId && total + lengths[j]! <= GSO_MAX_BYTES) {
          const next = lengths[j]!;
          if (next > size) break;
          total += next;
          j++;
          if (next < size) break; // a shorter packet can only end a run
        }
      }
      if (j - i >= 2) {
        if (singles > 0) singles = this.#flushSingles(entries, singles);
        const peer = host.peerById[peerId]!;
        const run = this.#gsoRun;
        for (let k = i; k < j; k++) {
          run.offsets[k - i] = offsets[k]!;
          run.lengths[k - i] = lengths[k]!;
        }
        let sent = 0;
        try {
          sent = this.io.udpSendGso(this.fd, host.engine.bytes, run.offsets, run.lengths, j - i, peer.address, size);
        } catch (error) {
          host.log.warn({ event: "udp-gso-error", error: String(error) }, "GSO send failed; sending packet by packet from now on");
          this.gso = false;
          continue; // retry this run without GSO
        }
        if (sent === 0) host.drop("udp-send-full", j - i);
      } else {
        // Compact into the sendmmsg list (positions 0…singles-1; singles <= i).
        offsets[singles] = offsets[i]!;
        lengths[singles] = size;
        this.#addresses.set(host.peerById[peerId]!.address, singles * ADDRESS_BYTES);
        singles++;
      }
      i = j;
    }
    if (singles > 0) this.#flushSingles(entries, singles);
  }

  #flushSingles(entries: Entries, count: number): number {
    const sent = this.#send(entries, count);
    if (sent < count) this.#host!.drop("udp-send-full", count - sent);
    return 0;
  }

  #send(entries: Entries, count: number): number {
    try {
      return this.io.udpSendBatch(this.fd, this.#host!.engine.bytes, entries.offsets, entries.lengths, this.#addresses, count);
    } catch (error) {
      this.#host!.ioError("udp-send-error", error, count);
      return count;
    }
  }

  sendControl(datagram: Uint8Array, to: SocketAddress): boolean {
    const host = this.#host!;
    const control = this.#control;
    try {
      encodeAddress(control.address, 0, to);
      control.lengths[0] = datagram.length;
      if (this.io.udpSendBatch(this.fd, datagram, control.offsets, control.lengths, control.address, 1) === 1) return true;
      host.drop("control-send-full");
    } catch (error) {
      host.ioError("control-send-error", error, 1);
    }
    return false;
  }

  sendKeepalives(entries: Entries, count: number): number {
    const peerById = this.#host!.peerById;
    for (let i = 0; i < count; i++) this.#addresses.set(peerById[entries.peers[i]!]!.address, i * ADDRESS_BYTES);
    return this.#send(entries, count);
  }

  // ---- receiving ----

  #readUdpAny(): void {
    if (this.groEnabled) this.#readUdpGro();
    else this.#readUdp();
  }

  /**
   * With UDP GRO the kernel hands over up to 64 KB of datagrams of one size
   * in one receive (a peer's GSO send arrives that way), sparing it a pass
   * through its UDP stack per datagram. They land in the I/O scratch and each
   * is copied into a slot of its own (a memmove inside the shared memory,
   * all of a batch's in one call).
   */
  #readUdpGro(): void {
    const host = this.#host!;
    const engine = host.engine;
    const bytes = engine.bytes;
    const base = engine.layout.ioScratchAt;
    const gro = this.#groState;
    for (;;) {
      // Room for a whole receive first (at most GRO_PACKETS datagrams): what cannot be placed is lost.
      if (engine.freeSlots < GRO_PACKETS || engine.freeBatches < this.batchesPerRead) return host.pause();
      let n: number;
      try {
        n = this.io.udpRecvBatch(this.fd, bytes, gro.offsets, GRO_AREA, gro.lengths, this.#groAddresses, GRO_AREAS, gro.segments);
      } catch (error) {
        host.ioError("udp-receive-error", error, 1);
        n = 0;
      }
      let batch: Batch | null = null;
      for (let i = 0; i < n; i++) {
        const total = gro.lengths[i]!;
        if (total < 0) {
          host.drop("udp-truncated");
          continue;
        }
        const segment = gro.segments[i]! > 0 ? gro.segments[i]! : Math.max(total, 1);
        for (let at = 0; at < total || (total === 0 && at === 0); at += segment) {
          const length = Math.min(segment, total - at);
          const from = base + i * GRO_AREA + at;
          if (length > engine.maxEspPacket) {
            // Larger than a slot holds (the plain path has recvmmsg cut it): dropped alike.
            host.drop("udp-truncated");
            continue;
          }
          const child = host.classify(bytes, from, length, this.#groAddresses, i);
          if (child === undefined) continue;
          if (batch === null) {
            batch = this.#building = engine.beginBatch("open");
            if (batch === null) {
              host.drop("backpressure");
              continue;
            }
          }
          const slot = (this.#orphan = engine.acquireSlot());
          if (slot < 0) {
            host.drop("backpressure");
            continue;
          }
          const copy = gro.copies++;
          gro.copyFrom[copy] = from;
          gro.copyTo[copy] = engine.espOffset(slot);
          gro.copyLengths[copy] = length;
          host.addInbound(batch, slot, child, length, this.#groAddresses, i);
          this.#orphan = -1;
          if (batch.full) {
            this.#copyIntoSlots();
            host.submitOpen(batch);
            this.#building = batch = null;
          }
          if (total === 0) break;
        }
      }
      if (batch !== null) {
        if (batch.count === 0) batch.release();
        else {
          this.#copyIntoSlots();
          host.submitOpen(batch);
        }
        this.#building = null;
      }
      if (n < GRO_AREAS) return; // the socket is drained
    }
  }

  /** Makes the copies recorded since the last submit (before the workers may read the slots). */
  #copyIntoSlots(): void {
    const gro = this.#groState;
    if (gro.copies === 0) return;
    this.io.copyBatch(this.#host!.engine.bytes, gro.copyFrom, gro.copyTo, gro.copyLengths, gro.copies);
    gro.copies = 0;
  }

  #readUdp(): void {
    const host = this.#host!;
    const read = this.#read!;
    const engine = host.engine;
    const bytes = engine.bytes;
    const capacity = engine.maxEspPacket;
    for (;;) {
      const batch = read.start(engine, "open");
      if (batch === null) return host.pause();
      this.#building = batch;
      const slots = read.count;
      let n: number;
      try {
        n = this.io.udpRecvBatch(this.fd, bytes, read.offsets, capacity, read.lengths, this.#addresses, slots);
      } catch (error) {
        host.ioError("udp-receive-error", error, 1);
        n = 0;
      }
      read.releaseUnfilled(engine, n);
      for (let i = 0; i < n; i++) {
        const slot = read.slots[i]!;
        const child = host.classify(bytes, read.offsets[i]!, read.lengths[i]!, this.#addresses, i);
        if (child === undefined) {
          engine.releaseSlot(slot);
          continue;
        }
        host.addInbound(batch, slot, child, read.lengths[i]!, this.#addresses, i);
      }
      read.handedOver();
      if (batch.count === 0) batch.release();
      else host.submitOpen(batch);
      this.#building = null;
      if (n < slots) return; // the socket is drained
    }
  }
}
