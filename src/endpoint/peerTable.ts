/**
 * The peer/SA table: every peer, its child SAs, the inbound SPI demux, the
 * outbound routes and the traps, changed at run time without pausing the
 * data path. Static peers (staticPeers.ts) and the IKE shell are its two
 * clients.
 *
 * Why changes need no pause: the forwarder reads the SPI map and the route
 * table per packet, and a change replaces them (or one entry) in one
 * synchronous step between two reads. SAs are added to and removed from the
 * engine while batches are in flight (a removed SA's record is wiped only
 * once its last packet completed), and a packet in flight names its child by
 * object, not by a number that a later child could reuse, so its completion
 * sees the child it was taken for: the forwarder drops the opened packets of
 * a child removed meanwhile ("child-removed") instead of judging them by a
 * policy that is no longer in force.
 *
 * Routes (RFC 4301 §4.4.1, the SPD reduced to what a route-based VPN needs):
 * longest prefix of the inner destination over every child's remote
 * selectors; on equal prefixes the child installed last wins, which is how
 * a rekey's new child takes the outbound traffic (RFC 7296 §2.8) before the
 * old one is retired. A peer's trap selectors are routes too, below any
 * child's on an equal prefix: a packet they catch has no SA yet, is dropped
 * and counted ("no-sa", never sent in clear) and starts a negotiation
 * (onAcquire, the kernel's ACQUIRE).
 */
import type { Engine } from "../engine/engine.js";
import type { SaHandle } from "../engine/saTable.js";
import type { EspCipher } from "../kernel/cipher.js";
import { encodeAddress, decodeAddress, type SocketAddress } from "../io/address.js";
import { PrefixTable, type Prefix } from "./prefix.js";
import { Peer, Child, type ChildCounters, type DurableSequences } from "./peer.js";

/**
 * One SA's keys: the cipher's key (32 bytes; 16 for aes128gcm16) and a
 * 4-byte salt (RFC 7634 §2, RFC 4106 §8.1). Wiped by installChild once in the engine.
 */
export interface ChildSaKeys {
  spi: number;
  key: Uint8Array;
  salt: Uint8Array;
}

/** What installChild needs: the SA pair and its traffic selectors. */
export interface ChildSpec {
  outbound: ChildSaKeys;
  inbound: ChildSaKeys;
  /** Extended sequence numbers (RFC 4303 §2.2.1) for both SAs. */
  esn: boolean;
  /** The AEAD of both SAs (default chacha20poly1305). */
  cipher?: EspCipher;
  /** The inbound anti-replay window in packets, a multiple of 64 (default 1024). */
  replayWindow?: number;
  /**
   * Inner destinations this child carries towards us (TSr of the initiator,
   * RFC 7296 §2.9). Checked on inbound packets when not empty; empty: any.
   */
  localSelectors: Prefix[];
  /** Inner addresses on the peer's side: outbound routes, and the inbound source check. */
  remoteSelectors: Prefix[];
  /** For logs and metrics (default: the inbound SPI in hex). */
  label?: string;
  /** Install the outbound SA without routing to it until activateOutbound (a rekey responder's new child). */
  outboundPending?: boolean;
}

/**
 * Static keys only (staticPeers.ts): where the SAs resume after a restart and
 * the reservations that must stay ahead of them. Negotiated children have
 * none: their keys never outlive the process.
 */
export interface DurableStart {
  resumeOut: bigint;
  resumeIn: bigint;
  reservations: DurableSequences;
}

/** What addPeer needs. */
export interface PeerSpec {
  name: string;
  /** Its outer address, or null until known (a responder's peer before its first packet). */
  address: SocketAddress | null;
  /** Send it NAT keepalives (RFC 3948 §2.3) at the endpoint's interval. */
  keepalive: boolean;
  /** Follow its address when an authenticated ESP packet comes from another one (see Peer.rebind; default false). */
  rebind?: boolean;
  /** Prefixes to trap while it has no child for them (see the top of this file). */
  trapSelectors?: Prefix[];
}

/** A route's target: a child that seals, or a peer whose trap caught the packet. */
export type RouteTarget = Child | Peer;

/**
 * The table. Its methods are safe at any time, including from a completion
 * or a hook, and take effect for the next packet looked up.
 *
 * @example The IKE shell installing a child after IKE_AUTH, and rekeying it.
 * ```ts
 * const table = endpoint.table;
 * const peer = table.addPeer({ name: "gw", address: { family: 4, address: "192.0.2.7", port: 4500 }, keepalive: true });
 * const child = table.installChild(peer, {
 *   outbound: { spi: 0xc0ffee01, key, salt }, inbound: { spi: 0x5100001, key: k2, salt: s2 },
 *   esn: true, replayWindow: 1024, localSelectors: [parsePrefix("10.1.0.0/16")], remoteSelectors: [parsePrefix("10.2.0.0/16")],
 * });
 * // Rekey (RFC 7296 §2.8): the new child takes the routes; the old one opens stragglers until removed.
 * const next = table.installChild(peer, { ...newKeys, localSelectors: child.localSelectors, remoteSelectors: child.remoteSelectors });
 * table.retireOutbound(child);
 * setTimeout(() => table.removeChild(child), 2000);
 * ```
 */
export class PeerTable {
  /** Peers by id: the entries handed to the outer port name peers this way. */
  readonly peerById: (Peer | undefined)[] = [];
  readonly #freeIds: number[] = [];
  readonly #peers = new Set<Peer>();
  #routes = new PrefixTable<RouteTarget>();
  /**
   * The route table is stale: rebuilt at the next lookup. A gateway whose
   * clients come and go changes its children many times between packets
   * (a thousand road warriors connecting): each change rebuilt the whole
   * table, a cost growing with the number of clients, for lookups nobody made.
   */
  #routesStale = false;
  /** Every peer's trap selectors, each its own value: whether a child's selectors lie inside one (routedPrefixes). */
  #traps = new PrefixTable<Prefix>();
  readonly #bySpi = new Map<number, Child>();
  #serial = 0;

  constructor(
    private readonly engine: Engine,
    /** Called after every change of the routed prefixes (the TUN follows them). */
    private readonly onRoutesChanged: () => void = () => {},
  ) {}

  /** The peers, in the order they were added. */
  get peers(): Iterable<Peer> {
    return this.#peers;
  }

  /** Adds a peer (no child yet: its traps, if any, are in force at once). */
  addPeer(spec: PeerSpec): Peer {
    const trap = spec.trapSelectors ?? [];
    const peer = new Peer(spec.name, spec.keepalive, spec.rebind ?? false, trap);
    if (spec.address !== null) encodeAddress(peer.address, 0, spec.address);
    const id = this.#freeIds.pop();
    if (id === undefined) peer.id = this.peerById.push(peer) - 1;
    else {
      peer.id = id;
      this.peerById[id] = peer;
    }
    this.#peers.add(peer);
    if (trap.length > 0) {
      this.#rebuildTraps();
      this.#rebuildRoutes();
    }
    return peer;
  }

  /**
   * Removes a peer and all its children. Its packets still in flight are
   * dropped (sealed ones are not sent, opened ones not delivered); its id
   * goes to a later peer.
   */
  removePeer(peer: Peer): void {
    if (peer.removed) return;
    for (const child of [...peer.children]) this.#removeChild(child);
    peer.removed = true;
    this.#peers.delete(peer);
    this.peerById[peer.id] = undefined;
    this.#freeIds.push(peer.id);
    if (peer.trapSelectors.length > 0) this.#rebuildTraps();
    this.#rebuildRoutes();
  }

  /** Sets (or, with null, forgets) a peer's outer address; sends use it from the next packet on. */
  setPeerAddress(peer: Peer, address: SocketAddress | null): void {
    if (address === null) peer.address.fill(0);
    else encodeAddress(peer.address, 0, address);
  }

  /** A peer's outer address, or null while unknown. */
  peerAddress(peer: Peer): SocketAddress | null {
    return decodeAddress(peer.address, 0);
  }

  /**
   * Adds a child SA pair to `peer` and puts it in force at once: its inbound
   * SPI opens, its remote selectors route (replacing an earlier child's
   * routes for the same prefixes) and its policy applies to what it opens.
   * The keys in `spec` are wiped once the engine has them.
   * @throws TypeError / RangeError for a removed peer, an inbound SPI in use, or an SA the engine refuses (nothing is added then)
   */
  installChild(peer: Peer, spec: ChildSpec, durable?: DurableStart): Child {
    try {
      if (peer.removed || this.peerById[peer.id] !== peer) throw new TypeError(`peer ${peer.name} is not in this table`);
      if (this.#bySpi.has(spec.inbound.spi)) throw new RangeError(`inbound SPI 0x${spec.inbound.spi.toString(16)} is already in use`);
      const inbound = this.engine.addSa({
        direction: "in", spi: spec.inbound.spi, cipher: spec.cipher, key: spec.inbound.key, salt: spec.inbound.salt, esn: spec.esn,
        replayWindow: spec.replayWindow ?? 1024, seq: durable?.resumeIn ?? 0n,
      });
      let out: SaHandle;
      try {
        out = this.engine.addSa({ direction: "out", spi: spec.outbound.spi, cipher: spec.cipher, key: spec.outbound.key, salt: spec.outbound.salt, esn: spec.esn, seq: durable?.resumeOut ?? 0n });
      } catch (error) {
        this.engine.removeSa(inbound);
        throw error;
      }
      const label = spec.label ?? `0x${spec.inbound.spi.toString(16).padStart(8, "0")}`;
      const child = new Child(peer, label, { out, in: inbound }, [...spec.localSelectors], [...spec.remoteSelectors], ++this.#serial, durable?.reservations);
      child.outboundPending = spec.outboundPending ?? false;
      peer.children.add(child);
      this.#bySpi.set(spec.inbound.spi, child);
      this.#rebuildRoutes(child);
      return child;
    } finally {
      spec.outbound.key.fill(0);
      spec.outbound.salt.fill(0);
      spec.inbound.key.fill(0);
      spec.inbound.salt.fill(0);
    }
  }

  /**
   * A child installed with `outboundPending` takes its routes now (over an
   * older child of the same prefixes, which retireOutbound then stops).
   */
  activateOutbound(child: Child): void {
    if (!child.outboundPending || child.removed) return;
    child.outboundPending = false;
    this.#rebuildRoutes(child);
  }

  /**
   * Takes a child's routes and outbound SA away now (a rekey's old child):
   * packets it already sealed are still sent; its inbound SA goes on opening
   * until removeChild. Another child of the same prefixes takes the routes.
   */
  retireOutbound(child: Child): void {
    if (!child.outboundActive) return;
    child.outboundActive = false;
    this.engine.removeSa(child.out);
    this.#rebuildRoutes(child);
  }

  /** Removes a child: its routes, its outbound and its inbound SA (the engine wipes their keys once their packets completed). */
  removeChild(child: Child): void {
    if (child.removed) return;
    this.#removeChild(child);
    this.#rebuildRoutes(child);
  }

  #removeChild(child: Child): void {
    child.removed = true;
    if (child.outboundActive) {
      child.outboundActive = false;
      this.engine.removeSa(child.out);
    }
    this.engine.removeSa(child.in);
    if (this.#bySpi.get(child.in.spi) === child) this.#bySpi.delete(child.in.spi);
    child.peer.children.delete(child);
  }

  /** Packets and inner bytes of a child both ways (the engine's counters; readable after removal too). */
  childCounters(child: Child): ChildCounters {
    return { packetsIn: child.in.counters.packets, bytesIn: child.in.counters.bytes, packetsOut: child.out.counters.packets, bytesOut: child.out.counters.bytes };
  }

  /** The child whose inbound SA has `spi` (the ESP demux, RFC 4303 §2.1). */
  childBySpi(spi: number): Child | undefined {
    return this.#bySpi.get(spi);
  }

  /** Where a packet to the address at bytes[at…] goes: a child, a trapping peer, or nowhere. */
  route(family: 4 | 6, bytes: Uint8Array, at: number): RouteTarget | undefined {
    if (this.#routesStale) this.#buildRoutes();
    return this.#routes.lookup(family, bytes, at);
  }

  /**
   * What the TUN device must route to us: every prefix routed (children's
   * remote selectors and traps), once each, leaving out those inside another
   * one. Every route points at the same device, so a narrowed child inside
   * its peer's configured selectors (a road warrior's /32 inside the pool's
   * trap) costs no kernel route change when it comes and goes.
   */
  routedPrefixes(): Prefix[] {
    const byKey = new Map<string, Prefix>();
    for (const peer of this.#peers) for (const prefix of peer.trapSelectors) byKey.set(prefixKey(prefix), prefix);
    // A road warrior's /32 inside a trap (its pool's selectors) adds nothing: skipped before any key is
    // made, so a gateway's thousand clients cost a lookup each, not a string and a sort.
    for (const peer of this.#peers) {
      for (const child of peer.children) {
        if (!child.outboundActive || child.outboundPending) continue;
        for (const prefix of child.remoteSelectors) if (!this.#inTrap(prefix)) byKey.set(prefixKey(prefix), prefix);
      }
    }
    const widestFirst = [...byKey.values()].sort((a, b) => a.length - b.length);
    const kept = new PrefixTable<true>();
    const out: Prefix[] = [];
    for (const prefix of widestFirst) {
      if (kept.lookup(prefix.family, prefix.bytes, 0) !== undefined) continue;
      kept.add(prefix, true);
      out.push(prefix);
    }
    return out;
  }

  /**
   * The routes changed: the table is rebuilt at the next lookup, the TUN's
   * routes are told now — unless only `child` changed and every selector of
   * it lies inside a trap, which routes it already (routedPrefixes leaves it
   * out): a gateway's clients coming and going then cost the TUN nothing.
   */
  #rebuildRoutes(child?: Child): void {
    this.#routesStale = true;
    if (child !== undefined && child.remoteSelectors.every((prefix) => this.#inTrap(prefix))) return;
    this.onRoutesChanged();
  }

  #rebuildTraps(): void {
    const traps: { prefix: Prefix; value: Prefix }[] = [];
    for (const peer of this.#peers) for (const prefix of peer.trapSelectors) traps.push({ prefix, value: prefix });
    this.#traps = PrefixTable.of(traps);
  }

  /** Whether `prefix` lies inside a trap (the longest trap holding its first address is no longer than it). */
  #inTrap(prefix: Prefix): boolean {
    const trap = this.#traps.lookup(prefix.family, prefix.bytes, 0);
    return trap !== undefined && trap.length <= prefix.length;
  }

  /** Builds the route table anew and swaps it in: lookups never see half a change. */
  #buildRoutes(): void {
    this.#routesStale = false;
    const winner = new Map<string, { prefix: Prefix; target: RouteTarget; rank: number }>();
    const offer = (prefix: Prefix, target: RouteTarget, rank: number): void => {
      const key = prefixKey(prefix);
      const current = winner.get(key);
      if (current === undefined || rank > current.rank) winner.set(key, { prefix, target, rank });
    };
    for (const peer of this.#peers) {
      for (const prefix of peer.trapSelectors) offer(prefix, peer, 0);
      for (const child of peer.children) if (child.outboundActive && !child.outboundPending) for (const prefix of child.remoteSelectors) offer(prefix, child, child.serial);
    }
    this.#routes = PrefixTable.of([...winner.values()].map(({ prefix, target }) => ({ prefix, value: target })));
  }
}

/** The same network whatever its text ("10.1.0.0/16", "10.1.0.7/16"). */
function prefixKey(prefix: Prefix): string {
  return `${prefix.family}|${prefix.bytes.join(".")}/${prefix.length}`;
}
