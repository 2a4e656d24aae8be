/**
 * A child SA as the IKE core keeps it: SPIs, algorithms and selectors, but
 * no keys. Keys go to the shell in the child-up action at birth (to be
 * copied into the engine and wiped) and are never needed again: a rekey
 * draws fresh ones from SK_d (RFC 7296 §2.17).
 */
import type { IkeSa } from "./ikeSa.js";
import { deriveChildKeys } from "./keySchedule.js";
import { describeEsp, type EspAlgorithms } from "./proposals.js";
import { formatSelector, selectorPrefixes, type Selector } from "./trafficSelectors.js";
import { schedule } from "./lifetimes.js";

/**
 * installed: carrying traffic both ways.
 * rekeying: our CREATE_CHILD_SA to replace it is in flight.
 * rekeyed: replaced; its outbound SA is retired, its inbound one still
 *   opens stragglers until `lingerUntil` (make-before-break, RFC 7296 §2.8).
 * deleting: our DELETE for it is in flight.
 */
export type ChildState = "installed" | "rekeying" | "rekeyed" | "deleting";

export interface ChildSa {
  id: number;
  /** Ours: the peer puts it in the ESP packets it sends us. */
  inboundSpi: number;
  /** The peer's: we put it in the ESP packets we send. */
  outboundSpi: number;
  algorithms: EspAlgorithms;
  localTs: Selector[];
  remoteTs: Selector[];
  createdAt: number;
  state: ChildState;
  /** Whether its outbound SA seals now (a rekey responder's new child waits for the old one's DELETE). */
  outboundActive: boolean;
  /** Lifetimes (lifetimes.ts): when to rekey it, when to delete it. */
  rekeyAt?: number;
  expireAt?: number;
  /** A replaced child's inbound SA is removed at this time. */
  lingerUntil?: number;
  /** Our rekey of it in flight: its nonce, for the collision rule of §2.8.1. */
  ourRekeyNonce?: Uint8Array;
  /** The peer's rekey of it that we answered: the new child, and that exchange's nonces. */
  peerRekey?: { child: ChildSa; ni: Uint8Array; nr: Uint8Array };
}

export interface NewChild {
  inboundSpi: number;
  outboundSpi: number;
  algorithms: EspAlgorithms;
  localTs: Selector[];
  remoteTs: Selector[];
  /** The nonces of the exchange that made it (IKE_AUTH: the IKE SA's). */
  ni: Uint8Array;
  nr: Uint8Array;
  /**
   * Whether we initiated the exchange that made it. Its keys go by that
   * exchange's roles (§2.17: initiator-to-responder first), not the IKE SA's:
   * the two differ when the IKE responder starts a CREATE_CHILD_SA.
   * Default: the IKE SA's role, which IKE_AUTH's is.
   */
  initiator?: boolean;
  /** g^ir of a PFS exchange. */
  sharedSecret?: Uint8Array;
  /** Seal on it at once (default), or wait: a rekey responder keeps the old outbound SA until its DELETE arrives. */
  outbound?: boolean;
  /** The child it replaces: that one's outbound SA is retired when this one's takes over. */
  replaces?: ChildSa;
}

/**
 * Derives the child's keys (§2.17), records it in its IKE SA and hands it to
 * the shell (child-up) — before the response that completes the exchange is
 * sent, so the inbound SA exists when the peer's first packet arrives.
 */
export function establishChild(sa: IkeSa, spec: NewChild, now: number): ChildSa {
  const keys = deriveChildKeys(sa.algorithms!.prf, sa.keys!.skD, spec.algorithms.cipher, spec.ni, spec.nr, spec.sharedSecret);
  const initiator = spec.initiator ?? sa.role === "initiator";
  const inbound = initiator ? keys.responderToInitiator : keys.initiatorToResponder;
  const outbound = initiator ? keys.initiatorToResponder : keys.responderToInitiator;
  const child: ChildSa = {
    id: sa.core.nextChildId(),
    inboundSpi: spec.inboundSpi,
    outboundSpi: spec.outboundSpi,
    algorithms: spec.algorithms,
    localTs: spec.localTs,
    remoteTs: spec.remoteTs,
    createdAt: now,
    state: "installed",
    outboundActive: spec.outbound ?? true,
    ...schedule(now, sa.peer!.childLifetime, sa.core.random),
  };
  sa.children.push(child);
  sa.pendingSpis.delete(spec.inboundSpi);
  sa.core.emit({
    type: "child-up",
    child: {
      childId: child.id,
      ikeSaId: sa.id,
      peerName: sa.peerName,
      inbound: { spi: spec.inboundSpi, ...inbound },
      outbound: { spi: spec.outboundSpi, ...outbound },
      cipher: spec.algorithms.cipher,
      esn: spec.algorithms.esn,
      localPrefixes: spec.localTs.flatMap(selectorPrefixes),
      remotePrefixes: spec.remoteTs.flatMap(selectorPrefixes),
      remote: { ...sa.remote },
      keepalive: sa.natLocal,
      outboundNow: child.outboundActive,
      replaces: child.outboundActive ? spec.replaces?.id : undefined,
    },
  });
  if (child.outboundActive && spec.replaces) spec.replaces.outboundActive = false;
  sa.core.log("info", "child-up", `CHILD_SA ${sa.peerName}{${child.id}} ${spec.replaces ? `rekeyed {${spec.replaces.id}} ->` : "established"} with SPIs ${hex32(child.inboundSpi)}_i ${hex32(child.outboundSpi)}_o and TS ${child.localTs.map(formatSelector).join(" ")} === ${child.remoteTs.map(formatSelector).join(" ")}`, {
    ...sa.logFields,
    child: child.id,
    spiIn: hex32(child.inboundSpi),
    spiOut: hex32(child.outboundSpi),
    esp: describeEsp(child.algorithms),
    replaces: spec.replaces?.id,
  });
  return child;
}

/**
 * A child whose outbound SA waited (a rekey responder's) takes the traffic
 * now, and the one it replaces stops sealing.
 */
export function activateOutbound(sa: IkeSa, child: ChildSa, replaces: ChildSa | undefined): void {
  if (child.outboundActive) return;
  child.outboundActive = true;
  if (replaces) replaces.outboundActive = false;
  sa.core.emit({ type: "child-outbound", childId: child.id, ikeSaId: sa.id, replaces: replaces?.id });
}

export function hex32(spi: number): string {
  return spi.toString(16).padStart(8, "0");
}
