/**
 * The two sides of the endpoint as the forwarding core sees them.
 *
 *   inner port ──packets──▶ core (route, seal) ──entries──▶ outer port
 *   inner port ◀──entries── core (policy, open) ◀──packets── outer port
 *
 * Why ports: the endpoint runs on two I/O paths (DESIGN.md, "I/O"). On the
 * native path the inner side is a TUN device and the outer side a UDP socket
 * read and written in batches by the addon (tunPort.ts, udpPort.ts); on the
 * portable path the outer side is node:dgram and there is no TUN, so the
 * inner side is the embedding application (dgramPort.ts, appPort.ts). The
 * checks in between (longest-prefix routing, the SPI demux, the inner-source
 * policy, sequence reservations, counters) must be the same on both, so they
 * live once in forwarder.ts and the ports only move bytes.
 *
 * Ports hand packets to the core already sitting in engine slots and take
 * them back as `Entries`: byte offsets into the engine's memory, so the native
 * path stays zero-copy. Entries are lent for the duration of one call; a
 * port that needs the bytes later copies them.
 */
import type { TunOffloadStats } from "../io/native.js";
import type { SocketAddress } from "../io/address.js";
import type { Prefix } from "./prefix.js";

/**
 * Packets handed from the core to a port: entry i is
 * `engine.bytes[offsets[i], offsets[i] + lengths[i])`, belonging to the peer
 * `peerById[peers[i]]`. Valid only during the call it is passed to.
 */
export interface Entries {
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly peers: Int32Array;
}

/** What a port must do, whichever side it is on. */
interface Port {
  /** Starts reading (the core has everything set up). */
  start(): void;
  /**
   * Stops reading until resume(): the engine has no slot or batch to spare,
   * or a reload holds the ports. A port that gathers packets across event
   * loop turns submits them here, so that engine.idle() covers every packet
   * it took (Forwarder.hold).
   */
  pause(): void;
  resume(): void;
  /** Stops reading for good and hands over what it holds; sending still works until close(). */
  stop(): void;
  /** Releases the device or socket. */
  close(): Promise<void> | void;
}

/** The side plain packets come from and go to: a TUN device or the application. */
export interface InnerPort extends Port {
  /** Delivers opened packets that passed the policy check; drops are the port's to count. */
  write(entries: Entries, count: number): void;
  /**
   * The prefixes routed to peers changed (a child installed or removed, a
   * reload): whatever routes packets into this port follows, without
   * blocking (a TUN device's kernel routes are updated in the background).
   */
  setRoutes(prefixes: readonly Prefix[]): void;
  /** Resolves once the routes asked for so far are in place (at once where there are none to keep). */
  routesSettled?(): Promise<void>;
  /** A TUN device's offload counters (absent or null where there are none). */
  offloadStats?(): TunOffloadStats | null;
}

/** The side ESP in UDP (RFC 3948) comes from and goes to. */
export interface OuterPort extends Port {
  /** The bound UDP port. */
  readonly port: number;
  /** Batch regions one read may need: the inner port leaves that many free for it. */
  readonly batchesPerRead: number;
  /** Sends sealed packets, in order, each to its peer's address; what cannot be sent is the port's to count. */
  send(entries: Entries, count: number): void;
  /** Sends NAT keepalives (one-byte datagrams) to the entries' peers; returns how many were sent. */
  sendKeepalives(entries: Entries, count: number): number;
  /**
   * Sends one datagram (already carrying its non-ESP marker when it needs
   * one) to any address. Never blocks: false when the socket cannot take it
   * now (counted "control-send-full") or it failed ("control-send-error").
   */
  sendControl(datagram: Uint8Array, to: SocketAddress): boolean;
  /** Datagrams the kernel dropped because the socket's receive buffer was full (absent or null where unknown). */
  receiveOverflows?(): number | null;
}
