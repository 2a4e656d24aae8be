/**
 * The forwarding core: what happens to a packet between the endpoint's two
 * ports, the same on the native and the portable path (ports.ts says why).
 *
 *   inner port → addOutbound (longest prefix over the children; a trap: drop
 *     and acquire; no route: drop) → submitSeal (sequence reservation) →
 *     workers → #sendSealed → outer port
 *   outer port → classify (keepalive / IKE → onControl / SPI → child) →
 *     addInbound (the source address kept) → submitOpen → workers →
 *     #writeOpened (inner source in the child's selectors, replay
 *     reservation, NAT rebinding, liveness) → inner port
 *
 * Ports call it per packet, so nothing here allocates per packet: a packet's
 * child is kept per slot (slotChild), its source address per slot only when
 * it differs from its peer's, completions reuse one set of entry arrays, the
 * completion callbacks are bound once. Backpressure: a port that finds no
 * slot or batch calls pause(); the core resumes both ports on the engine's
 * "drain" or when one of its batches completes.
 *
 * The peers and their SAs are in the table (peerTable.ts), which changes at
 * run time without a pause; the control plane's hooks (ControlHooks) are
 * called from a microtask after the read or completion that caused them,
 * never from inside a port's read loop.
 */
import type { Logger } from "pino";
import type { Engine } from "../engine/engine.js";
import type { Batch } from "../engine/batch.js";
import { ADDRESS_BYTES, copyAddress, decodeAddress, sameAddress, type SocketAddress } from "../io/address.js";
import { innerAddresses } from "./innerPacket.js";
import { Child, type Peer } from "./peer.js";
import { PeerTable } from "./peerTable.js";
import { datagramKind, KIND_ESP, KIND_IKE, KIND_KEEPALIVE, KIND_MALFORMED, NON_ESP_MARKER } from "./demux.js";
import type { TunOffloadStats } from "../io/native.js";
import type { Entries, InnerPort, OuterPort } from "./ports.js";

/**
 * What the control plane (the IKE shell) hears from the data path. Each is
 * called from a microtask after the event, may call any table or endpoint
 * method, and may throw (counted as "hook-error" and logged).
 */
export interface ControlHooks {
  /**
   * An IKE datagram arrived (non-ESP marker, RFC 3948 §2.2): `datagram` is a
   * copy without the marker, the caller's to keep; `from` its source.
   * Without this hook such datagrams are counted and dropped as "non-esp".
   */
  onControl?: (datagram: Uint8Array, from: SocketAddress) => void;
  /**
   * A packet was routed to `peer` by a trap selector and it has no child for
   * it: it was dropped ("no-sa"). Called at most once a second per peer;
   * `packet` is a copy of the inner packet that triggered it (RFC 7296 §2.9:
   * its addresses make the first traffic selector pair).
   */
  onAcquire?: (peer: Peer, packet: Uint8Array) => void;
  /** An authenticated ESP packet of `peer` (one with `rebind` on) came from a new address, which is now the peer's (NAT rebinding). */
  onPeerAddress?: (peer: Peer, address: SocketAddress) => void;
}

/** Called once per completed batch (never per packet): its size and the time from submit to completion. */
export type BatchObserver = (op: "seal" | "open", packets: number, seconds: number) => void;

/** Drops the endpoint counts itself (the engine counts its own). */
export interface EndpointCounters {
  drops: Record<string, number>;
  keepalivesIn: number;
  keepalivesOut: number;
  /** What the TUN offloads did (null: no TUN, or no offloads). */
  tunOffload: TunOffloadStats | null;
  /** Datagrams the kernel dropped at the UDP socket, its receive buffer full (null: unknown on this path). */
  udpReceiveOverflows: number | null;
  /** IKE datagrams handed to onControl, and sent with sendControl. */
  controlIn: number;
  controlOut: number;
}

export class Forwarder {
  readonly counters: EndpointCounters = { drops: {}, keepalivesIn: 0, keepalivesOut: 0, tunOffload: null, udpReceiveOverflows: null, controlIn: 0, controlOut: 0 };
  /** The peers and their child SAs. */
  readonly table: PeerTable;
  /** The control plane's hooks (set them any time). */
  hooks: ControlHooks = {};
  /** Called per completed batch when set (the metrics' histograms). */
  observeBatch: BatchObserver | undefined;
  /** The child of the packet in each slot (an object, not an id a later child could reuse). */
  readonly #slotChild: (Child | undefined)[];
  /** Per slot: 1 when the datagram came from another address than its peer's, kept in #slotSource. */
  readonly #slotMoved: Uint8Array;
  readonly #slotSource: Uint8Array;
  /** When each batch region's batch was submitted (performance.now() ms), for observeBatch. */
  readonly #submittedAt: Float64Array;
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
    const slots = engine.layout.slotCount;
    this.#slotChild = new Array<Child | undefined>(slots).fill(undefined);
    this.#slotMoved = new Uint8Array(slots);
    this.#slotSource = new Uint8Array(slots * ADDRESS_BYTES);
    this.#submittedAt = new Float64Array(engine.layout.maxInFlight);
    const n = engine.layout.batchSize;
    this.#entries = { offsets: new Int32Array(n), lengths: new Int32Array(n), peers: new Int32Array(n) };
    this.table = new PeerTable(engine, () => this.#routesChanged());
  }

  /** Peers by id, as the entries handed to the outer port name them. */
  get peerById(): readonly (Peer | undefined)[] {
    return this.table.peerById;
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
    this.#routesChanged();
    inner.start();
    outer.start();
  }

  /** The inner port routes what the table routes (a TUN device: its kernel routes, updated in the background). */
  #routesChanged(): void {
    this.#inner?.setRoutes(this.table.routedPrefixes());
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
    const target = inner === null ? undefined : this.table.route(inner.family, bytes, inner.destination);
    if (inner === null || target === undefined) {
      this.drop(inner === null ? malformed : "no-route");
      return false;
    }
    if (!(target instanceof Child)) {
      this.#trapped(target, bytes, at, length);
      return false;
    }
    if (!target.peer.hasAddress) {
      // Nowhere to send it (a responder's peer before its first packet): no sequence number spent on it.
      this.drop("no-peer-address");
      return false;
    }
    this.#slotChild[slot] = target;
    batch.add(slot, target.out, length, inner.nextHeader);
    return true;
  }

  /** A trap caught a packet (see ControlHooks.onAcquire): dropped, never sent in clear. */
  #trapped(peer: Peer, bytes: Uint8Array, at: number, length: number): void {
    this.drop("no-sa");
    const onAcquire = this.hooks.onAcquire;
    if (onAcquire === undefined) return;
    const now = performance.now();
    if (now - peer.lastAcquire < 1000) return;
    peer.lastAcquire = now;
    const packet = bytes.slice(at, at + length);
    this.#callHook(() => onAcquire(peer, packet));
  }

  /** Runs a control-plane hook after the current read or completion; its throw is counted and logged. */
  #callHook(call: () => void): void {
    queueMicrotask(() => {
      try {
        call();
      } catch (error) {
        this.fault("hook-error", error, 1, "error", "a control-plane hook threw");
      }
    });
  }

  /** Reserves the batch's sequence numbers on disk, then hands it to the workers. */
  submitSeal(batch: Batch): void {
    this.#reserveOut(batch);
    this.#submittedAt[batch.region] = performance.now();
    this.engine.submit(batch, this.#onSealed);
  }

  /** Makes sure the numbers this batch will use are below a durable bound (for the peers in it). */
  #reserveOut(batch: Batch): void {
    const mark = ++this.#visit;
    for (let i = 0; i < batch.count; i++) {
      const child = this.#slotChild[batch.slot(i)]!;
      if (child.visited === mark) continue;
      child.visited = mark;
      child.durable?.out.ensure(this.engine.saSeq(child.out) + BigInt(batch.count));
    }
  }

  #sendSealed(batch: Batch): void {
    this.#observe(batch);
    const entries = this.#entries;
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      const slot = batch.slot(i);
      const child = this.#slotChild[slot]!;
      this.#slotChild[slot] = undefined;
      if (batch.statusCode(i) !== 0) continue;
      // A retired child's last packets still go (its peer keeps the inbound SA a while); a removed peer's do not.
      if (child.peer.removed) {
        this.drop("peer-removed");
        continue;
      }
      entries.offsets[k] = batch.offset(i);
      entries.lengths[k] = batch.length(i);
      entries.peers[k] = child.peer.id;
      k++;
    }
    if (k > 0) this.#outer!.send(entries, k);
    batch.release();
    if (this.#paused) this.#resume();
  }

  #observe(batch: Batch): void {
    if (this.observeBatch !== undefined) this.observeBatch(batch.op, batch.count, (performance.now() - this.#submittedAt[batch.region]!) / 1000);
  }

  /**
   * Sends one control datagram (IKE) to any address, with the non-ESP marker
   * first when `marker` (IKE on the NAT-T port, RFC 3948 §2.2). Never blocks:
   * false when the socket cannot take it now (counted "control-send-full") or
   * the send failed ("control-send-error"), or after stop().
   */
  sendControl(datagram: Uint8Array, to: SocketAddress, marker: boolean): boolean {
    if (this.#stopped || this.#outer === undefined) return false;
    let bytes = datagram;
    if (marker) {
      bytes = new Uint8Array(NON_ESP_MARKER + datagram.length);
      bytes.set(datagram, NON_ESP_MARKER);
    }
    const sent = this.#outer.sendControl(bytes, to);
    if (sent) this.counters.controlOut++;
    return sent;
  }

  /** RFC 3948 §2.2: a one-byte 0xFF datagram to each peer, keeping NAT mappings open. */
  sendKeepalives(): void {
    if (this.#stopped || this.#outer === undefined) return;
    const entries = this.#entries;
    // In sends of at most a batch's worth of entries: every peer gets one, however many there are.
    let k = 0;
    for (const peer of this.table.peers) {
      if (!peer.keepalive || !peer.hasAddress) continue;
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

  /**
   * RFC 3948 §2: a keepalive (counted), IKE (copied out with its source and
   * handed to onControl, or counted as "non-esp" without one), a malformed
   * datagram (counted) or ESP: then the child its SPI names (RFC 4303 §2.1),
   * or undefined for an unknown SPI (counted). For anything but a child the
   * caller releases the slot at once. `sources` entry `index` is the
   * datagram's source address.
   */
  classify(bytes: Uint8Array, at: number, length: number, sources: Uint8Array, index: number): Child | undefined {
    const kind = datagramKind(bytes, at, length);
    if (kind === KIND_ESP) {
      const spi = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
      const child = this.table.childBySpi(spi);
      if (child === undefined) this.drop("unknown-spi");
      return child;
    }
    if (kind === KIND_KEEPALIVE) this.counters.keepalivesIn++;
    else if (kind === KIND_IKE) this.#control(bytes, at + NON_ESP_MARKER, length - NON_ESP_MARKER, sources, index);
    else this.drop(kind === KIND_MALFORMED ? "udp-malformed" : "udp-truncated");
    return undefined;
  }

  #control(bytes: Uint8Array, at: number, length: number, sources: Uint8Array, index: number): void {
    const onControl = this.hooks.onControl;
    const from = onControl === undefined ? null : decodeAddress(sources, index);
    if (onControl === undefined || from === null) {
      this.drop("non-esp");
      return;
    }
    this.counters.controlIn++;
    const datagram = bytes.slice(at, at + length);
    this.#callHook(() => onControl(datagram, from));
  }

  /**
   * Adds the ESP packet in `slot` (classified to `child`) to the open batch.
   * Its source (`sources` entry `index`) is kept when it differs from the
   * peer's address, for NAT rebinding once the packet is authenticated.
   */
  addInbound(batch: Batch, slot: number, child: Child, length: number, sources: Uint8Array, index: number): void {
    this.#slotChild[slot] = child;
    if (!child.peer.rebind || sameAddress(sources, index, child.peer.address, 0)) this.#slotMoved[slot] = 0;
    else {
      this.#slotMoved[slot] = 1;
      copyAddress(this.#slotSource, slot, sources, index);
    }
    batch.add(slot, child.in, length);
  }

  submitOpen(batch: Batch): void {
    this.#submittedAt[batch.region] = performance.now();
    this.engine.submit(batch, this.#onOpened);
  }

  #writeOpened(batch: Batch): void {
    this.#observe(batch);
    const bytes = this.engine.bytes;
    const entries = this.#entries;
    const mark = ++this.#visit;
    let now = -1;
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      const slot = batch.slot(i);
      const child = this.#slotChild[slot]!;
      this.#slotChild[slot] = undefined;
      if (batch.statusCode(i) !== 0) continue;
      // Authenticated and not a replay from here on (RFC 4303 §3.4.3, §3.4.4).
      const peer = child.peer;
      if (child.removed) {
        this.drop("child-removed");
        continue;
      }
      if (child.visited !== mark) {
        // Durable before delivery (the write below): a crash now cannot make
        // the numbers this batch accepted acceptable again.
        child.visited = mark;
        child.durable?.in.ensure(this.engine.saSeq(child.in));
      }
      if (peer.visited !== mark) {
        peer.visited = mark;
        if (now < 0) now = performance.now();
        peer.lastInbound = now;
      }
      if (this.#slotMoved[slot] === 1 && peer.rebind && !sameAddress(this.#slotSource, slot, peer.address, 0)) this.#rebind(peer, slot);
      const at = batch.offset(i);
      const length = batch.length(i);
      const inner = innerAddresses(bytes, at, length);
      // The inner source must be one the child may carry (RFC 4301 §5.2.1), and the destination one of ours when it names any.
      if (inner === null || inner.nextHeader !== batch.nextHeader(i) || child.sources.lookup(inner.family, bytes, inner.source) === undefined
        || (child.destinations.size > 0 && child.destinations.lookup(inner.family, bytes, inner.destination) === undefined)) {
        this.drop("policy");
        continue;
      }
      entries.offsets[k] = at;
      entries.lengths[k] = length;
      entries.peers[k] = peer.id;
      k++;
    }
    if (k > 0) this.#inner!.write(entries, k);
    batch.release();
    if (this.#paused) this.#resume();
  }

  /**
   * NAT rebinding: an authenticated packet of `peer` came from another
   * address, which becomes the peer's (RFC 3948 §3.5 leaves it to the
   * implementation; like RFC 7296 §2.23 for IKE, only a packet that passed
   * the ICV and the replay check may move a peer, so a spoofed datagram
   * cannot). Rare: this may allocate.
   */
  #rebind(peer: Peer, slot: number): void {
    copyAddress(peer.address, 0, this.#slotSource, slot);
    const address = decodeAddress(peer.address, 0);
    if (address === null) return;
    this.log.info({ event: "peer-address", peer: peer.name, address: `${address.address}:${address.port}` }, "peer moved (NAT rebinding)");
    const onPeerAddress = this.hooks.onPeerAddress;
    if (onPeerAddress !== undefined) this.#callHook(() => onPeerAddress(peer, address));
  }
}
