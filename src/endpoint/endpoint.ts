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
  index: number;
  config: PeerConfig;
  out: SaHandle;
  in: SaHandle;
  outReservation: Reservation;
  inReservation: Reservation;
  /** Its outer address, 28-byte socket address encoding; updated when it roams. */
  address: Uint8Array;
  /** Inner sources it may send from. */
  selectors: PrefixTable<true>;
}

const ESN_LIMIT = 0xffffffffffffffffn;
const NO_ESN_LIMIT = 0xffffffffn;

export class Endpoint {
  readonly counters: EndpointCounters = { drops: {}, keepalivesIn: 0, keepalivesOut: 0 };
  readonly #peers: Peer[] = [];
  readonly #routes = new PrefixTable<Peer>();
  readonly #bySpi = new Map<number, Peer>();
  /** The peer of the packet in each slot. */
  readonly #slotPeer: Int32Array;
  readonly #batchSize: number;
  // Scratch arrays for one I/O call, reused: nothing is allocated per packet.
  readonly #offsets: Int32Array;
  readonly #lengths: Int32Array;
  readonly #addresses: Uint8Array;
  readonly #slotList: Int32Array;
  #tunPoll: PollHandle | undefined;
  #udpPoll: PollHandle | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #keepaliveSlot = -1;
  #stopped = false;

  private constructor(
    readonly config: EndpointConfig,
    readonly engine: Engine,
    private readonly io: NativeIo,
    private readonly log: Logger,
    readonly tun: { fd: number; name: string },
    readonly udp: { fd: number; port: number },
    private readonly store: SeqStore,
  ) {
    this.#slotPeer = new Int32Array(engine.layout.slotCount);
    this.#batchSize = Math.min(engine.layout.batchSize, io.batchMax);
    this.#offsets = new Int32Array(this.#batchSize);
    this.#lengths = new Int32Array(this.#batchSize);
    this.#addresses = new Uint8Array(this.#batchSize * ADDRESS_BYTES);
    this.#slotList = new Int32Array(this.#batchSize);
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
      const udp = io.udpOpen(family, config.local.address, config.local.port);
      udpFd = udp.fd;
      engine = await createEngine({ workers: config.engine.workers, slots: 4096, batchSize: 64 });
      const endpoint = new Endpoint(config, engine, io, log, tun, udp, store);
      for (const peer of config.peers) endpoint.#addPeer(peer);
      endpoint.#run();
      log.info({ event: "up", tun: tun.name, udp: `${config.local.address}:${udp.port}`, peers: config.peers.length, io: "native" }, "sluice endpoint up");
      return endpoint;
    } catch (error) {
      if (engine) await engine.close();
      if (udpFd >= 0) io.close(udpFd);
      io.close(tun.fd);
      throw error;
    }
  }

  #addPeer(peerConfig: PeerConfig): void {
    const keys = peerKeys(peerConfig);
    const limit = peerConfig.esn ? ESN_LIMIT : NO_ESN_LIMIT;
    const outId = SeqStore.id("out", peerConfig.spiOut, keys.out.key, keys.out.salt);
    const inId = SeqStore.id("in", peerConfig.spiIn, keys.in.key, keys.in.salt);
    const outReservation = new Reservation(this.store, outId, OUT_BLOCK, limit);
    const inReservation = new Reservation(this.store, inId, IN_BLOCK, limit);
    const resumeOut = outReservation.bound;
    const resumeIn = inReservation.bound;
    // Durable before the first packet: sealing resumes above what may have been used.
    outReservation.ensure(resumeOut + 1n);
    const out = this.engine.addSa({ direction: "out", spi: peerConfig.spiOut, ...keys.out, esn: peerConfig.esn, seq: resumeOut });
    const inbound = this.engine.addSa({ direction: "in", spi: peerConfig.spiIn, ...keys.in, esn: peerConfig.esn, replayWindow: peerConfig.replayWindow, seq: resumeIn });
    for (const k of [keys.out.key, keys.in.key]) k.fill(0);
    const address = new Uint8Array(ADDRESS_BYTES);
    encodeAddress(address, 0, { family: peerConfig.address.includes(":") ? 6 : 4, address: peerConfig.address, port: peerConfig.port });
    const selectors = new PrefixTable<true>();
    const peer: Peer = { index: this.#peers.length, config: peerConfig, out, in: inbound, outReservation, inReservation, address, selectors };
    for (const prefix of peerConfig.selectors) {
      this.#routes.add(prefix, peer);
      selectors.add(prefix, true);
    }
    this.#peers.push(peer);
    this.#bySpi.set(peerConfig.spiIn, peer);
    this.log.info({ event: "peer", peer: peerConfig.name, endpoint: `${peerConfig.address}:${peerConfig.port}`, selectors: peerConfig.selectors.map((p) => p.text), resumeOut: String(resumeOut), resumeIn: String(resumeIn) }, "peer added");
  }

  #run(): void {
    this.#tunPoll = this.io.poll(this.tun.fd, "r", () => this.#readTun());
    this.#udpPoll = this.io.poll(this.udp.fd, "r", () => this.#readUdp());
    this.engine.on("drain", () => this.#resume());
    this.engine.on("workerError", (error: unknown) => this.log.warn({ event: "worker-error", error: String(error) }, "worker failed; replaced"));
    if (this.config.keepaliveSeconds > 0) {
      this.#keepaliveSlot = this.engine.acquireSlot();
      this.engine.bytes[this.engine.packetOffset(this.#keepaliveSlot)] = 0xff;
      this.#keepaliveTimer = setInterval(() => this.#sendKeepalives(), this.config.keepaliveSeconds * 1000);
      this.#keepaliveTimer.unref();
    }
  }

  #drop(reason: string, count = 1): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + count;
  }

  #pause(): void {
    this.#tunPoll?.stop();
    this.#udpPoll?.stop();
    this.#tunPoll = this.#udpPoll = undefined;
  }

  #resume(): void {
    if (this.#stopped) return;
    this.#tunPoll ??= this.io.poll(this.tun.fd, "r", () => this.#readTun());
    this.#udpPoll ??= this.io.poll(this.udp.fd, "r", () => this.#readUdp());
  }

  /** Takes up to batchSize slots into #slotList; returns how many. */
  #takeSlots(): number {
    let n = 0;
    while (n < this.#batchSize) {
      const slot = this.engine.acquireSlot();
      if (slot < 0) break;
      this.#slotList[n++] = slot;
    }
    return n;
  }

  // ---- outbound: TUN → seal → UDP ----

  #readTun(): void {
    const engine = this.engine;
    const bytes = engine.bytes;
    for (;;) {
      const batch = engine.beginBatch("seal");
      if (batch === null) return this.#pause();
      const slots = this.#takeSlots();
      if (slots === 0) {
        batch.release();
        return this.#pause();
      }
      for (let i = 0; i < slots; i++) this.#offsets[i] = engine.packetOffset(this.#slotList[i]!);
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
        this.#slotPeer[slot] = peer.index;
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

  /** Makes sure the numbers this batch will use are below a durable bound. */
  #reserveOut(batch: Batch): void {
    for (const peer of this.#peers) {
      const next = this.engine.saSeq(peer.out) + BigInt(batch.count);
      peer.outReservation.ensure(next);
    }
  }

  #sendSealed(batch: Batch): void {
    let k = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      const peer = this.#peers[this.#slotPeer[batch.slot(i)]!]!;
      this.#offsets[k] = batch.offset(i);
      this.#lengths[k] = batch.length(i);
      this.#addresses.set(peer.address, k * ADDRESS_BYTES);
      k++;
    }
    if (k > 0) {
      const sent = this.#send(k);
      if (sent < k) this.#drop("udp-send-full", k - sent);
    }
    batch.release();
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

  #readUdp(): void {
    const engine = this.engine;
    const bytes = engine.bytes;
    const capacity = engine.layout.slotSize - HEADROOM + ESP_HEADER;
    for (;;) {
      const batch = engine.beginBatch("open");
      if (batch === null) return this.#pause();
      const slots = this.#takeSlots();
      if (slots === 0) {
        batch.release();
        return this.#pause();
      }
      for (let i = 0; i < slots; i++) this.#offsets[i] = engine.espOffset(this.#slotList[i]!);
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
        this.#slotPeer[slot] = peer.index;
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
    let highest = -1;
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) !== 0) continue;
      const peer = this.#peers[this.#slotPeer[batch.slot(i)]!]!;
      const at = batch.offset(i);
      const length = batch.length(i);
      const inner = innerAddresses(bytes, at, length);
      // The inner source must be one the peer may send from (its selectors).
      if (inner === null || (inner.nextHeader !== batch.nextHeader(i)) || peer.selectors.lookup(inner.family, bytes, inner.source) === undefined) {
        this.#drop("policy");
        continue;
      }
      highest = Math.max(highest, peer.index);
      this.#offsets[k] = at;
      this.#lengths[k] = length;
      k++;
    }
    // Durable before delivery: a crash now cannot make these acceptable again.
    if (highest >= 0) for (const peer of this.#peers) peer.inReservation.ensure(this.engine.saSeq(peer.in));
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

/** Brings the TUN up with its addresses and MTU, and routes the peers' selectors into it. */
function configureTun(name: string, config: EndpointConfig): void {
  const ip = (...args: string[]): void => void execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  ip("link", "set", "dev", name, "mtu", String(config.tun.mtu), "up");
  for (const prefix of config.tun.addresses) ip(prefix.family === 6 ? "-6" : "-4", "addr", "add", prefix.text, "dev", name);
  for (const peer of config.peers) {
    for (const prefix of peer.selectors) ip(prefix.family === 6 ? "-6" : "-4", "route", "replace", prefix.text, "dev", name);
  }
}
