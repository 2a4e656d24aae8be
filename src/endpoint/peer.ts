/**
 * A peer and its child SAs as the data path sees them.
 *
 * A peer is an outer address (where its ESP and keepalives go, updated by NAT
 * rebinding) plus the child SAs negotiated with it or configured for it. A
 * child is one pair of SAs (RFC 7296 §1.3: a CHILD_SA is a pair) with its
 * traffic selectors: outbound packets whose destination lies in its remote
 * selectors are sealed with its outbound SA, and packets opened with its
 * inbound SA must come from its remote selectors (RFC 4301 §5.2). A peer may
 * have several children at once: during a rekey the new child takes the
 * outbound traffic while the old one's inbound SA still opens stragglers
 * (RFC 7296 §2.8).
 *
 * Why a file of its own: the table (peerTable.ts) makes and removes them, the
 * forwarding core (forwarder.ts) looks them up per packet, the ports read a
 * peer's address and name, and the control plane (static peers, the IKE
 * shell) holds them as handles. All of them need these shapes and nothing
 * else of each other.
 */
import type { SaHandle } from "../engine/saTable.js";
import { PrefixTable, type Prefix } from "./prefix.js";
import { ADDRESS_BYTES } from "../io/address.js";
import type { Reservation } from "./seqStore.js";

/** A peer at run time. Made by PeerTable.addPeer; treat its fields as read-only. */
export class Peer {
  /**
   * Its number in the table's peerById: what the entries handed to the
   * outer port name it by. A removed peer's number is reused.
   */
  id = -1;
  /** Its outer address, 28-byte socket address encoding (io/address.ts); family 0 while unknown. */
  readonly address = new Uint8Array(ADDRESS_BYTES);
  /** Its child SAs, oldest first. */
  readonly children = new Set<Child>();
  /**
   * When a packet of this peer last passed the ICV and replay checks, in
   * performance.now() milliseconds (0: never). Set once per opened batch, not
   * per packet; the IKE shell reads it for dead-peer detection (RFC 7296 §2.4).
   */
  lastInbound = 0;
  /** When onAcquire was last called for it (performance.now() ms), to call it at most once a second. */
  lastAcquire = Number.NEGATIVE_INFINITY;
  /** Set by removePeer: packets in flight for it are dropped, not sent. */
  removed = false;
  /** Marks the peer as seen in one pass over a batch (the forwarder's visit mark). */
  visited = 0;

  constructor(
    /** Its name: in logs, metrics and onInnerPacket. */
    readonly name: string,
    /** Whether NAT keepalives (RFC 3948 §2.3) go to it (may be changed any time). */
    public keepalive: boolean,
    /**
     * Whether an authenticated ESP packet from another address moves it
     * there (NAT rebinding; may be changed any time). RFC 7296 §2.23: the
     * side not behind a NAT follows the peer's address, the side behind one
     * does not (it would open a denial of service); a static peer's
     * configured address stays.
     */
    public rebind: boolean,
    /** Prefixes routed to it while it has no child for them: their packets are dropped and onAcquire is called. */
    readonly trapSelectors: readonly Prefix[],
  ) {}

  /** Whether its outer address is known (a responder's peer learns it from its first packet). */
  get hasAddress(): boolean {
    return this.address[0] !== 0 || this.address[1] !== 0;
  }
}

/** Sequence reservations on disk: static keys only (a negotiated key never outlives the process). */
export interface DurableSequences {
  out: Reservation;
  in: Reservation;
}

/** One child SA pair at run time. Made by PeerTable.installChild; treat its fields as read-only. */
export class Child {
  /** Whether its outbound SA still seals (false after retireOutbound or removeChild). */
  outboundActive = true;
  /**
   * Its outbound SA is in the engine but takes no traffic yet (a rekey
   * responder's new child waits for the old one's DELETE, RFC 7296 §2.8):
   * no routes until activateOutbound.
   */
  outboundPending = false;
  /** Set by removeChild: packets of it still in flight are dropped ("child-removed"), not delivered. */
  removed = false;
  /** Inner sources it may carry (its remote selectors), for the inbound policy check. */
  readonly sources = new PrefixTable<true>();
  /** Inner destinations it may carry (its local selectors); empty: any. */
  readonly destinations = new PrefixTable<true>();
  /** Marks the child as seen in one pass over a batch (the forwarder's visit mark). */
  visited = 0;
  /** Its outbound SA. Kept after it is retired, for its counters; removed from the engine then. */
  readonly out: SaHandle;
  /** Its inbound SA. */
  readonly in: SaHandle;

  constructor(
    readonly peer: Peer,
    /** For logs and metrics; the IKE shell may give one (default: the inbound SPI in hex). */
    readonly label: string,
    sas: { out: SaHandle; in: SaHandle },
    readonly localSelectors: readonly Prefix[],
    readonly remoteSelectors: readonly Prefix[],
    /** The order children were installed in: on equal prefixes the later one's route wins. */
    readonly serial: number,
    /** Static peers only: the reservations that must stay ahead of its counters. */
    readonly durable: DurableSequences | undefined,
  ) {
    this.out = sas.out;
    this.in = sas.in;
    for (const prefix of remoteSelectors) this.sources.add(prefix, true);
    for (const prefix of localSelectors) this.destinations.add(prefix, true);
  }
}

/** Packets and inner bytes of a child, both ways, read from the engine's SA counters. */
export interface ChildCounters {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
}
