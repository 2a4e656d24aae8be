/**
 * The inner port of the native path: a TUN device (IFF_TUN | IFF_NO_PI),
 * read and written in batches by the addon straight into and out of engine
 * slots, with readiness from libuv.
 *
 * With TUN offloads (on unless SLUICE_TUN_OFFLOAD=0; the kernel may refuse
 * them) one read brings a 64 KB TCP super-packet, which the addon cuts into
 * segments straight into the slots, and one write takes a flow's run of
 * segments coalesced: the per-packet system calls that bounded the endpoint
 * at about 2 Gbit/s become one per 64 KB (native/src/tun_offload.c).
 *
 *   TUN ─tunReadBatch→ slots → Forwarder.addOutbound → submitSeal
 *   TUN ←tunWriteBatch─ slots ← Forwarder (#writeOpened, after the policy check)
 *
 * Why it also configures the device: the TUN's addresses, MTU and the routes
 * of the peers' selectors belong to the device. The config's routes are set
 * up before the endpoint says it is up; later changes (children installed
 * and removed, reloads) follow in the background (tunRoutes.ts).
 * The kernel behind the TUN queues or drops while reading is paused
 * (backpressure), as it would for any router.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";
import type { NativeIo, TunOffloadStats } from "../io/native.js";
import type { EndpointConfig } from "./config.js";
import { PrefixTable, addressBytes, type Prefix } from "./prefix.js";
import { TunRoutes, kernelPrefixes } from "./tunRoutes.js";
import { routeTo } from "./clientNetwork.js";
import { ikePeerRemotePrefixes } from "./ikeConfig.js";
import type { Forwarder } from "./forwarder.js";
import type { Entries, InnerPort } from "./ports.js";
import { ReadScratch } from "./readScratch.js";
import { Readiness } from "./readiness.js";
import type { Batch } from "../engine/batch.js";

export class TunPort implements InnerPort {
  #host: Forwarder | undefined;
  #read: ReadScratch | undefined;
  #routes: TunRoutes | undefined;
  readonly #readiness: Readiness;
  #closed = false;
  /** The last read filled every slot: segments of a super-packet may wait in the addon. */
  #mayHaveLeftovers = false;
  // Bound once: a readiness callback allocates nothing.
  readonly #onTunReadable = (): void => {
    try {
      this.#readTun();
    } catch (error) {
      this.#read!.abandon(this.#host!.engine, this.#building);
      this.#building = null;
      this.#host!.internalError(error);
    }
  };
  /** The batch the read loop is filling (given back if the loop throws). */
  #building: Batch | null = null;

  /** Host routes to peers inside the routed prefixes, undone on close (gatewayBypass). */
  #bypass: string[][] = [];

  private constructor(
    private readonly io: NativeIo,
    readonly fd: number,
    readonly name: string,
    /** TSO/GRO offloads are on (see the top of this file). */
    readonly offload: boolean,
    /** The routes configureTun set up. */
    private readonly initialRoutes: readonly Prefix[],
  ) {
    this.#readiness = new Readiness(io, fd, this.#onTunReadable);
  }

  /** Opens (creating if needed) the TUN device and brings it up with the config's addresses, MTU and routes. */
  static open(io: NativeIo, config: EndpointConfig): TunPort {
    const tun = io.tunOpen(config.tun.name, { offload: process.env.SLUICE_TUN_OFFLOAD !== "0" });
    let bypass: string[][];
    try {
      bypass = configureTun(tun.name, config);
    } catch (error) {
      io.close(tun.fd);
      throw error;
    }
    const port = new TunPort(io, tun.fd, tun.name, tun.offload, [...config.peers.flatMap((peer) => peer.selectors), ...config.ikePeers.flatMap(ikePeerRemotePrefixes)]);
    port.#bypass = bypass;
    return port;
  }

  /** What the offloads did so far (null without offloads, or once closed). */
  offloadStats(): TunOffloadStats | null {
    return this.#closed ? null : this.io.tunOffloadStats(this.fd);
  }

  /** Connects the port to the forwarding core (before start). */
  attach(host: Forwarder): void {
    this.#host = host;
    this.#read = new ReadScratch(Math.min(host.engine.layout.batchSize, this.io.batchMax));
    this.#routes = new TunRoutes(this.name, host.log, this.initialRoutes, (replace, device, family, destination, length) => this.io.routeChange(replace, device, family, destination, length));
  }

  start(): void {
    this.#resume();
  }

  pause(): void {
    this.#readiness.pause();
  }

  resume(): void {
    this.#resume();
  }

  #resume(): void {
    // The rest of a super-packet may be waiting in the addon while the device
    // has nothing new to read (so it will not turn readable): read it now.
    if (this.#readiness.watch() && this.#mayHaveLeftovers) this.#onTunReadable();
  }

  stop(): void {
    this.#readiness.stop();
  }

  close(): void {
    this.#closed = true;
    this.#routes?.close();
    this.io.close(this.fd);
    for (const args of this.#bypass) {
      try {
        ip(...args);
      } catch {
        // gone already
      }
    }
    this.#bypass = [];
  }

  setRoutes(prefixes: readonly Prefix[]): void {
    this.#routes!.set(prefixes);
  }

  routesSettled(): Promise<void> {
    return this.#routes?.settled() ?? Promise.resolve();
  }

  #readTun(): void {
    const host = this.#host!;
    const read = this.#read!;
    const engine = host.engine;
    const bytes = engine.bytes;
    for (;;) {
      if (!host.innerMayRead()) return host.pauseInner();
      const batch = read.start(engine, "seal");
      if (batch === null) return host.pause();
      this.#building = batch;
      const slots = read.count;
      const n = this.io.tunReadBatch(this.fd, bytes, read.offsets, engine.maxPacket, read.lengths, slots);
      read.releaseUnfilled(engine, n);
      for (let i = 0; i < n; i++) {
        const slot = read.slots[i]!;
        if (!host.addOutbound(batch, slot, read.offsets[i]!, read.lengths[i]!, "tun-malformed")) engine.releaseSlot(slot);
      }
      read.handedOver();
      if (batch.count === 0) batch.release();
      else host.submitSeal(batch);
      this.#building = null;
      this.#mayHaveLeftovers = this.offload && n === slots;
      if (n < slots) return; // the TUN is drained (and no segments are left over)
    }
  }

  /**
   * Writes opened packets to the device. A packet the kernel refuses costs
   * only itself: the addon stops at it (it throws when that is the first
   * packet of a call, else returns how many went before it, with that packet
   * as it was), so the next call starts there, and its throw counts that one
   * packet as `tun-write-error`. Two refusals in a row mean the device
   * itself fails (down, gone): the rest is counted alike without trying each
   * packet. A call that writes nothing without an error is a full device
   * (EAGAIN): the rest is dropped as `tun-write-full`.
   */
  write(entries: Entries, count: number): void {
    const host = this.#host!;
    const bytes = host.engine.bytes;
    let offsets = entries.offsets;
    let lengths = entries.lengths;
    let left = count;
    let refusedLast = false;
    for (;;) {
      let written: number;
      try {
        written = this.io.tunWriteBatch(this.fd, bytes, offsets, lengths, left);
        refusedLast = false;
      } catch (error) {
        if (refusedLast) return host.ioError("tun-write-error", error, left);
        host.ioError("tun-write-error", error, 1);
        refusedLast = true;
        written = 1;
      }
      if (written === left) return;
      if (written === 0) return host.drop("tun-write-full", left);
      // Only after a refusal: views on the rest (no allocation on the common path).
      offsets = offsets.subarray(written);
      lengths = lengths.subarray(written);
      left -= written;
    }
  }
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * Brings the TUN up with its addresses and MTU, and routes the peers'
 * selectors into it. Returns the bypass routes it made (see gatewayBypass).
 */
function configureTun(name: string, config: EndpointConfig): string[][] {
  ip("link", "set", "dev", name, "mtu", String(config.tun.mtu), "up");
  for (const prefix of config.tun.addresses) ip(prefix.family === 6 ? "-6" : "-4", "addr", "add", prefix.text, "dev", name);
  // IKE peers' selectors too: their trap entries route them from the start (ikeShell.ts), so the
  // kernel must send them to the TUN before the first handshake, not a background change later.
  const routed = [...config.peers.flatMap((peer) => peer.selectors), ...config.ikePeers.flatMap(ikePeerRemotePrefixes)];
  const bypass = gatewayBypass(config, routed);
  for (const prefix of routed) {
    for (const text of kernelPrefixes(prefix)) ip(prefix.family === 6 ? "-6" : "-4", "route", "replace", text, "dev", name);
  }
  return bypass;
}

/**
 * A peer whose own address lies inside what is routed into the tunnel (a
 * road warrior's gateway behind a full tunnel, 0.0.0.0/0) would have its
 * IKE and ESP packets routed into the TUN too, and never leave. Before the
 * TUN's routes go in, each such peer gets a host route the way the kernel
 * reaches it now (`ip route get`), removed again when the TUN closes.
 * Returns the `ip route del` arguments of each.
 */
function gatewayBypass(config: EndpointConfig, routed: readonly Prefix[]): string[][] {
  const table = PrefixTable.of(routed.map((prefix) => ({ prefix, value: true })));
  const peers = [...config.peers.map((peer) => peer.address), ...config.ikePeers.flatMap((peer) => (peer.endpoint ? [peer.endpoint.address] : []))];
  const undo: string[][] = [];
  for (const address of new Set(peers)) {
    const family = isIP(address) === 6 ? 6 : 4;
    if (table.lookup(family, addressBytes(address, family), 0) === undefined) continue;
    const via = routeTo(address);
    if (via === undefined) continue;
    ip(family === 6 ? "-6" : "-4", "route", "replace", address, ...via);
    undo.push([family === 6 ? "-6" : "-4", "route", "del", address, ...via]);
  }
  return undo;
}
