/**
 * The forwarding core: what happens to a packet between the endpoint's two
 * ports, the same on the native and the portable path (ports.ts says why).
 *
 *   inner port → addOutbound (longest prefix, no route = drop) → submitSeal
 *     (sequence reservation) → workers → #sendSealed → outer port
 *   outer port → classify (keepalive / non-ESP / SPI) → addInbound → submitOpen
 *     → workers → #writeOpened (inner source in the peer's selectors,
 *     replay reservation) → inner port
 *
 * Ports call it per packet, so nothing here allocates per packet: peers are
 * found by index (slotPeer), completions reuse one set of entry arrays, the
 * completion callbacks are bound once. Backpressure: a port that finds no
 * slot or batch calls pause(); the core resumes both ports on the engine's
 * "drain" or when one of its batches completes.
 */
import type { Logger } from "pino";
import type { Engine } from "../engine/engine.js";
import type { Batch } from "../engine/batch.js";
import { innerAddresses } from "./innerPacket.js";
import { PrefixTable } from "./prefix.js";
import type { Peer } from "./peer.js";
import type { TunOffloadStats } from "../io/native.js";
import type { Entries, InnerPort, OuterPort } from "./ports.js";

/** Drops the endpoint counts itself (the engine counts its own). */
export interface EndpointCounters {
  drops: Record<string, number>;
  keepalivesIn: number;
  keepalivesOut: number;
  /** What the TUN offloads did (null: no TUN, or no offloads). */
  tunOffload: TunOffloadStats | null;
  /** Datagrams the kernel dropped at the UDP socket, its receive buffer full (null: unknown on this path). */
  udpReceiveOverflows: number | null;
}

export class Forwarder {
  readonly counters: EndpointCounters = { drops: {}, keepalivesIn: 0, keepalivesOut: 0, tunOffload: null, udpReceiveOverflows: null };
  /** The registered peers, by id: packets in flight name their peer by id (slotPeer, Entries). */
  readonly peerById: (Peer | undefined)[] = [];
  /** Ids of unregistered peers, given to the next new ones. */
  readonly #freeIds: number[] = [];
  /** The configured peers. */
  peers: readonly Peer[] = [];
  #routes = new PrefixTable<Peer>();
  #bySpi = new Map<number, Peer>();
  /** The peer (id) of the packet in each slot. */
  readonly #slotPeer: Int32Array;
  /** What completions hand to the ports; one set, reused (completions run one at a time). */
  readonly #entries: Entries;
  #inner: InnerPort | undefined;
  #outer: OuterPort | undefined;
  #keepaliveAt = -1;
  #paused = false;
  #stopped = false;
  /** hold() calls not yet released. */
  #held = 0;
  /** Faults seen so far, by reason (for the bounded logging of fault()). */
  readonly #faults = new Map<string, number>();
  /** Incremented per pass over a batch, so each peer is handled once per batch without a Set. */
  #visit = 0;
  readonly #onSealed = (batch: Batch): void => this.#sendSealed(batch);
  readonly #onOpened = (batch: Batch): void => this.#writeOpened(batch);

  constructor(readonly engine: Engine, readonly log: Logger) {
    this.#slotPeer = new Int32Array(engine.layout.slotCount);
    const n = engine.layout.batchSize;
    this.#entries = { offsets: new Int32Array(n), lengths: new Int32Array(n), peers: new Int32Array(n) };
  }

  /** Connects the ports and starts reading from both. */
  start(inner: InnerPort, outer: OuterPort): void {
    this.#inner = inner;
    this.#outer = outer;
    this.engine.on("drain", () => this.#resume());
    this.engine.on("workerError", (error: unknown) => this.log.warn({ event: "worker-error", error: String(error) }, "worker failed; replaced"));
    const slot = this.engine.acquireSlot();
    this.#keepaliveAt = this.engine.packetOffset(slot);
    this.engine.bytes[this.#keepaliveAt] = 0xff;
    inner.start();
    outer.start();
  }

  // ---- peers ----

  /** Gives a new peer its id (its index in peerById), reusing a removed peer's. */
  register(peer: Peer): Peer {
    const id = this.#freeIds.pop();
    if (id === undefined) {
      peer.id = this.peerById.push(peer) - 1;
    } else {
      peer.id = id;
      this.peerById[id] = peer;
    }
    return peer;
  }

  /**
   * Frees a removed peer's id for a later one. Only while no packet in
   * flight can name it: the endpoint removes peers with both ports held and
   * the engine idle (Endpoint.reload), so many reloads do not grow peerById.
   */
  unregister(peer: Peer): void {
    if (this.peerById[peer.id] !== peer) return;
    this.peerById[peer.id] = undefined;
    this.#freeIds.push(peer.id);
  }

  /** Makes `peers` the configured set: routes and SPI lookup follow it. */
  setPeers(peers: readonly Peer[]): void {
    const routes = new PrefixTable<Peer>();
    const bySpi = new Map<number, Peer>();
    for (const peer of peers) {
      for (const prefix of peer.config.selectors) routes.add(prefix, peer);
      bySpi.set(peer.config.spiIn, peer);
    }
    this.peers = peers;
    this.#routes = routes;
    this.#bySpi = bySpi;
  }

  // ---- bookkeeping ports share ----

  drop(reason: string, count = 1): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + count;
  }

  /**
   * A bug on the data path must cost the packets at hand, not the gateway:
   * ports catch what their read loops throw and report it here, where it is
   * counted and logged (the first ten times, then every thousandth).
   */
  internalError(error: unknown): void {
    this.fault("internal-error", error, 1, "error", "data path error; packets dropped");
  }

  /** A system call on the data path failed: counted under `reason` with the `packets` it cost, and logged (see fault). */
  ioError(reason: string, error: unknown, packets: number): void {
    this.fault(reason, error, packets, "warn", `I/O failed: ${reason}`);
  }

  /**
   * A fault on the data path: the `packets` it cost counted as drops under
   * `reason`, and logged the first ten times per reason, then every
   * thousandth, so a lasting fault cannot flood the log.
   */
  fault(reason: string, error: unknown, packets: number, level: "warn" | "error", message: string): void {
    this.drop(reason, packets);
    const seen = (this.#faults.get(reason) ?? 0) + 1;
    this.#faults.set(reason, seen);
    if (seen <= 10 || seen % 1000 === 0) {
      this.log[level]({ event: reason, count: seen, error: error instanceof Error ? error.stack : String(error) }, message);
    }
  }

  /**
   * Stops reading until the engine has room again: on "drain", or when a
   * batch completes (the GRO path pauses before the engine runs out).
   */
  pause(): void {
    this.#paused = true;
    this.#inner?.pause();
    this.#outer?.pause();
  }

  /**
   * Whether the inner port may take another batch region: it leaves the
   * outer port what one of its reads needs, or a TUN with TCP super-packets
   * to read would take every region a completion frees (its reads come
   * first, synchronously) and the UDP side, the peer's ACKs included, would
   * wait until the TUN ran dry.
   */
  innerMayRead(): boolean {
    const reserve = Math.min(this.#outer?.batchesPerRead ?? 0, this.engine.layout.maxInFlight - 1);
    return this.engine.freeBatches > reserve;
  }

  /** Stops the inner port only (it left the rest to the outer one); both resume at the next completion. */
  pauseInner(): void {
    this.#paused = true;
    this.#inner?.pause();
  }

  /**
   * Stops both ports until release(), whatever completes meanwhile. What
   * they gathered is submitted by their pause(), so once engine.idle()
   * resolves no packet taken before names a peer or an SA.
   */
  hold(): void {
    this.#held++;
    this.pause();
  }

  release(): void {
    if (--this.#held === 0) this.#resume();
  }

  #resume(): void {
    if (this.#stopped || this.#held > 0) return;
    this.#paused = false;
    // The outer port first: the inner one may read at once (a TUN's leftover segments).
    this.#outer?.resume();
    this.#inner?.resume();
  }

  /** Stops both ports for good; batches in flight still complete. */
  stop(): void {
    this.#stopped = true;
    this.pause();
    this.#inner?.stop();
    this.#outer?.stop();
  }

  // ---- outbound: inner port → seal → outer port ----

  /**
   * Routes the inner packet at bytes[at, at + length) in `slot` to the peer
   * whose selector is the longest prefix of its destination, and adds it to
   * the seal batch. False when it was dropped (counted: `malformed` when it is
   * no IP packet, "no-route"); the caller then releases the slot.
   */
  addOutbound(batch: Batch, slot: number, at: number, length: number, malformed: string): boolean {
    const bytes = this.engine.bytes;
    const inner = innerAddresses(bytes, at, length);
    const peer = inner === null ? undefined : this.#routes.lookup(inner.family, bytes, inner.destination);
    if (inner === null || peer === undefined) {
      this.drop(inner === null ? malformed : "no-route");
      return false;
    }
    this.#slotPeer[slot] = peer.id;
    batch.add(slot, peer.out, length, inner.nextHeader);
    return true;
  }

  /** Reserves the batch's sequence numbers on disk, then hands it to the workers. */
  submitSeal(batch: Batch): void {
    this.#reserveOut(batch);
    this.engine.submit(batch, this.#onSealed);
  }

  /** Makes sure the numbers this batch will use are below a durable bound (for the peers in it). */
  #reserveOut(batch: Batch): void {
    const mark = ++this.#visit;
    for (let i = 0; i < batch.count; i++) {
      const peer = this.peerById[this.#slotPeer[batch.slot(i)]!]!;
      if (peer.visited === mark) continue;
      peer.visited = mark;
      peer.outReservation.ensure(this.engine.saSeq(peer.out) + BigInt(batch.count));
    }
  }

  #sendSealed(batch: Batch): void {
    const entries = this.#entries;
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      entries.offsets[k] = batch.offset(i);
      entries.lengths[k] = batch.length(i);
      entries.peers[k] = this.#slotPeer[batch.slot(i)]!;
      k++;
    }
    if (k > 0) this.#outer!.send(entries, k);
    batch.release();
    if (this.#paused) this.#resume();
  }

  /** RFC 3948 §2.2: a one-byte 0xFF datagram to each peer, keeping NAT mappings open. */
  sendKeepalives(): void {
    if (this.#stopped || this.#outer === undefined) return;
    const entries = this.#entries;
    // In sends of at most a batch's worth of entries: every peer gets one, however many there are.
    let k = 0;
    for (const peer of this.peers) {
      entries.offsets[k] = this.#keepaliveAt;
      entries.lengths[k] = 1;
      entries.peers[k] = peer.id;
      if (++k === entries.offsets.length) {
        this.counters.keepalivesOut += this.#outer.sendKeepalives(entries, k);
        k = 0;
      }
    }
    if (k > 0) this.counters.keepalivesOut += this.#outer.sendKeepalives(entries, k);
  }

  // ---- inbound: outer port → open → inner port ----

  /** RFC 3948 §2: keepalive, non-ESP (IKE) or ESP; the peer an ESP packet's SPI names. */
  classify(bytes: Uint8Array, at: number, length: number): Peer | undefined {
    if (length < 0) return void this.drop("udp-truncated");
    if (length === 1 && bytes[at] === 0xff) {
      this.counters.keepalivesIn++;
      return undefined;
    }
    if (length >= 4 && bytes[at] === 0 && bytes[at + 1] === 0 && bytes[at + 2] === 0 && bytes[at + 3] === 0) {
      // A non-ESP marker: IKE's. There is no IKE yet; the control-plane hook drops it.
      return void this.drop("non-esp");
    }
    if (length < 8) return void this.drop("udp-malformed");
    const spi = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
    const peer = this.#bySpi.get(spi);
    if (peer === undefined) return void this.drop("unknown-spi");
    return peer;
  }

  /** Adds the ESP packet in `slot` (classified to `peer`) to the open batch. */
  addInbound(batch: Batch, slot: number, peer: Peer, length: number): void {
    this.#slotPeer[slot] = peer.id;
    batch.add(slot, peer.in, length);
  }

  submitOpen(batch: Batch): void {
    this.engine.submit(batch, this.#onOpened);
  }

  #writeOpened(batch: Batch): void {
    const bytes = this.engine.bytes;
    const entries = this.#entries;
    const mark = ++this.#visit;
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      const peerId = this.#slotPeer[batch.slot(i)]!;
      const peer = this.peerById[peerId]!;
      if (peer.visited !== mark) {
        // Durable before delivery (the write below): a crash now cannot make
        // the numbers this batch accepted acceptable again.
        peer.visited = mark;
        peer.inReservation.ensure(this.engine.saSeq(peer.in));
      }
      const at = batch.offset(i);
      const length = batch.length(i);
      const inner = innerAddresses(bytes, at, length);
      // The inner source must be one the peer may send from (its selectors).
      if (inner === null || (inner.nextHeader !== batch.nextHeader(i)) || peer.selectors.lookup(inner.family, bytes, inner.source) === undefined) {
        this.drop("policy");
        continue;
      }
      entries.offsets[k] = at;
      entries.lengths[k] = length;
      entries.peers[k] = peerId;
      k++;
    }
    if (k > 0) this.#inner!.write(entries, k);
    batch.release();
    if (this.#paused) this.#resume();
  }
}
