/**
 * The VPN endpoint: plain IP packets on one side, ESP in UDP (RFC 3948) on
 * the other, the engine in between. This file is its control plane: which
 * I/O path it runs on, the static peers and their SIGHUP reloads,
 * keepalives, metrics, a clean stop, and the seam a negotiating control
 * plane (the IKE shell) plugs into: the peer table (peerTable.ts), control
 * datagrams both ways (sendControl, ControlHooks) and the metrics registry.
 * What happens to each packet is forwarder.ts; moving the bytes is the
 * ports' (ports.ts).
 *
 * It runs on either I/O path (io/index.ts, selectIoPath), and says once which
 * and why (the "io-path" log line):
 *
 * - native: a TUN device and a UDP socket, both read and written in batches
 *   by the addon straight into and out of the engine's slots, with UDP GSO
 *   and GRO (tunPort.ts, udpPort.ts);
 * - portable: node:dgram, one datagram per event copied into a slot, and no
 *   TUN: the embedding application is the inner side, handing packets in with
 *   sendInner and getting them out through onInnerPacket (dgramPort.ts,
 *   appPort.ts). Correct, not fast.
 *
 * Both paths apply the same checks: longest-prefix routing (no route: a
 * counted drop, never clear text), the SPI demux, the inner-source policy,
 * sequence reservations on disk (static peers), and bounded queues
 * (backpressure).
 */
import type { Logger } from "pino";
import { createEngine, type Engine } from "../engine/engine.js";
import { decodeAddress, formatAddress, type SocketAddress } from "../io/address.js";
import type { IoPath } from "../io/index.js";
import type { NativeIo } from "../io/native.js";
import type { EndpointConfig } from "./config.js";
import { SeqStore } from "./seqStore.js";
import { StaticPeers } from "./staticPeers.js";
import type { PeerTable } from "./peerTable.js";
import { Forwarder, type ControlHooks, type EndpointCounters } from "./forwarder.js";
import { EndpointMetrics } from "./metrics.js";
import type { InnerPort, OuterPort } from "./ports.js";
import { TunPort } from "./tunPort.js";
import { NativeUdpPort } from "./udpPort.js";
import { AppPort, type InnerPacketHandler } from "./appPort.js";
import { DgramPort } from "./dgramPort.js";
import { IkeShell, ikePeerConfig, makePools } from "./ikeShell.js";
import type { ControlAnswer } from "./controlSocket.js";
import type { EndpointStatus } from "./status.js";

export type { EndpointCounters, ControlHooks } from "./forwarder.js";
export type { InnerPacketHandler } from "./appPort.js";

export interface EndpointOptions {
  /**
   * Portable path only: receives each opened inner packet that passed the
   * policy check, with the name of the peer it came from (see
   * InnerPacketHandler). Without it those packets are counted and dropped as
   * "no-inner-port". On the native path they go to the TUN device, and
   * giving this is an error.
   */
  onInnerPacket?: InnerPacketHandler;
  /** The control plane's hooks from the start (or set them later with setControlHooks). */
  control?: ControlHooks;
  /** Collect prom-client's default process metrics (memory, event-loop lag, GC) in the registry (default true). */
  processMetrics?: boolean;
}

/** Which I/O path the endpoint runs on, and what it has there. */
export type EndpointIo =
  | { path: "native"; tun: string; tunOffload: boolean; gso: boolean; gro: boolean }
  | { path: "portable"; reason: string };

/**
 * The endpoint's engine on both paths: 4096 slots, batches of 64 (a TCP
 * super-packet's ~46 segments fit one). Batches in flight differ: 24 on the
 * native path, where the TUN may take all but the UDP side's reserve
 * (Forwarder.innerMayRead; 16 measured 2% slower in the tunnel), 16 on the
 * portable one, whose single-packet ports need no reserve.
 */
const ENGINE_SHAPE = { slots: 4096, batchSize: 64 } as const;

/**
 * A running endpoint on one I/O path (see the top of this file). Start it
 * with Endpoint.start, stop it with stop(); reload() applies new peers.
 *
 * @example Native path (`sluice up`): a TUN device on the inner side.
 * ```ts
 * const path = selectIoPath();
 * const endpoint = await Endpoint.start(parseConfig(text), path, pino());
 * process.on("SIGTERM", () => void endpoint.stop());
 * ```
 * @example Portable path: the application is the inner side.
 * ```ts
 * const endpoint = await Endpoint.start(config, { path: "portable", reason: "embedded" }, log, {
 *   onInnerPacket: (packet, peer) => handle(packet.slice(), peer),   // a view: copy to keep
 * });
 * endpoint.sendInner(ipPacket);   // false: dropped (no route, backpressure, …), see counters.drops
 * ```
 */
export class Endpoint {
  readonly #counters: EndpointCounters;
  /** The config's peers, as running. */
  readonly #static: StaticPeers;
  /** The endpoint's metrics; its registry takes the control plane's too. */
  readonly metrics: EndpointMetrics;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The last reload asked for (each waits for the one before). */
  #reloads: Promise<void> = Promise.resolve();
  /** The IKE shell, when the config has IKE peers. */
  #ike: IkeShell | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(
    /** The config in force (peers and keepalive follow reloads). */
    public config: EndpointConfig,
    readonly engine: Engine,
    /** The I/O path, and on the native one the TUN's name and the UDP offloads in use. */
    readonly io: EndpointIo,
    private readonly log: Logger,
    private readonly store: SeqStore,
    private readonly forwarder: Forwarder,
    private readonly inner: InnerPort,
    private readonly outer: OuterPort,
    /** The application port (portable path). */
    private readonly app: AppPort | undefined,
    options: EndpointOptions,
  ) {
    this.#counters = forwarder.counters;
    this.#static = new StaticPeers(forwarder.table, engine, store, log);
    if (options.control !== undefined) forwarder.hooks = options.control;
    this.metrics = new EndpointMetrics({ engine, table: forwarder.table, counters: () => this.counters }, { processMetrics: options.processMetrics });
    forwarder.observeBatch = this.metrics.observeBatch;
  }

  /**
   * Opens the I/O of `path` (native: the TUN and the UDP socket; portable: a
   * dgram socket), adds the peers' SAs and starts forwarding.
   * @throws on the native path the addon's one-line errors when /dev/net/tun
   *   is missing or CAP_NET_ADMIN is lacking; a bind error; a key that cannot be read
   */
  static async start(config: EndpointConfig, path: IoPath, log: Logger, options: EndpointOptions = {}): Promise<Endpoint> {
    if (path.path === "native" && options.onInnerPacket !== undefined) {
      throw new TypeError("onInnerPacket needs the portable path: on the native path opened packets go to the TUN device");
    }
    const store = new SeqStore(config.stateDir);
    return path.path === "native"
      ? Endpoint.#startNative(config, path.io, log, store, options)
      : Endpoint.#startPortable(config, path.reason, log, store, options);
  }

  static async #startNative(config: EndpointConfig, io: NativeIo, log: Logger, store: SeqStore, options: EndpointOptions): Promise<Endpoint> {
    const tun = TunPort.open(io, config);
    let engine: Engine | undefined;
    let udp: NativeUdpPort | undefined;
    try {
      udp = NativeUdpPort.open(io, config);
      engine = await createEngine({ workers: config.engine.workers, ...ENGINE_SHAPE, maxSas: config.engine.maxSas, maxInFlight: 24, ioScratch: udp.ioScratchBytes });
      // The first packets of a tunnel should not pay for compiling the data path.
      await engine.warmUp();
      const forwarder = new Forwarder(engine, log);
      tun.attach(forwarder);
      udp.attach(forwarder);
      const endpoint = new Endpoint(config, engine, { path: "native", tun: tun.name, tunOffload: tun.offload, gso: udp.gso, gro: udp.groEnabled }, log, store, forwarder, tun, udp, undefined, options);
      endpoint.#begin();
      return await endpoint.#startIke();
    } catch (error) {
      if (engine) await engine.close();
      udp?.close();
      tun.close();
      throw error;
    }
  }

  static async #startPortable(config: EndpointConfig, reason: string, log: Logger, store: SeqStore, options: EndpointOptions): Promise<Endpoint> {
    const engine = await createEngine({ workers: config.engine.workers, ...ENGINE_SHAPE, maxSas: config.engine.maxSas, maxInFlight: 16 });
    let udp: DgramPort | undefined;
    try {
      await engine.warmUp();
      const forwarder = new Forwarder(engine, log);
      const app = new AppPort(forwarder, options.onInnerPacket);
      udp = await DgramPort.open(config, forwarder);
      const endpoint = new Endpoint(config, engine, { path: "portable", reason }, log, store, forwarder, app, udp, app, options);
      endpoint.#begin();
      return await endpoint.#startIke();
    } catch (error) {
      await udp?.close();
      await engine.close();
      throw error;
    }
  }

  /** Starts the IKE shell when there are IKE peers; if it cannot start, everything set up so far is released. */
  async #startIke(): Promise<this> {
    if (this.config.ikePeers.length === 0) return this;
    // The first exchange and the child's first packets should not share the cores with worker threads still booting.
    await this.engine.serving();
    try {
      this.#ike = await IkeShell.start(this, this.config, this.log);
    } catch (error) {
      await this.stop();
      throw error;
    }
    return this;
  }

  /** Adds the peers, starts the ports and the keepalives, and says which path runs. */
  #begin(): void {
    this.#static.start(this.config.peers);
    this.forwarder.start(this.inner, this.outer);
    this.#startKeepalives();
    const io = this.io;
    // Where AES-GCM SAs run (RFC 4106): the addon on Node's OpenSSL, or node:crypto per packet.
    const aes = this.engine.aesPath;
    const aesText = aes === "native" ? "AES-GCM native (batched, OpenSSL)" : `AES-GCM portable (node:crypto per packet: ${this.engine.aesPathReason})`;
    if (io.path === "native") {
      this.log.info({ event: "io-path", io: "native", tun: true, tunOffload: io.tunOffload, gso: io.gso, gro: io.gro, aes },
        `I/O on the native path: TUN device ${io.tun} (offloads ${io.tunOffload ? "on" : "off"}), batched UDP (GSO ${io.gso ? "on" : "off"}, GRO ${io.gro ? "on" : "off"}); ${aesText}`);
    } else {
      this.log.info({ event: "io-path", io: "portable", reason: io.reason, tun: false, aes }, `I/O on the portable path (node:dgram, no TUN device): ${io.reason}; ${aesText}`);
      if (this.app !== undefined && !this.app.delivers) {
        this.log.warn({ event: "no-tun" },
          "no TUN device on the portable path: opened packets are counted and dropped (no-inner-port), and only what an embedding application passes to sendInner goes into the tunnel");
      }
    }
    const tun = io.path === "native" ? io.tun : null;
    this.log.info({ event: "up", tun, udp: `${this.config.local.address}:${this.outer.port}`, peers: this.config.peers.length, ikePeers: this.config.ikePeers.length }, "sluice endpoint up");
  }

  /** The endpoint's counters (drops by reason, keepalives; the TUN offloads' and the UDP socket's read now). */
  get counters(): EndpointCounters {
    if (!this.#stopped) this.#readDeviceCounters();
    return this.#counters;
  }

  #readDeviceCounters(): void {
    this.#counters.tunOffload = this.inner.offloadStats?.() ?? null;
    this.#counters.udpReceiveOverflows = this.outer.receiveOverflows?.() ?? null;
  }

  /** The TUN device's name on the native path. */
  get tunName(): string | undefined {
    return this.io.path === "native" ? this.io.tun : undefined;
  }

  /** The bound UDP port (the one the kernel chose when the config asks for 0). */
  get port(): number {
    return this.outer.port;
  }

  /**
   * Portable path: hands an inner packet (a whole IPv4 or IPv6 packet) to the
   * tunnel, as if it had been read from a TUN device. It is copied into an
   * engine slot at once (the caller may reuse `packet` when this returns),
   * routed to the peer whose selector is the longest prefix of its
   * destination, and sealed and sent with the packets of this event-loop turn.
   *
   * @returns true when it was taken for sealing; false when it was dropped
   *   and counted in `counters.drops`: "no-route", "inner-malformed",
   *   "inner-too-long" (over the engine's slot), "backpressure" (no slot or
   *   batch free: try again after the batches in flight complete), or after stop().
   * @throws Error on the native path, where inner packets come from the TUN device
   * @example
   * ```ts
   * const ok = endpoint.sendInner(reply);   // reply: Uint8Array holding an IPv4 packet
   * if (!ok) console.warn(endpoint.counters.drops);
   * ```
   */
  sendInner(packet: Uint8Array): boolean {
    if (this.app === undefined) throw new Error("sendInner needs the portable path: on the native path inner packets come from the TUN device");
    return this.app.send(packet);
  }

  // ---- the seam for a negotiating control plane (the IKE shell) ----

  /**
   * The peers and their child SAs: static peers are in it too (leave those
   * to reload). Add peers and install, retire and remove children at any
   * time; see PeerTable.
   */
  get table(): PeerTable {
    return this.forwarder.table;
  }

  /** Resolves once the TUN device's kernel routes follow the table's changes so far (at once on the portable path). */
  routesSettled(): Promise<void> {
    return this.inner.routesSettled?.() ?? Promise.resolve();
  }

  /** Sets the control plane's hooks (replacing earlier ones); see ControlHooks. */
  setControlHooks(hooks: ControlHooks): void {
    this.forwarder.hooks = hooks;
  }

  /**
   * Sends one control datagram (IKE) from the endpoint's UDP port to any
   * address, a peer or not, with the non-ESP marker (RFC 3948 §2.2) first
   * when `options.marker` (IKE on the NAT-T port; not on port 500). Copies
   * nothing it need not and never blocks.
   * @returns false when it could not be sent now (socket full: counted
   *   "control-send-full"; an error: "control-send-error"; stopped)
   * @example
   * ```ts
   * endpoint.sendControl(ikeMessage, { family: 4, address: "192.0.2.7", port: 4500 }, { marker: true });
   * ```
   */
  sendControl(datagram: Uint8Array, to: SocketAddress, options: { marker: boolean }): boolean {
    if (this.#stopped) return false;
    return this.forwarder.sendControl(datagram, to, options.marker);
  }

  /**
   * SIGHUP: applies a new config's peers. A peer whose settings and keys did
   * not change keeps its SAs (and their counters and windows); a changed or
   * new peer gets new SAs; a removed peer's SAs are removed (their keys wiped
   * once their last packets completed). TUN routes follow the selectors.
   * Changes to [local], [tun], [engine] and [state] need a restart.
   *
   * Reading and sending pause until the batches in flight are delivered:
   * a replaced peer's counters are read only once they stop moving, or its
   * replacement (same keys) could accept again numbers that those batches
   * accepted. That takes milliseconds; packets wait in the socket and the
   * TUN meanwhile (sendInner returns false). Reloads run one at a time.
   */
  reload(config: EndpointConfig): Promise<void> {
    const run = this.#reloads.then(async () => {
      await this.#reload(config);
      await this.#reloadIke(config);
      await this.inner.routesSettled?.();
    });
    this.#reloads = run.catch(() => undefined);
    return run;
  }

  async #reload(config: EndpointConfig): Promise<void> {
    if (this.#stopped) return;
    // Every IKE peer's PSK must read before anything changes: a bad file fails the reload whole.
    for (const entry of config.ikePeers) ikePeerConfig(entry, makePools(config));
    this.forwarder.hold();
    try {
      await this.engine.idle();
      if (!this.#stopped) this.#applyReload(config);
    } finally {
      this.forwarder.release();
    }
  }

  #applyReload(config: EndpointConfig): void {
    for (const section of ["local", "tun", "engine", "stateDir"] as const) {
      if (JSON.stringify(config[section]) !== JSON.stringify(this.config[section])) {
        this.log.warn({ event: "reload", setting: section }, `changes to ${section} need a restart; kept the running value`);
      }
    }
    const { kept, added, removed } = this.#static.apply(config.peers);
    this.config = { ...this.config, peers: config.peers, keepaliveSeconds: config.keepaliveSeconds };
    this.#startKeepalives();
    this.log.info({ event: "reload", kept, added, removed }, "peers reloaded");
  }

  /** IKE peers follow a reload without a pause: the IKE core keeps unchanged peers' SAs (a shell starts with the first IKE peer). */
  async #reloadIke(config: EndpointConfig): Promise<void> {
    if (this.#stopped) return;
    if (this.#ike !== undefined) this.#ike.reload(config);
    else if (config.ikePeers.length > 0) this.#ike = await IkeShell.start(this, { ...this.config, ikePeers: config.ikePeers }, this.log);
    this.config = { ...this.config, ikePeers: config.ikePeers };
  }

  // ---- control: what `sluice status`, `initiate` and `terminate` ask ----

  /** Every peer with its SAs and their traffic: static peers, and IKE SAs with their children. */
  status(): EndpointStatus {
    return {
      io: this.io,
      staticPeers: this.#static.status(),
      ike: this.#ike?.status() ?? [],
      // What the IKE core counted (drops and refusals by reason, cookies on or off): `sluice status --json`, the flood bench.
      ikeCounters: this.#ike ? { ...this.#ike.core.counters, dos: this.#ike.core.dosStatus() } : undefined,
    };
  }

  /** Negotiates with an IKE peer now; resolves when its child SA is up or the attempt failed. */
  initiate(name: string): Promise<ControlAnswer> {
    return this.#ike?.initiate(name) ?? Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
  }

  /** Rekeys an IKE peer's child SAs, or with `ike` its IKE SA, now. */
  rekey(name: string, ike: boolean): Promise<ControlAnswer> {
    return this.#ike?.rekey(name, ike) ?? Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
  }

  /** Deletes the IKE SAs (and child SAs) with an IKE peer. */
  terminate(name: string): Promise<ControlAnswer> {
    return this.#ike?.terminate(name) ?? Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
  }

  /** RFC 3948 §2.2: a one-byte 0xFF datagram to each peer (with keepalive on) every interval, keeping NAT mappings open. */
  #startKeepalives(): void {
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
    if (this.config.keepaliveSeconds === 0) return;
    this.#keepaliveTimer = setInterval(() => this.forwarder.sendKeepalives(), this.config.keepaliveSeconds * 1000);
    this.#keepaliveTimer.unref();
  }

  /** The peers' current outer addresses ("?" while unknown). */
  peerAddresses(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const peer of this.table.peers) {
      const address = decodeAddress(peer.address, 0);
      out[peer.name] = address ? formatAddress(address) : "?";
    }
    return out;
  }

  /**
   * Sends IKE peers a DELETE, stops forwarding, waits for batches in flight,
   * closes the engine (wiping keys), the socket and the TUN.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    // DELETEs to IKE peers leave through the outer port: before it stops.
    await this.#ike?.stop();
    this.#stopped = true;
    this.forwarder.stop();
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    await this.engine.idle();
    this.#static.saveExact();
    await this.engine.close();
    this.#readDeviceCounters();
    await this.outer.close();
    await this.inner.close();
    this.log.info({ event: "down", counters: this.counters }, "sluice endpoint down");
  }
}
