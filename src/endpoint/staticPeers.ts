/**
 * Static peers: the config's [[peer]] tables as one client of the peer table
 * (config → keys → sequence reservations → addPeer + installChild), and
 * their SIGHUP reloads.
 *
 * Why reservations live here and nowhere else: a static key outlives the
 * process, so a restart must never reuse a sequence number under it nor
 * accept a packet it accepted before (seqStore.ts). The numbers are reserved
 * on disk ahead of use and the child carries its reservations (Child.durable)
 * for the forwarder to extend. A negotiated child's key dies with the
 * process: it needs none and leaves no file behind.
 *
 * A reload replaces a changed peer whole. With the same keys its counters
 * pass to the replacement, which is only safe once they stopped moving: the
 * endpoint holds the ports and waits for an idle engine around apply().
 */
import type { Logger } from "pino";
import type { Engine } from "../engine/engine.js";
import type { PeerConfig } from "./config.js";
import { loadKeymat, loadSecret, deriveSaKeys, type SaKeys } from "./keys.js";
import type { Child, Peer } from "./peer.js";
import type { PeerTable } from "./peerTable.js";
import { SeqStore, Reservation, OUT_BLOCK, IN_BLOCK } from "./seqStore.js";
import type { StaticPeerStatus } from "./status.js";

const ESN_LIMIT = 0xffffffffffffffffn;
const NO_ESN_LIMIT = 0xffffffffn;

/** A static peer as running: its config, its one child and what identifies it across a reload. */
export interface StaticPeer {
  config: PeerConfig;
  /** What identifies its settings and keys: an unchanged peer survives a reload. */
  signature: string;
  /** The sequence stores' names, which carry the keys' fingerprints. */
  outId: string;
  inId: string;
  peer: Peer;
  child: Child;
  outReservation: Reservation;
  inReservation: Reservation;
}

/** A replaced peer's counters, carried over when its keys did not change. */
export interface LiveCounters {
  out: bigint;
  in: bigint;
  outId: string;
  inId: string;
}

/** The SA keys of a peer, from its key files or derived from its secret. The caller wipes the keys. */
export function peerKeys(peer: PeerConfig): { out: SaKeys; in: SaKeys } {
  if (peer.secret) {
    const secret = loadSecret(peer.secret);
    const keys = { out: deriveSaKeys(secret, peer.spiOut, peer.spiIn, peer.cipher), in: deriveSaKeys(secret, peer.spiIn, peer.spiOut, peer.cipher) };
    secret.fill(0);
    return keys;
  }
  return { out: loadKeymat(peer.out!.keymat, undefined, peer.cipher), in: loadKeymat(peer.in!.keymat, undefined, peer.cipher) };
}

/** What must match for a reload to keep a peer's SAs: every setting and the keys' fingerprints. */
export function peerSignature(peer: PeerConfig, outId: string, inId: string): string {
  return JSON.stringify([peer.address, peer.port, peer.selectors.map((p) => p.text), peer.esn, peer.cipher, peer.replayWindow, outId, inId]);
}

/**
 * Adds a static peer to the table: its SAs resume above the sequence numbers
 * reserved on disk, or, on a reload that kept the keys, where the running
 * SAs are (`live`): a restart must skip ahead, a reload need not.
 */
export function addStaticPeer(table: PeerTable, engine: Engine, store: SeqStore, config: PeerConfig, live?: LiveCounters): StaticPeer {
  const keys = peerKeys(config);
  const limit = config.esn ? ESN_LIMIT : NO_ESN_LIMIT;
  const outId = SeqStore.id("out", config.spiOut, keys.out.key, keys.out.salt);
  const inId = SeqStore.id("in", config.spiIn, keys.in.key, keys.in.salt);
  const outReservation = new Reservation(store, outId, OUT_BLOCK, limit);
  const inReservation = new Reservation(store, inId, IN_BLOCK, limit);
  const sameKeys = live !== undefined && live.outId === outId && live.inId === inId;
  const resumeOut = sameKeys ? live.out : outReservation.bound;
  const resumeIn = sameKeys ? live.in : inReservation.bound;
  const peer = table.addPeer({ name: config.name, address: { family: config.address.includes(":") ? 6 : 4, address: config.address, port: config.port }, keepalive: true, rebind: false });
  let child: Child;
  try {
    // Durable before the first packet: sealing resumes above what may have been used.
    outReservation.ensure(resumeOut + 1n);
    child = table.installChild(peer, {
      outbound: { spi: config.spiOut, ...keys.out }, inbound: { spi: config.spiIn, ...keys.in },
      esn: config.esn, cipher: config.cipher, replayWindow: config.replayWindow, localSelectors: [], remoteSelectors: config.selectors, label: "static",
    }, { resumeOut, resumeIn, reservations: { out: outReservation, in: inReservation } });
  } catch (error) {
    table.removePeer(peer);
    outReservation.close();
    inReservation.close();
    throw error;
  } finally {
    for (const k of [keys.out.key, keys.out.salt, keys.in.key, keys.in.salt]) k.fill(0);
  }
  return { config, signature: peerSignature(config, outId, inId), outId, inId, peer, child, outReservation, inReservation };
}

/** The static peers of an endpoint, as the config (and its reloads) make them. */
export class StaticPeers {
  #running: StaticPeer[] = [];

  constructor(
    private readonly table: PeerTable,
    private readonly engine: Engine,
    private readonly store: SeqStore,
    private readonly log: Logger,
  ) {}

  get running(): readonly StaticPeer[] {
    return this.#running;
  }

  /** Adds the config's peers (at start). */
  start(configs: readonly PeerConfig[]): void {
    for (const config of configs) this.#running.push(this.#add(config));
  }

  #add(config: PeerConfig, live?: LiveCounters): StaticPeer {
    const running = addStaticPeer(this.table, this.engine, this.store, config, live);
    const resumeOut = this.engine.saSeq(running.child.out);
    const resumeIn = this.engine.saSeq(running.child.in);
    this.log.info({ event: "peer", peer: config.name, endpoint: `${config.address}:${config.port}`, selectors: config.selectors.map((p) => p.text), resumeOut: String(resumeOut), resumeIn: String(resumeIn) }, "peer added");
    return running;
  }

  /**
   * Makes `configs` the static peers: an unchanged peer keeps its SAs (and
   * their counters and windows); a changed or new one gets new SAs; a removed
   * one's SAs are removed. Call only with the ports held and the engine idle
   * (see the top of this file).
   */
  apply(configs: readonly PeerConfig[]): { kept: string[]; added: string[]; removed: string[] } {
    const old = new Map(this.#running.map((running) => [running.config.name, running]));
    const next: StaticPeer[] = [];
    const added: string[] = [];
    const kept: string[] = [];
    for (const config of configs) {
      const keys = peerKeys(config);
      const signature = peerSignature(config,
        SeqStore.id("out", config.spiOut, keys.out.key, keys.out.salt), SeqStore.id("in", config.spiIn, keys.in.key, keys.in.salt));
      for (const k of [keys.out.key, keys.out.salt, keys.in.key, keys.in.salt]) k.fill(0);
      const current = old.get(config.name);
      if (current && current.signature === signature) {
        next.push(current);
        old.delete(config.name);
        kept.push(config.name);
      }
    }
    // Remove what is gone or changed before adding, so SPIs can be reused;
    // a changed peer with the same keys carries its counters over.
    const counters = new Map<string, LiveCounters>();
    for (const running of old.values()) {
      counters.set(running.config.name, { out: this.engine.saSeq(running.child.out), in: this.engine.saSeq(running.child.in), outId: running.outId, inId: running.inId });
      this.#remove(running);
    }
    for (const config of configs) {
      if (next.some((running) => running.config.name === config.name)) continue;
      next.push(this.#add(config, counters.get(config.name)));
      added.push(config.name);
    }
    this.#running = next;
    return { kept, added, removed: [...old.keys()] };
  }

  #remove(running: StaticPeer): void {
    // Its files may be taken over by a replacement peer with the same keys: no background save may land after this.
    running.outReservation.close();
    running.inReservation.close();
    this.table.removePeer(running.peer);
    this.log.info({ event: "peer-removed", peer: running.config.name }, "peer removed");
  }

  /** For `sluice status`: each static peer's address, SPIs and traffic. */
  status(): StaticPeerStatus[] {
    return this.#running.map((running) => {
      const address = this.table.peerAddress(running.peer);
      return {
        name: running.config.name,
        address: address ? `${address.address}:${address.port}` : "?",
        spiIn: running.child.in.spi.toString(16).padStart(8, "0"),
        spiOut: running.child.out.spi.toString(16).padStart(8, "0"),
        ...this.table.childCounters(running.child),
      };
    });
  }

  /**
   * A clean stop (engine idle): records the exact counters, so a restart
   * resumes where it stopped instead of skipping a reserved block (which
   * would refuse the peer's next IN_BLOCK packets).
   */
  saveExact(): void {
    for (const running of this.#running) {
      running.outReservation.close();
      running.inReservation.close();
      this.store.save(running.outId, this.engine.saSeq(running.child.out));
      this.store.save(running.inId, this.engine.saSeq(running.child.in));
    }
  }
}
