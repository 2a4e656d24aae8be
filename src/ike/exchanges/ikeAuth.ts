/**
 * IKE_AUTH (RFC 7296 §1.2, §2.15): identities, PSK authentication, and the
 * first child SA, all inside the SK payload.
 *
 *   Initiator                         Responder
 *   HDR, SK {IDi, [N(INITIAL_CONTACT)], [IDr], AUTH,
 *            SAi2, TSi, TSr}  -->
 *                             <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
 *                             <--  HDR, SK {IDr, AUTH, N(NO_PROPOSAL_CHOSEN | TS_UNACCEPTABLE)}
 *                             <--  HDR, SK {N(AUTHENTICATION_FAILED)}
 *
 * Why the child can fail while the IKE SA stands: §1.2 and strongSwan keep
 * an authenticated IKE SA when only its first child SA is refused; it still
 * answers liveness checks and deletes. A failed authentication ends the IKE
 * SA on both sides; the initiator says so in an INFORMATIONAL (§2.21.2) so
 * the responder logs it too.
 */
import { AuthMethod, Exchange, FIRST_STATUS_NOTIFY, Notify, Payload, nameOf } from "../constants.js";
import { findNotify, findPayload, notifies, notify, payloadBody, type IdPayload, type IkePayload } from "../codec/payloads.js";
import { authEquals, pskAuth, signedOctets } from "../auth.js";
import { establishChild } from "../childSa.js";
import { createChild } from "./createChildSa.js";
import { formatIdentity, formatPattern, identityMatches, sameIdentity, type Identity } from "../identity.js";
import { acceptedEsp, chooseEsp, chooseIke, chosenEspToWire, chosenIkeToWire, describeOffered, espProposalsToWire } from "../proposals.js";
import { enforceable, narrow, selectorFromWire, selectorToWire, within, formatSelector, type Selector } from "../trafficSelectors.js";
import type { IkePeerConfig } from "../config.js";
import type { Answer, IkeSa } from "../ikeSa.js";
import type { WireSelector } from "../codec/payloads.js";

function idPayload(type: typeof Payload.IDi | typeof Payload.IDr, id: Identity): IdPayload {
  return { type, idType: id.type, data: id.data };
}

function tsPayloads(tsi: readonly Selector[], tsr: readonly Selector[]): IkePayload[] {
  return [
    { type: Payload.TSi, selectors: tsi.map(selectorToWire) },
    { type: Payload.TSr, selectors: tsr.map(selectorToWire) },
  ];
}

function fromWire(selectors: readonly WireSelector[]): Selector[] {
  return selectors.map(selectorFromWire).filter((s): s is Selector => s !== null);
}

/** Our AUTH for the PSK of `peer` (§2.15); the PSK is wiped at once. */
function ourAuth(sa: IkeSa, psk: Uint8Array, idBody: Uint8Array): Uint8Array {
  const initiator = sa.role === "initiator";
  const octets = signedOctets(sa.algorithms!.prf, initiator ? sa.initRequest! : sa.initResponse!, initiator ? sa.nr! : sa.ni!, initiator ? sa.keys!.skPi : sa.keys!.skPr, idBody);
  const auth = pskAuth(sa.algorithms!.prf, psk, octets);
  psk.fill(0);
  return auth;
}

/** Whether the peer's AUTH verifies with the PSK (wiped). */
function peerAuthVerifies(sa: IkeSa, psk: Uint8Array, idBody: Uint8Array, received: Uint8Array): boolean {
  const initiator = sa.role === "initiator";
  const octets = signedOctets(sa.algorithms!.prf, initiator ? sa.initResponse! : sa.initRequest!, initiator ? sa.ni! : sa.nr!, initiator ? sa.keys!.skPr : sa.keys!.skPi, idBody);
  const expected = pskAuth(sa.algorithms!.prf, psk, octets);
  psk.fill(0);
  const ok = authEquals(expected, received);
  expected.fill(0);
  return ok;
}

// ---------------------------------------------------------------- initiator

/** The IKE_AUTH request, right after IKE_SA_INIT. */
export function sendAuthRequest(sa: IkeSa, now: number): void {
  const core = sa.core;
  const peer = sa.peer!;
  const remoteId = peer.remoteId.kind === "exact" ? peer.remoteId.id : undefined;
  const psk = peer.psk(remoteId);
  if (psk === undefined) return core.fail(sa, "NO_PSK", `no pre-shared key for ${formatPattern(peer.remoteId)}`);
  sa.localId = peer.localId;
  const idi = idPayload(Payload.IDi, peer.localId);
  const payloads: IkePayload[] = [idi];
  if (!core.hasEstablished(peer.name)) payloads.push(notify(Notify.INITIAL_CONTACT));
  if (remoteId) payloads.push(idPayload(Payload.IDr, remoteId));
  payloads.push({ type: Payload.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: ourAuth(sa, psk, payloadBody(idi)) });
  const inboundSpi = core.allocateChildSpi(sa);
  payloads.push({ type: Payload.SA, proposals: espProposalsToWire(peer.espProposals, inboundSpi, false) }, ...tsPayloads(peer.localTs, peer.remoteTs));
  sa.state = "authenticating";
  sa.request(Exchange.IKE_AUTH, payloads, (response) => onAuthResponse(sa, response, inboundSpi), now);
}

function onAuthResponse(sa: IkeSa, payloads: IkePayload[], inboundSpi: number): void {
  const core = sa.core;
  const peer = sa.peer!;
  const now = core.now;
  if (findNotify(payloads, Notify.AUTHENTICATION_FAILED)) return core.fail(sa, "AUTHENTICATION_FAILED", "the responder refused our authentication (wrong PSK or unknown ID?)");
  const idr = findPayload(payloads, Payload.IDr);
  const auth = findPayload(payloads, Payload.AUTH);
  if (!idr || !auth) {
    const error = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
    return core.fail(sa, error ? nameOf(Notify, error.notifyType) : "INVALID_SYNTAX", error ? `the responder refused IKE_AUTH with ${nameOf(Notify, error.notifyType)}` : "the IKE_AUTH response lacks IDr or AUTH");
  }
  const remoteId: Identity = { type: idr.idType, data: idr.data.slice() };
  if (!identityMatches(peer.remoteId, remoteId)) return authFailed(sa, `the responder's ID ${formatIdentity(remoteId)} is not ${formatPattern(peer.remoteId)}`);
  if (auth.method !== AuthMethod.SHARED_KEY_MIC) return authFailed(sa, `the responder authenticates with method ${auth.method}, not a PSK`);
  const psk = peer.psk(remoteId);
  if (psk === undefined || !peerAuthVerifies(sa, psk, idr.body!, auth.data)) return authFailed(sa, `the responder's AUTH does not verify with the PSK for ${formatIdentity(remoteId)} (wrong PSK?)`);
  sa.remoteId = remoteId;
  core.established(sa);
  const refusal = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
  if (refusal) return core.childFailed(sa, nameOf(Notify, refusal.notifyType), `the responder refused the child SA with ${nameOf(Notify, refusal.notifyType)}`);
  const sa2 = findPayload(payloads, Payload.SA);
  const tsi = findPayload(payloads, Payload.TSi);
  const tsr = findPayload(payloads, Payload.TSr);
  if (!sa2 || !tsi || !tsr) return core.childFailed(sa, "INVALID_SYNTAX", "the IKE_AUTH response has no child SA (SA, TSi, TSr)");
  const accepted = acceptedEsp(peer.espProposals, sa2.proposals);
  if (accepted === null) return deleteIke(sa, "NO_PROPOSAL_CHOSEN", `the responder chose an ESP proposal we did not offer: ${describeOffered(sa2.proposals)}`);
  const localTs = fromWire(tsi.selectors);
  const remoteTs = fromWire(tsr.selectors);
  if (localTs.length === 0 || remoteTs.length === 0 || localTs.length !== tsi.selectors.length || remoteTs.length !== tsr.selectors.length
    || !localTs.every(enforceable) || !remoteTs.every(enforceable) || !within(localTs, peer.localTs) || !within(remoteTs, peer.remoteTs)) {
    return deleteIke(sa, "TS_UNACCEPTABLE", `the responder narrowed the traffic selectors to ${[...localTs, ...remoteTs].map(formatSelector).join(" ")}, outside what we asked for or restricted to protocols or ports`);
  }
  establishChild(sa, { inboundSpi, outboundSpi: accepted.peerSpi, algorithms: accepted.algorithms, localTs, remoteTs, ni: sa.ni!, nr: sa.nr! }, now);
  // §1.3.1: the other configured selector pairs, each a child SA of its own.
  for (const more of peer.moreChildren) createChild(sa, more.localTs, more.remoteTs);
}

/** We refuse the responder's authentication: tell it (§2.21.2), then forget the SA. */
function authFailed(sa: IkeSa, reason: string): void {
  const core = sa.core;
  sa.request(Exchange.INFORMATIONAL, [notify(Notify.AUTHENTICATION_FAILED)], () => undefined, core.now);
  core.fail(sa, "AUTHENTICATION_FAILED", reason);
}

/** A protocol error after authentication: the IKE SA is deleted the regular way. */
function deleteIke(sa: IkeSa, reason: string, detail: string): void {
  sa.core.childFailed(sa, reason, detail);
  sa.core.terminateSa(sa, `child SA refused: ${reason}`);
}

// ---------------------------------------------------------------- responder

/** Picks the peer config for an initiator's IDi (and IDr, when it names one) among those its address allowed. */
function matchPeer(sa: IkeSa, remoteId: Identity, ourId: Identity | undefined): IkePeerConfig | undefined {
  const chosen = chosenIkeToWire(sa.algorithms!, 1);
  return sa.candidates.find((peer) => identityMatches(peer.remoteId, remoteId)
    && (ourId === undefined || sameIdentity(peer.localId, ourId))
    && chooseIke(peer.ikeProposals, [chosen]) !== null);
}

/** The responder's side of IKE_AUTH. */
export function answerAuth(sa: IkeSa, payloads: IkePayload[]): Answer {
  const core = sa.core;
  const now = core.now;
  const refuse = (reason: string, detail: string): Answer => ({
    payloads: [notify(Notify.AUTHENTICATION_FAILED)],
    after: () => core.fail(sa, reason, detail),
  });
  if (sa.state !== "half-open") return { payloads: [notify(Notify.INVALID_SYNTAX)] };
  const idi = findPayload(payloads, Payload.IDi);
  const auth = findPayload(payloads, Payload.AUTH);
  if (!idi || !auth) return refuse("INVALID_SYNTAX", "IKE_AUTH without IDi or AUTH (EAP and multiple authentication are not supported)");
  const remoteId: Identity = { type: idi.idType, data: idi.data.slice() };
  const idr = findPayload(payloads, Payload.IDr);
  const ourId = idr ? { type: idr.idType, data: idr.data } : undefined;
  const peer = matchPeer(sa, remoteId, ourId);
  if (peer === undefined) {
    return refuse("AUTHENTICATION_FAILED", `no peer config matches ${formatIdentity(remoteId)}${ourId ? ` asking for ${formatIdentity(ourId)}` : ""} from ${sa.remote.address}`);
  }
  sa.peer = peer;
  sa.remoteId = remoteId;
  if (auth.method !== AuthMethod.SHARED_KEY_MIC) return refuse("AUTHENTICATION_FAILED", `${formatIdentity(remoteId)} authenticates with method ${auth.method}; only PSK is configured`);
  const psk = peer.psk(remoteId);
  if (psk === undefined) return refuse("AUTHENTICATION_FAILED", `no pre-shared key for ${formatIdentity(remoteId)}`);
  if (!peerAuthVerifies(sa, psk, idi.body!, auth.data)) return refuse("AUTHENTICATION_FAILED", `the AUTH of ${formatIdentity(remoteId)} does not verify (wrong PSK?)`);
  const ownPsk = peer.psk(remoteId)!;
  sa.localId = peer.localId;
  const ownId = idPayload(Payload.IDr, peer.localId);
  const answer: IkePayload[] = [ownId, { type: Payload.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: ourAuth(sa, ownPsk, payloadBody(ownId)) }];
  if (findNotify(payloads, Notify.INITIAL_CONTACT)) core.initialContact(sa);
  core.established(sa);
  answer.push(...answerFirstChild(sa, peer, payloads, now));
  return { payloads: answer };
}

/** The first child SA: ESP proposal, narrowed selectors, keys; or the notify that refuses it. */
function answerFirstChild(sa: IkeSa, peer: IkePeerConfig, payloads: IkePayload[], now: number): IkePayload[] {
  const core = sa.core;
  const sa2 = findPayload(payloads, Payload.SA);
  const tsi = findPayload(payloads, Payload.TSi);
  const tsr = findPayload(payloads, Payload.TSr);
  if (!sa2 || !tsi || !tsr) {
    core.childFailed(sa, "NO_CHILD", "IKE_AUTH without a child SA (childless IKE SA)");
    return [];
  }
  const chosen = chooseEsp(peer.espProposals, sa2.proposals);
  if (chosen === null) {
    core.childFailed(sa, "NO_PROPOSAL_CHOSEN", `no acceptable ESP proposal among ${describeOffered(sa2.proposals)}`);
    return [notify(Notify.NO_PROPOSAL_CHOSEN)];
  }
  const remoteTs = narrow(fromWire(tsi.selectors), peer.remoteTs);
  const localTs = narrow(fromWire(tsr.selectors), peer.localTs);
  if (remoteTs.length === 0 || localTs.length === 0) {
    core.childFailed(sa, "TS_UNACCEPTABLE", `traffic selectors ${fromWire(tsr.selectors).map(formatSelector).join(" ")} === ${fromWire(tsi.selectors).map(formatSelector).join(" ")} unacceptable`);
    return [notify(Notify.TS_UNACCEPTABLE)];
  }
  const inboundSpi = core.allocateChildSpi(sa);
  establishChild(sa, { inboundSpi, outboundSpi: chosen.peerSpi, algorithms: chosen.algorithms, localTs, remoteTs, ni: sa.ni!, nr: sa.nr! }, now);
  return [{ type: Payload.SA, proposals: [chosenEspToWire(chosen.algorithms, chosen.number, inboundSpi)] }, ...tsPayloads(remoteTs, localTs)];
}
