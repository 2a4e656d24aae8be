/**
 * What the IKE core asks of its shell: datagrams to send, child SAs to
 * install and remove, address changes, and events to log and count.
 *
 * Buffer contract: every Uint8Array in an action is the shell's to keep or
 * wipe; the core keeps no reference to child SA keys (it derives new ones
 * from SK_d when it needs them) and the shell must wipe them once the
 * engine has copied them.
 */
import type { Endpoint } from "./natDetection.js";
import type { Cipher } from "./proposals.js";

/** One direction of a child SA for the engine. */
export interface ChildSaDirection {
  spi: number;
  key: Uint8Array;
  salt: Uint8Array;
}

export interface ChildSaInstall {
  /** Unique in the core; the handle for child-down. */
  childId: number;
  ikeSaId: number;
  peerName: string;
  inbound: ChildSaDirection;
  outbound: ChildSaDirection;
  cipher: Cipher;
  esn: boolean;
  /** Negotiated selectors as prefixes ("10.77.1.0/24"): our side, and the peer's (routes and inbound policy). */
  localPrefixes: string[];
  remotePrefixes: string[];
  /** Where ESP goes: the peer's NAT-T address and port. */
  remote: Endpoint;
  /** A NAT is in front of us: send NAT keepalives (RFC 3948 §4). */
  keepalive: boolean;
  /** Its outbound SA seals at once; false: a rekey responder's, which waits for child-outbound. */
  outboundNow: boolean;
  /** When `outboundNow`: the child it replaces, whose outbound SA stops now (its inbound stays until child-down). */
  replaces?: number;
}

export type IkeAction =
  /** Send `datagram` to `remote`; `natT`: from the NAT-T socket with the non-ESP marker (RFC 3948 §2.2). */
  | { type: "send"; datagram: Uint8Array; remote: Endpoint; natT: boolean }
  | { type: "child-up"; child: ChildSaInstall }
  | { type: "child-down"; childId: number; ikeSaId: number; peerName: string; reason: string }
  /** A child's outbound SA takes the traffic now; `replaces`' outbound SA stops (RFC 7296 §2.8, make-before-break). */
  | { type: "child-outbound"; childId: number; ikeSaId: number; replaces?: number }
  /** The IKE SA was rekeyed (§2.18): its children, and the peer, now belong to the new one. */
  | { type: "ike-rekeyed"; oldIkeSaId: number; newIkeSaId: number; peerName: string }
  /** The peer moved (NAT rebinding seen on an authenticated IKE message): ESP follows. */
  | { type: "address"; ikeSaId: number; peerName: string; remote: Endpoint }
  /** The round trip of a liveness check that was answered without retransmission. */
  | { type: "liveness"; ikeSaId: number; peerName: string; rttMs: number }
  | { type: "log"; level: "debug" | "info" | "warn"; event: string; message: string; fields: Record<string, string | number | boolean | undefined> };
