/**
 * A peer as the data path sees it: its SAs, its outer address, the inner
 * sources it may send from, and what identifies it across a reload.
 *
 * Why a file of its own: the control plane (endpoint.ts) makes and replaces
 * peers, the forwarding core (forwarder.ts) looks them up per packet, and the
 * ports (the TUN, the sockets, the application port) read their addresses and
 * names. All of them need this one shape and nothing else of each other.
 */
import type { SaHandle } from "../engine/saTable.js";
import type { PeerConfig } from "./config.js";
import { PrefixTable } from "./prefix.js";
import { loadKeymat, loadSecret, deriveSaKeys, type SaKeys } from "./keys.js";
import type { Reservation } from "./seqStore.js";

/** A peer at run time. */
export interface Peer {
  /** Its number in the forwarder's peerById, which in-flight packets refer to; a removed peer's number is reused. */
  id: number;
  /** What identifies its settings and keys: an unchanged peer survives a reload. */
  signature: string;
  /** The sequence stores' names, which carry the keys' fingerprints. */
  outId: string;
  inId: string;
  config: PeerConfig;
  out: SaHandle;
  in: SaHandle;
  outReservation: Reservation;
  inReservation: Reservation;
  /** Its outer address, 28-byte socket address encoding (io/address.ts). */
  address: Uint8Array;
  /** Inner sources it may send from. */
  selectors: PrefixTable<true>;
  /** Marks the peer as seen in one pass over a batch (Forwarder's visit mark). */
  visited: number;
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
    const keys = { out: deriveSaKeys(secret, peer.spiOut, peer.spiIn), in: deriveSaKeys(secret, peer.spiIn, peer.spiOut) };
    secret.fill(0);
    return keys;
  }
  return { out: loadKeymat(peer.out!.keymat), in: loadKeymat(peer.in!.keymat) };
}

/** What must match for a reload to keep a peer's SAs: every setting and the keys' fingerprints. */
export function peerSignature(peer: PeerConfig, outId: string, inId: string): string {
  return JSON.stringify([peer.address, peer.port, peer.selectors.map((p) => p.text), peer.esn, peer.replayWindow, outId, inId]);
}
