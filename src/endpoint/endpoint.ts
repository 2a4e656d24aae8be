/**
 * The VPN endpoint: a TUN device on one side, ESP in UDP (RFC 3948) on the
 * other, the engine in between. All I/O is batched through the native addon
 * straight into and out of the engine's slots; the main thread classifies,
 * the workers seal and open.
 *
 *   TUN ─tunReadBatch→ slots → route (longest prefix) → seal batch ─┐
 *   UDP ←udpSendBatch─ slots ←──────── in-order completion ←────────┘
 *   UDP ─udpRecvBatch→ slots → demux (keepalive / non-ESP / SPI) → open batch ─┐
 *   TUN ←tunWriteBatch─ slots ← inner source check ← in-order completion ←─────┘
 *
 * Backpressure: when the engine has no slot or batch region free, the
 * endpoint stops reading (the kernel queues or drops, as for any router) and
 * resumes on "drain". Packets with no route are dropped, never sent in clear.
 */
import { execFileSync } from "node:child_process";
import type { Logger } from "pino";
import { createEngine, type Engine } from "../engine/engine.js";
import type { Batch } from "../engine/batch.js";
import type { SaHandle } from "../engine/saTable.js";
import { HEADROOM } from "../engine/layout.js";
import { ESP_HEADER } from "../kernel/layout.js";
import type { NativeIo, PollHandle } from "../io/native.js";
import { ADDRESS_BYTES, encodeAddress, decodeAddress, formatAddress } from "../io/address.js";
import type { EndpointConfig, PeerConfig } from "./config.js";
import { PrefixTable } from "./prefix.js";
import { innerAddresses } from "./innerPacket.js";
import { loadKeymat, loadSecret, deriveSaKeys, type SaKeys } from "./keys.js";
import { SeqStore, Reservation, OUT_BLOCK, IN_BLOCK } from "./seqStore.js";

/** Drops the endpoint counts itself (the engine counts its own). */
export interface EndpointCounters {
  drops: Record<string, number>;
  keepalivesIn: number;
  keepalivesOut: number;
}

/** A peer at run time. */
interface Peer {
  /** Its number in #peerById, which in-flight packets refer to; never reused. */
  id: number;
  /** What identifies its settings and keys: an unchanged peer survives a reload. */
  signature: string;
  /** The sequence stores' names, which carry the keys' fingerprints. */
  outId: string;
  inId: string;
  config: PeerConfig;
  out: SaHandle;
  in: SaHandle;
  outReservation: Reservation;
  inReservation: Reservation;
  /** Its outer address, 28-byte socket address encoding; updated when it roams. */
  address: Uint8Array;
  /** Inner sources it may send from. */
  selectors: PrefixTable<true>;
  /** Marks the peer as seen in one pass over a batch (see #visit). */
  visited: number;
}

/** A replaced peer's counters, carried over when its keys did not change. */
interface LiveCounters {
  out: bigint;
  in: bigint;
  outId: string;
  inId: string;
}

/** UDP GRO: super-packets are received into this many areas of this size (the I/O scratch). */
const GRO_AREAS = 4;
const GRO_AREA = 65536;
/** The most datagrams one GRO receive can hold (64 KB of 1400-byte ones is 46). */
const GRO_PACKETS = GRO_AREAS * 48;

/** UDP GSO limits: segments per send (the kernel's UDP_MAX_SEGMENTS) and payload bytes. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65507;

const ESN_LIMIT = 0xffffffffffffffffn;
const NO_ESN_LIMIT = 0xffffffffn;

export class Endpoint {
  readonly counters: EndpointCounters = { drops: {}, keepalivesIn: 0, keepalivesOut: 0 };
  /** Every peer ever added, by id: a packet in flight may belong to a peer a reload removed. */
  readonly #peerById: Peer[] = [];
  /** The configured peers. */
  #peers: Peer[] = [];
  #routes = new PrefixTable<Peer>();
  #bySpi = new Map<number, Peer>();
  /** The peer of the packet in each slot. */
  readonly #slotPeer: Int32Array;
  readonly #batchSize: number;
  // Scratch arrays for one I/O call, reused: nothing is allocated per packet.
  readonly #offsets: Int32Array;
  readonly #lengths: Int32Array;
  readonly #addresses: Uint8Array;
  readonly #slotList: Int32Array;
  #slotCount = 0;
  /** The peer (id) of each entry of #offsets / #lengths being sent. */
  readonly #entryPeer: Int32Array;
  /** Whether the kernel does UDP GSO on our socket. */
  #gso: boolean;
  /** Receive arrays of the GRO path (offsets of the areas in the I/O scratch). */
  readonly #groState = {
    offsets: new Int32Array(GRO_AREAS),
    lengths: new Int32Array(GRO_AREAS),
    segments: new Int32Array(GRO_AREAS),
  };
  #tunPoll: PollHandle | undefined;
  #udpPoll: PollHandle | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #keepaliveSlot = -1;
  #stopped = false;

  private constructor(
    /** The config in force (peers and keepalive follow reloads). */
    public config: EndpointConfig,
    readonly engine: Engine,
    private readonly io: NativeIo,
    private readonly log: Logger,
    readonly tun: { fd: number; name: string },
    readonly udp: { fd: number; port: number; gso: boolean; groEnabled: boolean },
    private readonly store: SeqStore,
  ) {
    this.#slotPeer = new Int32Array(engine.layout.slotCount);
    this.#batchSize = Math.min(engine.layout.batchSize, io.batchMax);
    this.#offsets = new Int32Array(this.#batchSize);
    this.#lengths = new Int32Array(this.#batchSize);
    this.#addresses = new Uint8Array(this.#batchSize * ADDRESS_BYTES);
    this.#slotList = new Int32Array(this.#batchSize);
    this.#entryPeer = new Int32Array(this.#batchSize);
    this.#gso = udp.gso && process.env.SLUICE_GSO !== "0";
    for (let i = 0; i < GRO_AREAS; i++) this.#groState.offsets[i] = engine.layout.ioScratchAt + i * GRO_AREA;
  }

  /** Opens the TUN and the UDP socket, adds the peers' SAs and starts forwarding. */
  static async start(config: EndpointConfig, io: NativeIo, log: Logger): Promise<Endpoint> {
    const store = new SeqStore(config.stateDir);
    const tun = io.tunOpen(config.tun.name);
    let engine: Engine | undefined;
    let udpFd = -1;
    try {
      configureTun(tun.name, config);
      const family = config.local.address.includes(":") ? 6 : 4;
      const udp = io.udpOpen(family, config.local.address, config.local.port, { gro: process.env.SLUICE_GRO !== "0" });
      udpFd = udp.fd;
      engine = await createEngine({ workers: config.engine.workers, slots: 4096, batchSize: 64, maxInFlight: 16, ioScratch: udp.groEnabled ? GRO_AREAS * GRO_AREA : 0 });
      const endpoint = new Endpoint(config, engine, io, log, tun, udp, store);
      endpoint.#setPeers(config.peers.map((peer) => endpoint.#addPeer(peer)));
      endpoint.#run();
      log.info({ event: "up", tun: tun.name, udp: `${config.local.address}:${udp.port}`, peers: config.peers.length, io: "native", gso: udp.gso, gro: udp.groEnabled }, "sluice endpoint up");
      return endpoint;
    } catch (error) {
      if (engine) await engine.close();
      if (udpFd >= 0) io.close(udpFd);
      io.close(tun.fd);
      throw error;
    }
  }

  /**
   * Adds a peer's SAs to the engine. They resume above the sequence numbers
   * reserved on disk, or, on a reload that kept the keys, where the running
   * SAs are (`live`): a restart must skip ahead, a reload need not.
   */
  #addPeer(peerConfig: PeerConfig, live?: LiveCounters): Peer {
    const keys = peerKeys(peerConfig);
    const limit = peerConfig.esn ? ESN_LIMIT : NO_ESN_LIMIT;
    const outId = SeqStore.id("out", peerConfig.spiOut, keys.out.key, keys.out.salt);
    const inId = SeqStore.id("in", peerConfig.spiIn, keys.in.key, keys.in.salt);
    const outReservation = new Reservation(this.store, outId, OUT_BLOCK, limit);
    const inReservation = new Reservation(this.store, inId, IN_BLOCK, limit);
    const sameKeys = live !== undefined && live.outId === outId && live.inId === inId;
    const resumeOut = sameKeys ? live.out : outReservation.bound;
    const resumeIn = sameKeys ? live.in : inReservation.bound;
    // Durable before the first packet: sealing resumes above what may have been used.
    outReservation.ensure(resumeOut + 1n);
    const out = this.engine.addSa({ direction: "out", spi: peerConfig.spiOut, ...keys.out, esn: peerConfig.esn, seq: resumeOut });
    const inbound = this.engine.addSa({ direction: "in", spi: peerConfig.spiIn, ...keys.in, esn: peerConfig.esn, replayWindow: peerConfig.replayWindow, seq: resumeIn });
    for (const k of [keys.out.key, keys.in.key]) k.fill(0);
    const address = new Uint8Array(ADDRESS_BYTES);
    encodeAddress(address, 0, { family: peerConfig.address.includes(":") ? 6 : 4, address: peerConfig.address, port: peerConfig.port });
    const selectors = new PrefixTable<true>();
    for (const prefix of peerConfig.selectors) selectors.add(prefix, true);
    const signature = peerSignature(peerConfig, outId, inId);
    const peer: Peer = { id: this.#peerById.length, signature, outId, inId, config: peerConfig, out, in: inbound, outReservation, inReservation, address, selectors, visited: 0 };
    this.#peerById.push(peer);
    this.log.info({ event: "peer", peer: peerConfig.name, endpoint: `${peerConfig.address}:${peerConfig.port}`, selectors: peerConfig.selectors.map((p) => p.text), resumeOut: String(resumeOut), resumeIn: String(resumeIn) }, "peer added");
    return peer;
  }

  /** Makes `peers` the configured set: routes and SPI lookup follow it. */
  #setPeers(peers: Peer[]): void {
    const routes = new PrefixTable<Peer>();
    const bySpi = new Map<number, Peer>();
    for (const peer of peers) {
      for (const prefix of peer.config.selectors) routes.add(prefix, peer);
      bySpi.set(peer.config.spiIn, peer);
    }
    this.#peers = peers;
    this.#routes = routes;
    this.#bySpi = bySpi;
  }

  /**
   * SIGHUP: applies a new config's peers. A peer whose settings and keys did
   * not change keeps its SAs (and their counters and windows); a changed or
   * new peer gets new SAs; a removed peer's SAs are removed (their keys wiped
   * once their last packets completed). TUN routes follow the selectors.
   * Changes to [local], [tun], [engine] and [state] need a restart.
   */
  reload(config: EndpointConfig): void {
    for (const section of ["local", "tun", "engine", "stateDir"] as const) {
      if (JSON.stringify(config[section]) !== JSON.stringify(this.config[section])) {
        this.log.warn({ event: "reload", setting: section }, `changes to ${section} need a restart; kept the running value`);
      }
    }
    const old = new Map(this.#peers.map((peer) => [peer.config.name, peer]));
    const next: Peer[] = [];
    const added: string[] = [];
    const kept: string[] = [];
    for (const peerConfig of config.peers) {
      const keys = peerKeys(peerConfig);
      const signature = peerSignature(peerConfig,
        SeqStore.id("out", peerConfig.spiOut, keys.out.key, keys.out.salt), SeqStore.id("in", peerConfig.spiIn, keys.in.key, keys.in.salt));
      for (const k of [keys.out.key, keys.in.key]) k.fill(0);
      const current = old.get(peerConfig.name);
      if (current && current.signature === signature) {
        next.push(current);
        old.delete(peerConfig.name);
        kept.push(peerConfig.name);
      }
    }
    // Remove what is gone or changed before adding, so SPIs can be reused;
    // a changed peer with the same keys carries its counters over.
    const counters = new Map<string, LiveCounters>();
    for (const peer of old.values()) {
      counters.set(peer.config.name, { out: this.engine.saSeq(peer.out), in: this.engine.saSeq(peer.in), outId: peer.outId, inId: peer.inId });
      this.#removePeer(peer);
    }
    for (const peerConfig of config.peers) {
      if (next.some((peer) => peer.config.name === peerConfig.name)) continue;
      next.push(this.#addPeer(peerConfig, counters.get(peerConfig.name)));
      added.push(peerConfig.name);
    }
    this.#setPeers(next);
    updateRoutes(this.tun.name, this.config, config);
    this.config = { ...this.config, peers: config.peers, keepaliveSeconds: config.keepaliveSeconds };
    this.#startKeepalives();
    this.log.info({ event: "reload", kept, added, removed: [...old.keys()] }, "peers reloaded");
  }

  #removePeer(peer: Peer): void {
    this.engine.removeSa(peer.out);
    this.engine.removeSa(peer.in);
    this.log.info({ event: "peer-removed", peer: peer.config.name }, "peer removed");
  }

  #run(): void {
    this.#tunPoll = this.io.poll(this.tun.fd, "r", this.#onTunReadable);
    this.#udpPoll = this.io.poll(this.udp.fd, "r", this.#onUdpReadable);
    this.engine.on("drain", () => this.#resume());
    this.engine.on("workerError", (error: unknown) => this.log.warn({ event: "worker-error", error: String(error) }, "worker failed; replaced"));
    this.#keepaliveSlot = this.engine.acquireSlot();
    this.engine.bytes[this.engine.packetOffset(this.#keepaliveSlot)] = 0xff;
    this.#startKeepalives();
  }

  /** RFC 3948 §2.2: a one-byte 0xFF datagram to each peer every interval, keeping NAT mappings open. */
  #startKeepalives(): void {
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
    if (this.config.keepaliveSeconds === 0) return;
    this.#keepaliveTimer = setInterval(() => this.#sendKeepalives(), this.config.keepaliveSeconds * 1000);
    this.#keepaliveTimer.unref();
  }

  // A bug on the data path must cost the packets at hand, not the gateway:
  // it is counted and logged (the first ten times, then every thousandth).
  readonly #onTunReadable = (): void => this.#guard(() => this.#readTun());
  readonly #onUdpReadable = (): void => this.#guard(() => this.#readUdpAny());
  #internalErrors = 0;
  /** Incremented per pass over a batch, so each peer is handled once per batch without a Set. */
  #visit = 0;

  #guard(read: () => void): void {
    try {
      read();
    } catch (error) {
      this.#drop("internal-error");
      if (++this.#internalErrors <= 10 || this.#internalErrors % 1000 === 0) {
        this.log.error({ event: "internal-error", count: this.#internalErrors, error: error instanceof Error ? error.stack : String(error) }, "data path error; packets dropped");
      }
    }
  }

  #drop(reason: string, count = 1): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + count;
  }

  /**
   * Stops reading until the engine has room again: on "drain", or when a
   * batch completes (the GRO path pauses before the engine runs out).
   */
  #pause(): void {
    this.#tunPoll?.stop();
    this.#udpPoll?.stop();
    this.#tunPoll = this.#udpPoll = undefined;
  }

  #resume(): void {
    if (this.#stopped) return;
    this.#tunPoll ??= this.io.poll(this.tun.fd, "r", this.#onTunReadable);
    this.#udpPoll ??= this.io.poll(this.udp.fd, "r", this.#onUdpReadable);
  }

  /**
   * A batch and up to batchSize slots (in #slotList, their packet places in
   * #offsets, their count in #slotCount) for one read; null when the engine
   * has neither to spare, and reading pauses until "drain".
   */
  #startRead(op: "seal" | "open"): Batch | null {
    const engine = this.engine;
    const batch = engine.beginBatch(op);
    if (batch === null) {
      this.#pause();
      return null;
    }
    let n = 0;
    while (n < this.#batchSize) {
      const slot = engine.acquireSlot();
      if (slot < 0) break;
      this.#slotList[n] = slot;
      this.#offsets[n] = op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot);
      n++;
    }
    if (n === 0) {
      batch.release();
      this.#pause();
      return null;
    }
    this.#slotCount = n;
    return batch;
  }

  // ---- outbound: TUN → seal → UDP ----

  #readTun(): void {
    const engine = this.engine;
    const bytes = engine.bytes;
    for (;;) {
      const batch = this.#startRead("seal");
      if (batch === null) return;
      const slots = this.#slotCount;
      const n = this.io.tunReadBatch(this.tun.fd, bytes, this.#offsets, engine.maxPacket, this.#lengths, slots);
      for (let i = n; i < slots; i++) engine.releaseSlot(this.#slotList[i]!);
      for (let i = 0; i < n; i++) {
        const slot = this.#slotList[i]!;
        const length = this.#lengths[i]!;
        const inner = length > 0 ? innerAddresses(bytes, this.#offsets[i]!, length) : null;
        const peer = inner === null ? undefined : this.#routes.lookup(inner.family, bytes, inner.destination);
        if (inner === null || peer === undefined) {
          this.#drop(inner === null ? "tun-malformed" : "no-route");
          engine.releaseSlot(slot);
          continue;
        }
        this.#slotPeer[slot] = peer.id;
        batch.add(slot, peer.out, length, inner.nextHeader);
      }
      if (batch.count === 0) batch.release();
      else {
        this.#reserveOut(batch);
        engine.submit(batch, (done) => this.#sendSealed(done));
      }
      if (n < slots) return; // the TUN is drained
    }
  }

  /** Makes sure the numbers this batch will use are below a durable bound (for the peers in it). */
  #reserveOut(batch: Batch): void {
    const mark = ++this.#visit;
    for (let i = 0; i < batch.count; i++) {
      const peer = this.#peerById[this.#slotPeer[batch.slot(i)]!]!;
      if (peer.visited === mark) continue;
      peer.visited = mark;
      peer.outReservation.ensure(this.engine.saSeq(peer.out) + BigInt(batch.count));
    }
  }

  #sendSealed(batch: Batch): void {
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      this.#offsets[k] = batch.offset(i);
      this.#lengths[k] = batch.length(i);
      this.#entryPeer[k] = this.#slotPeer[batch.slot(i)]!;
      k++;
    }
    if (k > 0) this.#sendEntries(k);
    batch.release();
    if (this.#tunPoll === undefined || this.#udpPoll === undefined) this.#resume();
  }

  /**
   * Sends entries 0…k-1 in order. Runs of equal-sized packets to one peer
   * (bulk TCP) go out as one UDP GSO send each: the kernel's UDP/IP path is
   * crossed once per run instead of once per packet. The rest go out with
   * sendmmsg. Entries are compacted in place into the sendmmsg list.
   */
  #sendEntries(k: number): void {
    let singles = 0;
    let i = 0;
    while (i < k) {
      const peerId = this.#entryPeer[i]!;
      const size = this.#lengths[i]!;
      let j = i + 1;
      let total = size;
      if (this.#gso) {
        while (j < k && j - i < GSO_MAX_SEGMENTS && this.#entryPeer[j] === peerId && total + this.#lengths[j]! <= GSO_MAX_BYTES) {
          const next = this.#lengths[j]!;
          if (next > size) break;
          total += next;
          j++;
          if (next < size) break; // a shorter packet can only end a run
        }
      }
      if (j - i >= 2) {
        if (singles > 0) singles = this.#flushSingles(singles);
        const peer = this.#peerById[peerId]!;
        let sent = 0;
        try {
          sent = this.io.udpSendGso(this.udp.fd, this.engine.bytes, this.#offsets.subarray(i, j), this.#lengths.subarray(i, j), j - i, peer.address, size);
        } catch (error) {
          this.log.warn({ event: "udp-gso-error", error: String(error) }, "GSO send failed; sending packet by packet from now on");
          this.#gso = false;
          continue; // retry this run without GSO
        }
        if (sent === 0) this.#drop("udp-send-full", j - i);
      } else {
        // Compact into the sendmmsg list (positions 0…singles-1; singles <= i).
        this.#offsets[singles] = this.#offsets[i]!;
        this.#lengths[singles] = size;
        this.#addresses.set(this.#peerById[peerId]!.address, singles * ADDRESS_BYTES);
        singles++;
      }
      i = j;
    }
    if (singles > 0) this.#flushSingles(singles);
  }

  #flushSingles(count: number): number {
    const sent = this.#send(count);
    if (sent < count) this.#drop("udp-send-full", count - sent);
    return 0;
  }

  #send(count: number): number {
    try {
      return this.io.udpSendBatch(this.udp.fd, this.engine.bytes, this.#offsets, this.#lengths, this.#addresses, count);
    } catch (error) {
      this.#drop("udp-send-error", count);
      this.log.warn({ event: "udp-send-error", error: String(error) }, "sending failed");
      return count;
    }
  }

  #sendKeepalives(): void {
    if (this.#stopped) return;
    let k = 0;
    for (const peer of this.#peers) {
      if (k === this.#batchSize) break;
      this.#offsets[k] = this.engine.packetOffset(this.#keepaliveSlot);
      this.#lengths[k] = 1;
      this.#addresses.set(peer.address, k * ADDRESS_BYTES);
      k++;
    }
    this.counters.keepalivesOut += this.#send(k);
  }

  // ---- inbound: UDP → open → TUN ----

  #readUdpAny(): void {
    if (this.udp.groEnabled) this.#readUdpGro();
    else this.#readUdp();
  }

  /**
   * With UDP GRO the kernel hands over up to 64 KB of datagrams of one size
   * in one receive (a peer's GSO send arrives that way), sparing it a pass
   * through its UDP stack per datagram. They land in the I/O scratch and each
   * is copied into a slot of its own (a memmove inside the shared memory).
   */
  #readUdpGro(): void {
    const engine = this.engine;
    const bytes = engine.bytes;
    const base = engine.layout.ioScratchAt;
    const gro = this.#groState;
    for (;;) {
      // Room for a whole receive first (at most GRO_PACKETS datagrams): what cannot be placed is lost.
      if (engine.freeSlots < GRO_PACKETS || engine.freeBatches < Math.ceil(GRO_PACKETS / engine.layout.batchSize)) return this.#pause();
      let n: number;
      try {
        n = this.io.udpRecvBatch(this.udp.fd, bytes, gro.offsets, GRO_AREA, gro.lengths, null, GRO_AREAS, gro.segments);
      } catch (error) {
        this.log.warn({ event: "udp-receive-error", error: String(error) }, "receiving failed");
        n = 0;
      }
      let batch: Batch | null = null;
      for (let i = 0; i < n; i++) {
        const total = gro.lengths[i]!;
        if (total < 0) {
          this.#drop("udp-truncated");
          continue;
        }
        const segment = gro.segments[i]! > 0 ? gro.segments[i]! : Math.max(total, 1);
        for (let at = 0; at < total || (total === 0 && at === 0); at += segment) {
          const length = Math.min(segment, total - at);
          const from = base + i * GRO_AREA + at;
          if (length > engine.maxEspPacket) {
            // Larger than a slot holds (the plain path has recvmmsg cut it): dropped alike.
            this.#drop("udp-truncated");
            continue;
          }
          const peer = this.#classify(bytes, from, length);
          if (peer === undefined) continue;
          if (batch === null && (batch = engine.beginBatch("open")) === null) {
            this.#drop("backpressure");
            continue;
          }
          const slot = engine.acquireSlot();
          if (slot < 0) {
            this.#drop("backpressure");
            continue;
          }
          bytes.copyWithin(engine.espOffset(slot), from, from + length);
          this.#slotPeer[slot] = peer.id;
          batch.add(slot, peer.in, length);
          if (batch.full) {
            engine.submit(batch, (done) => this.#writeOpened(done));
            batch = null;
          }
          if (total === 0) break;
        }
      }
      if (batch !== null) {
        if (batch.count === 0) batch.release();
        else engine.submit(batch, (done) => this.#writeOpened(done));
      }
      if (n < GRO_AREAS) return; // the socket is drained
    }
  }

  #readUdp(): void {
    const engine = this.engine;
    const bytes = engine.bytes;
    const capacity = engine.layout.slotSize - HEADROOM + ESP_HEADER;
    for (;;) {
      const batch = this.#startRead("open");
      if (batch === null) return;
      const slots = this.#slotCount;
      let n: number;
      try {
        n = this.io.udpRecvBatch(this.udp.fd, bytes, this.#offsets, capacity, this.#lengths, this.#addresses, slots);
      } catch (error) {
        this.log.warn({ event: "udp-receive-error", error: String(error) }, "receiving failed");
        n = 0;
      }
      for (let i = n; i < slots; i++) engine.releaseSlot(this.#slotList[i]!);
      for (let i = 0; i < n; i++) {
        const slot = this.#slotList[i]!;
        const peer = this.#classify(bytes, this.#offsets[i]!, this.#lengths[i]!);
        if (peer === undefined) {
          engine.releaseSlot(slot);
          continue;
        }
        this.#slotPeer[slot] = peer.id;
        batch.add(slot, peer.in, this.#lengths[i]!);
      }
      if (batch.count === 0) batch.release();
      else engine.submit(batch, (done) => this.#writeOpened(done));
      if (n < slots) return; // the socket is drained
    }
  }

  /** RFC 3948 §2: keepalive, non-ESP (IKE) or ESP; the peer an ESP packet's SPI names. */
  #classify(bytes: Uint8Array, at: number, length: number): Peer | undefined {
    if (length < 0) return void this.#drop("udp-truncated");
    if (length === 1 && bytes[at] === 0xff) {
      this.counters.keepalivesIn++;
      return undefined;
    }
    if (length >= 4 && bytes[at] === 0 && bytes[at + 1] === 0 && bytes[at + 2] === 0 && bytes[at + 3] === 0) {
      // A non-ESP marker: IKE's. There is no IKE yet; the control-plane hook drops it.
      return void this.#drop("non-esp");
    }
    if (length < 8) return void this.#drop("udp-malformed");
    const spi = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
    const peer = this.#bySpi.get(spi);
    if (peer === undefined) return void this.#drop("unknown-spi");
    return peer;
  }

  #writeOpened(batch: Batch): void {
    const bytes = this.engine.bytes;
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      const peer = this.#peerById[this.#slotPeer[batch.slot(i)]!]!;
      const at = batch.offset(i);
      const length = batch.length(i);
      const inner = innerAddresses(bytes, at, length);
      // The inner source must be one the peer may send from (its selectors).
      if (inner === null || (inner.nextHeader !== batch.nextHeader(i)) || peer.selectors.lookup(inner.family, bytes, inner.source) === undefined) {
        this.#drop("policy");
        continue;
      }
      this.#offsets[k] = at;
      this.#lengths[k] = length;
      k++;
    }
    // Durable before delivery: a crash now cannot make these acceptable again.
    if (k > 0) {
      const mark = ++this.#visit;
      for (let i = 0; i < batch.count; i++) {
        const peer = this.#peerById[this.#slotPeer[batch.slot(i)]!]!;
        if (peer.visited === mark || batch.statusCode(i) !== 0) continue;
        peer.visited = mark;
        peer.inReservation.ensure(this.engine.saSeq(peer.in));
      }
    }
    if (k > 0) {
      let written = 0;
      try {
        written = this.io.tunWriteBatch(this.tun.fd, bytes, this.#offsets, this.#lengths, k);
      } catch (error) {
        this.log.warn({ event: "tun-write-error", error: String(error) }, "writing to the TUN failed");
      }
      if (written < k) this.#drop("tun-write-full", k - written);
    }
    batch.release();
    if (this.#tunPoll === undefined || this.#udpPoll === undefined) this.#resume();
  }

  /** The peers' current outer addresses (they change when a peer roams). */
  peerAddresses(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const peer of this.#peers) {
      const address = decodeAddress(peer.address, 0);
      out[peer.config.name] = address ? formatAddress(address) : "?";
    }
    return out;
  }

  /** Stops forwarding, waits for batches in flight, closes the engine (wiping keys), the socket and the TUN. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#pause();
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    // A clean stop records the exact counters, so a restart resumes where it
    // stopped instead of skipping a reserved block (which would refuse the
    // peer's next IN_BLOCK packets).
    await this.engine.idle();
    for (const peer of this.#peers) {
      this.store.save(peer.outId, this.engine.saSeq(peer.out));
      this.store.save(peer.inId, this.engine.saSeq(peer.in));
    }
    await this.engine.close();
    this.io.close(this.udp.fd);
    this.io.close(this.tun.fd);
    this.log.info({ event: "down", counters: this.counters }, "sluice endpoint down");
  }
}

/** The SA keys of a peer, from its key files or derived from its secret. */
function peerKeys(peer: PeerConfig): { out: SaKeys; in: SaKeys } {
  if (peer.secret) {
    const secret = loadSecret(peer.secret);
    const keys = { out: deriveSaKeys(secret, peer.spiOut, peer.spiIn), in: deriveSaKeys(secret, peer.spiIn, peer.spiOut) };
    secret.fill(0);
    return keys;
  }
  return { out: loadKeymat(peer.out!.keymat), in: loadKeymat(peer.in!.keymat) };
}

/** What must match for a reload to keep a peer's SAs: every setting and the keys' fingerprints. */
function peerSignature(peer: PeerConfig, outId: string, inId: string): string {
  return JSON.stringify([peer.address, peer.port, peer.selectors.map((p) => p.text), peer.esn, peer.replayWindow, outId, inId]);
}

/** Routes added for new selectors and deleted for dropped ones. */
function updateRoutes(name: string, before: EndpointConfig, after: EndpointConfig): void {
  const prefixes = (config: EndpointConfig): Map<string, 4 | 6> => new Map(config.peers.flatMap((p) => p.selectors.map((s) => [s.text, s.family] as const)));
  const old = prefixes(before);
  const now = prefixes(after);
  for (const [text, family] of now) if (!old.has(text)) ip(`-${family}`, "route", "replace", text, "dev", name);
  for (const [text, family] of old) if (!now.has(text)) {
    try {
      ip(`-${family}`, "route", "del", text, "dev", name);
    } catch {
      // Already gone: nothing to do.
    }
  }
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Brings the TUN up with its addresses and MTU, and routes the peers' selectors into it. */
function configureTun(name: string, config: EndpointConfig): void {
  ip("link", "set", "dev", name, "mtu", String(config.tun.mtu), "up");
  for (const prefix of config.tun.addresses) ip(prefix.family === 6 ? "-6" : "-4", "addr", "add", prefix.text, "dev", name);
  for (const peer of config.peers) {
    for (const prefix of peer.selectors) ip(prefix.family === 6 ? "-6" : "-4", "route", "replace", prefix.text, "dev", name);
  }
}
