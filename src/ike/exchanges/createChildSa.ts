/**
 * CREATE_CHILD_SA (RFC 7296 §1.3): rekeying a child SA, creating another
 * one, and rekeying the IKE SA, in both roles, with the collision rules of
 * §2.8.1, §2.8.2 and §2.25.
 *
 *   rekey child:  HDR, SK {N(REKEY_SA), SA, Ni, [KEi], TSi, TSr}  -->  <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}
 *   new child:    HDR, SK {SA, Ni, [KEi], TSi, TSr}               -->  <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}
 *   rekey IKE:    HDR, SK {SA, Ni, KEi}                           -->  <--  HDR, SK {SA, Nr, KEr}
 *
 * Make-before-break (§2.8): the responder's new inbound SA is in the data
 * plane before its response leaves, its new outbound SA waits for the
 * DELETE of the old child (until then the initiator may not have the new
 * inbound SA yet); the initiator switches outbound when the response
 * arrives and deletes the old child; either side keeps the old inbound SA
 * for a few seconds (rekeyLingerMs) to open stragglers, then removes it.
 *
 * Collisions: when both sides rekey the same SA at once, each answers the
 * other normally; the SA made in the exchange with the lowest of the four
 * nonces is redundant and is deleted by whoever initiated that exchange,
 * and the other exchange's initiator deletes the old SA. A rekey request for
 * an SA being closed gets TEMPORARY_FAILURE, for one that is gone
 * CHILD_SA_NOT_FOUND; child requests during an IKE rekey, and an IKE rekey
 * during child work, get TEMPORARY_FAILURE (§2.25).
 */
import { Exchange, FIRST_STATUS_NOTIFY, Notify, Payload, Protocol, nameOf } from "../constants.js";
import { findNotify, findPayload, notifies, notify, type IkePayload } from "../codec/payloads.js";
import { createKeyExchange, KeyExchangeError, type GroupId, type KeyExchange } from "../crypto/keyExchange.js";
import { activateOutbound, establishChild, hex32, type ChildSa } from "../childSa.js";
import { deriveRekeyedIkeKeys } from "../keySchedule.js";
import { acceptedEsp, acceptedIke, chooseEsp, chooseIke, chosenEspToWire, chosenIkeToWire, describeOffered, espProposalsToWire, groupName, ikeProposalsToWire, spiFromBytes, spiToBytes, type EspProposal, type IkeAlgorithms } from "../proposals.js";
import { enforceable, formatSelector, narrow, selectorFromWire, selectorToWire, within, type Selector } from "../trafficSelectors.js";
import type { Answer, IkeSa } from "../ikeSa.js";
import type { WireSelector } from "../codec/payloads.js";

const NONCE_BYTES = 32;
/** TEMPORARY_FAILURE: wait before trying again (§2.25: never at once), a random 2 to 10 s. */
const RETRY_MIN_MS = 2000;
const RETRY_SPREAD_MS = 8000;

/** Lexicographic order of two nonces (shorter first on a common prefix), for §2.8.1's "lowest nonce". */
export function compareNonces(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Whether the lowest of the four nonces is one of `ours` (then our exchange's SA is the redundant one, §2.8.1). */
export function oursIsRedundant(ours: readonly Uint8Array[], theirs: readonly Uint8Array[]): boolean {
  const lowest = (list: readonly Uint8Array[]): Uint8Array => list.reduce((a, b) => (compareNonces(a, b) <= 0 ? a : b));
  return compareNonces(lowest(ours), lowest(theirs)) < 0;
}

function fromWire(selectors: readonly WireSelector[]): Selector[] {
  return selectors.map(selectorFromWire).filter((s): s is Selector => s !== null);
}

/** The PFS group our ESP proposals ask for (the first one's first group), if any. */
function pfsGroup(proposals: readonly EspProposal[]): GroupId | undefined {
  return proposals.find((p) => p.groups.length > 0)?.groups[0];
}

function retryDelay(sa: IkeSa): number {
  const r = sa.core.random(2);
  return RETRY_MIN_MS + (((r[0]! << 8) | r[1]!) / 65536) * RETRY_SPREAD_MS;
}

function deleteChildren(sa: IkeSa, spis: number[]): void {
  sa.request(Exchange.INFORMATIONAL, [{ type: Payload.DELETE, protocol: Protocol.ESP, spiSize: 4, spis: spis.map(spiToBytes) }], () => undefined, sa.core.now);
}

// ---------------------------------------------------------------- rekeying a child SA, as initiator

/** Starts replacing `child` (its lifetime came, or `sluice rekey`). */
export function rekeyChild(sa: IkeSa, child: ChildSa, group = pfsGroup(sa.peer!.espProposals)): void {
  const core = sa.core;
  if (child.state !== "installed" || sa.state !== "established") return;
  const ni = core.random(NONCE_BYTES);
  const ke = group === undefined ? undefined : createKeyExchange(group, core.random);
  const newSpi = core.allocateChildSpi(sa);
  child.state = "rekeying";
  child.ourRekeyNonce = ni;
  child.rekeyAt = undefined;
  const payloads: IkePayload[] = [
    notify(Notify.REKEY_SA, new Uint8Array(0), Protocol.ESP, spiToBytes(child.inboundSpi)),
    { type: Payload.SA, proposals: espProposalsToWire(sa.peer!.espProposals, newSpi, ke !== undefined) },
    { type: Payload.NONCE, data: ni },
  ];
  if (ke) payloads.push({ type: Payload.KE, group: ke.group, data: ke.publicValue });
  payloads.push({ type: Payload.TSi, selectors: child.localTs.map(selectorToWire) }, { type: Payload.TSr, selectors: child.remoteTs.map(selectorToWire) });
  core.log("info", "child-rekeying", `rekeying CHILD_SA ${sa.peerName}{${child.id}}${ke ? ` with PFS (${groupName(ke.group)})` : ""}`, { ...sa.logFields, child: child.id });
  sa.request(Exchange.CREATE_CHILD_SA, payloads, (response) => {
    try {
      onRekeyResponse(sa, child, response, ni, ke, newSpi);
    } finally {
      ke?.wipe();
    }
  }, core.now);
}

function onRekeyResponse(sa: IkeSa, old: ChildSa, payloads: IkePayload[], ni: Uint8Array, ke: KeyExchange | undefined, newSpi: number): void {
  const core = sa.core;
  const now = core.now;
  const stillOurs = old.state === "rekeying" && sa.children.includes(old);
  if (stillOurs) old.state = "installed";
  old.ourRekeyNonce = undefined;
  const error = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
  if (error) {
    core.releaseChildSpi(sa, newSpi);
    const name = nameOf(Notify, error.notifyType);
    if (!stillOurs) return;
    if (error.notifyType === Notify.CHILD_SA_NOT_FOUND) {
      // §2.25: the peer has no such SA any more: ours goes quietly.
      return core.removeChild(sa, old, "the peer has no such CHILD_SA (CHILD_SA_NOT_FOUND)");
    }
    if (error.notifyType === Notify.INVALID_KE_PAYLOAD && error.data.length === 2) {
      const wanted = ((error.data[0]! << 8) | error.data[1]!) as GroupId;
      if (sa.peer!.espProposals.some((p) => p.groups.includes(wanted)) && wanted !== ke?.group) {
        core.log("info", "child-rekey-invalid-ke", `${sa.peerName}: the peer asks for ${groupName(wanted)} for PFS; retrying`, sa.logFields);
        return rekeyChild(sa, old, wanted);
      }
    }
    old.rekeyAt = now + (error.notifyType === Notify.TEMPORARY_FAILURE ? retryDelay(sa) : 60_000);
    core.log(error.notifyType === Notify.TEMPORARY_FAILURE ? "info" : "warn", "child-rekey-failed", `rekeying CHILD_SA ${sa.peerName}{${old.id}} refused with ${name}; trying again later`, { ...sa.logFields, child: old.id, reason: name });
    return;
  }
  const sa2 = findPayload(payloads, Payload.SA);
  const nonce = findPayload(payloads, Payload.NONCE);
  const kePayload = findPayload(payloads, Payload.KE);
  const tsi = findPayload(payloads, Payload.TSi);
  const tsr = findPayload(payloads, Payload.TSr);
  const accepted = sa2 ? acceptedEsp(sa.peer!.espProposals, sa2.proposals, ke?.group) : null;
  const localTs = tsi ? fromWire(tsi.selectors) : [];
  const remoteTs = tsr ? fromWire(tsr.selectors) : [];
  // A rekey keeps the old child's selectors (§2.8: it SHOULD NOT change them); anything outside them is refused.
  const tsOk = localTs.length > 0 && remoteTs.length > 0 && localTs.every(enforceable) && remoteTs.every(enforceable)
    && within(localTs, old.localTs) && within(remoteTs, old.remoteTs);
  let shared: Uint8Array | undefined;
  let problem = !nonce ? "no Nonce" : accepted === null ? `an ESP proposal we did not offer: ${sa2 ? describeOffered(sa2.proposals) : "(none)"}` : !tsOk ? "traffic selectors outside ours" : undefined;
  if (problem === undefined && ke) {
    if (!kePayload || kePayload.group !== ke.group) problem = "no KE payload of our PFS group";
    else {
      try {
        shared = ke.sharedSecret(kePayload.data);
      } catch (error) {
        if (!(error instanceof KeyExchangeError)) throw error;
        problem = `an invalid KE value: ${error.message}`;
      }
    }
  }
  if (problem !== undefined || !stillOurs) {
    // The peer made the SA (its SPI is in the answer): delete it on its side. Ours never existed.
    core.releaseChildSpi(sa, newSpi);
    if (accepted) deleteChildren(sa, [newSpi]);
    if (problem !== undefined) {
      core.log("warn", "child-rekey-failed", `rekeying CHILD_SA ${sa.peerName}{${old.id}}: the answer has ${problem}`, { ...sa.logFields, child: old.id });
      if (stillOurs) old.rekeyAt = now + 60_000;
    }
    shared?.fill(0);
    return;
  }
  const nr = nonce!.data.slice();
  const collision = old.peerRekey;
  if (collision && oursIsRedundant([ni, nr], [collision.ni, collision.nr])) {
    // §2.8.1: our exchange has the lowest nonce: the SA it made is redundant, and ours to delete.
    // The peer's new child survives; the peer deletes the old one, and its DELETE switches us over.
    core.releaseChildSpi(sa, newSpi);
    deleteChildren(sa, [newSpi]);
    shared?.fill(0);
    old.state = "rekeyed";
    core.log("info", "child-rekey-collision", `CHILD_SA ${sa.peerName}{${old.id}} was rekeyed by both sides; the peer's {${collision.child.id}} survives`, { ...sa.logFields, child: old.id });
    return;
  }
  const child = establishChild(sa, { inboundSpi: newSpi, outboundSpi: accepted!.peerSpi, algorithms: accepted!.algorithms, localTs, remoteTs, ni, nr, sharedSecret: shared, initiator: true, replaces: old }, now);
  shared?.fill(0);
  if (collision) {
    // Ours survives: the peer deletes its redundant child, which never took our traffic. A peer that never
    // does (it gave its rekey up) leaves it to us: it is deleted after the half-open time, never rekeyed.
    core.log("info", "child-rekey-collision", `CHILD_SA ${sa.peerName}{${old.id}} was rekeyed by both sides; ours {${child.id}} survives`, { ...sa.logFields, child: old.id });
    if (sa.children.includes(collision.child)) {
      collision.child.rekeyAt = undefined;
      collision.child.expireAt = now + core.halfOpenTimeoutMs;
    }
  }
  retire(sa, old, child);
  deleteChildren(sa, [old.inboundSpi]);
}

/**
 * A replaced child: its outbound SA stopped; its inbound SA opens stragglers
 * until the linger time, then goes. Logged once per completed rekey, on
 * either side (what an operator, and the interop tests, count as a rekey).
 */
export function retire(sa: IkeSa, old: ChildSa, successor: ChildSa): void {
  sa.core.log("info", "child-rekeyed", `CHILD_SA ${sa.peerName}{${old.id}} rekeyed into {${successor.id}} with SPIs ${hex32(successor.inboundSpi)}_i ${hex32(successor.outboundSpi)}_o`, {
    ...sa.logFields, child: old.id, successor: successor.id, spiIn: hex32(successor.inboundSpi), spiOut: hex32(successor.outboundSpi),
  });
  old.state = "rekeyed";
  old.outboundActive = false;
  old.lingerUntil = sa.core.now + sa.core.rekeyLingerMs;
  old.rekeyAt = undefined;
  old.expireAt = undefined;
}

// ---------------------------------------------------------------- another child SA, as initiator

/** Asks for one more child SA with its own selectors (§1.3.1), once the IKE SA is up. */
export function createChild(sa: IkeSa, localTs: Selector[], remoteTs: Selector[], group = pfsGroup(sa.peer!.espProposals)): void {
  const core = sa.core;
  if (sa.state !== "established") return;
  const ni = core.random(NONCE_BYTES);
  const ke = group === undefined ? undefined : createKeyExchange(group, core.random);
  const newSpi = core.allocateChildSpi(sa);
  const payloads: IkePayload[] = [
    { type: Payload.SA, proposals: espProposalsToWire(sa.peer!.espProposals, newSpi, ke !== undefined) },
    { type: Payload.NONCE, data: ni },
  ];
  if (ke) payloads.push({ type: Payload.KE, group: ke.group, data: ke.publicValue });
  payloads.push({ type: Payload.TSi, selectors: localTs.map(selectorToWire) }, { type: Payload.TSr, selectors: remoteTs.map(selectorToWire) });
  sa.request(Exchange.CREATE_CHILD_SA, payloads, (response) => {
    try {
      onCreateResponse(sa, response, ni, ke, newSpi, localTs, remoteTs);
    } finally {
      ke?.wipe();
    }
  }, core.now);
}

function onCreateResponse(sa: IkeSa, payloads: IkePayload[], ni: Uint8Array, ke: KeyExchange | undefined, newSpi: number, offeredLocal: Selector[], offeredRemote: Selector[]): void {
  const core = sa.core;
  const error = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
  const fail = (reason: string, detail: string): void => {
    core.releaseChildSpi(sa, newSpi);
    core.childFailed(sa, reason, detail);
  };
  if (sa.state !== "established") return fail("IKE_SA_GONE", "the IKE SA went while a child SA was being made");
  if (error) {
    const wanted = error.notifyType === Notify.INVALID_KE_PAYLOAD && error.data.length === 2 ? ((error.data[0]! << 8) | error.data[1]!) as GroupId : undefined;
    if (wanted !== undefined && wanted !== ke?.group && sa.peer!.espProposals.some((p) => p.groups.includes(wanted))) {
      core.releaseChildSpi(sa, newSpi);
      return createChild(sa, offeredLocal, offeredRemote, wanted);
    }
    return fail(nameOf(Notify, error.notifyType), `the peer refused another CHILD_SA with ${nameOf(Notify, error.notifyType)}`);
  }
  const sa2 = findPayload(payloads, Payload.SA);
  const nonce = findPayload(payloads, Payload.NONCE);
  const kePayload = findPayload(payloads, Payload.KE);
  const tsi = findPayload(payloads, Payload.TSi);
  const tsr = findPayload(payloads, Payload.TSr);
  const accepted = sa2 ? acceptedEsp(sa.peer!.espProposals, sa2.proposals, ke?.group) : null;
  const localTs = tsi ? fromWire(tsi.selectors) : [];
  const remoteTs = tsr ? fromWire(tsr.selectors) : [];
  if (!nonce || accepted === null || localTs.length === 0 || remoteTs.length === 0 || !localTs.every(enforceable) || !remoteTs.every(enforceable)
    || !within(localTs, offeredLocal) || !within(remoteTs, offeredRemote) || (ke && (!kePayload || kePayload.group !== ke.group))) {
    if (accepted) deleteChildren(sa, [newSpi]);
    return fail("INVALID_SYNTAX", "the answer to a CREATE_CHILD_SA is not one we can use");
  }
  let shared: Uint8Array | undefined;
  try {
    shared = ke ? ke.sharedSecret(kePayload!.data) : undefined;
  } catch (error) {
    if (!(error instanceof KeyExchangeError)) throw error;
    deleteChildren(sa, [newSpi]);
    return fail("INVALID_KE", `the peer's KE value is invalid: ${error.message}`);
  }
  establishChild(sa, { inboundSpi: newSpi, outboundSpi: accepted.peerSpi, algorithms: accepted.algorithms, localTs, remoteTs, ni, nr: nonce.data.slice(), sharedSecret: shared, initiator: true }, core.now);
  shared?.fill(0);
}

// ---------------------------------------------------------------- rekeying the IKE SA, as initiator

/** Starts replacing the IKE SA (§1.3.2): new SPIs, a new Diffie-Hellman, the children move over. */
export function rekeyIke(sa: IkeSa, group: GroupId = sa.algorithms!.group): void {
  const core = sa.core;
  if (sa.state !== "established" || sa.ourIkeRekey !== undefined) return;
  const ni = core.random(NONCE_BYTES);
  const ke = createKeyExchange(group, core.random);
  const spi = core.newIkeSpi();
  const spiBytes = new Uint8Array(8);
  new DataView(spiBytes.buffer).setBigUint64(0, spi);
  sa.ourIkeRekey = { ni, spi };
  sa.rekeyAt = undefined;
  const proposals = ikeProposalsToWire(sa.peer!.ikeProposals).map((p) => ({ ...p, spi: spiBytes }));
  core.log("info", "ike-rekeying", `rekeying IKE_SA ${sa.peerName}[${sa.id}]`, sa.logFields);
  sa.request(Exchange.CREATE_CHILD_SA, [
    { type: Payload.SA, proposals },
    { type: Payload.NONCE, data: ni },
    { type: Payload.KE, group, data: ke.publicValue },
  ], (response) => {
    try {
      onIkeRekeyResponse(sa, response, ni, spi, ke);
    } finally {
      ke.wipe();
    }
  }, core.now);
}

function onIkeRekeyResponse(sa: IkeSa, payloads: IkePayload[], ni: Uint8Array, spi: bigint, ke: KeyExchange): void {
  const core = sa.core;
  const now = core.now;
  sa.ourIkeRekey = undefined;
  // Lost a collision already (the peer deleted the old SA before this answer came): what this answer made is redundant.
  const lost = sa.state === "rekeyed";
  if (sa.state !== "established" && !lost) return; // deleted meanwhile (§2.25.2: the peer's close wins)
  const error = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
  if (error && lost) return core.removeSa(sa, "rekeyed");
  // Refused while we had answered the peer's own rekey: the peer's stands (§2.8.2).
  if (error && sa.peerIkeRekey !== undefined) return peerWonIkeRekey(sa);
  if (error) {
    if (error.notifyType === Notify.INVALID_KE_PAYLOAD && error.data.length === 2) {
      const wanted = ((error.data[0]! << 8) | error.data[1]!) as GroupId;
      if (sa.peer!.ikeProposals.some((p) => p.groups.includes(wanted)) && wanted !== ke.group) return rekeyIke(sa, wanted);
    }
    sa.rekeyAt = now + (error.notifyType === Notify.TEMPORARY_FAILURE ? retryDelay(sa) : 60_000);
    core.log("info", "ike-rekey-failed", `rekeying IKE_SA ${sa.peerName}[${sa.id}] refused with ${nameOf(Notify, error.notifyType)}; trying again later`, { ...sa.logFields, reason: nameOf(Notify, error.notifyType) });
    return;
  }
  const sa1 = findPayload(payloads, Payload.SA);
  const nonce = findPayload(payloads, Payload.NONCE);
  const kePayload = findPayload(payloads, Payload.KE);
  const algorithms = sa1 ? acceptedIke(sa.peer!.ikeProposals, sa1.proposals) : null;
  const peerSpiBytes = sa1?.proposals[0]?.spi;
  if (!algorithms || !nonce || !kePayload || kePayload.group !== ke.group || algorithms.group !== ke.group || peerSpiBytes?.length !== 8) {
    if (lost) return core.removeSa(sa, "rekeyed");
    core.log("warn", "ike-rekey-failed", `rekeying IKE_SA ${sa.peerName}[${sa.id}]: the answer is not one we can use`, sa.logFields);
    sa.rekeyAt = now + 60_000;
    return;
  }
  let shared: Uint8Array;
  try {
    shared = ke.sharedSecret(kePayload.data);
  } catch (error) {
    if (!(error instanceof KeyExchangeError)) throw error;
    if (lost) return core.removeSa(sa, "rekeyed");
    sa.rekeyAt = now + 60_000;
    return core.log("warn", "ike-rekey-failed", `rekeying IKE_SA ${sa.peerName}[${sa.id}]: invalid KE value: ${error.message}`, sa.logFields);
  }
  const peerSpi = new DataView(peerSpiBytes.buffer, peerSpiBytes.byteOffset, 8).getBigUint64(0);
  const nr = nonce.data.slice();
  // We initiated this rekey: we are the new SA's initiator (§2.18), whatever we were in the old one.
  const fresh = makeRekeyedSa(sa, "initiator", spi, peerSpi, algorithms, ni, nr, shared);
  shared.fill(0);
  if (lost) {
    core.terminateSa(fresh, "redundant after a rekey collision");
    return core.removeSa(sa, "rekeyed");
  }
  const collision = sa.peerIkeRekey;
  if (collision && oursIsRedundant([ni, nr], [collision.ni, collision.nr])) {
    // §2.8.2: ours is redundant: delete it; the peer's new SA takes the children and the peer deletes the old one.
    core.log("info", "ike-rekey-collision", `IKE_SA ${sa.peerName}[${sa.id}] was rekeyed by both sides; the peer's [${collision.sa.id}] survives`, sa.logFields);
    moveChildren(sa, collision.sa);
    // Settled: the peer's DELETE of the old SA, when it comes, only removes it (not a second settlement).
    sa.peerIkeRekey = undefined;
    sa.state = "rekeyed";
    sa.expiresAt = now + core.halfOpenTimeoutMs;
    core.terminateSa(fresh, "redundant after a rekey collision");
    return;
  }
  if (collision) {
    core.log("info", "ike-rekey-collision", `IKE_SA ${sa.peerName}[${sa.id}] was rekeyed by both sides; ours [${fresh.id}] survives`, sa.logFields);
    // The peer's new SA is redundant and the peer's to delete (§2.8.2); if it never does, it goes after the half-open time.
    collision.sa.redundant = true;
    collision.sa.expiresAt = now + core.halfOpenTimeoutMs;
    core.reschedule(collision.sa);
    sa.peerIkeRekey = undefined;
  }
  core.log("info", "ike-rekeyed", `IKE_SA ${sa.peerName}[${sa.id}] rekeyed into [${fresh.id}]`, { ...sa.logFields, newIkeSa: fresh.id });
  moveChildren(sa, fresh);
  sa.state = "rekeyed";
  sa.request(Exchange.INFORMATIONAL, [{ type: Payload.DELETE, protocol: Protocol.IKE, spiSize: 0, spis: [] }], () => core.removeSa(sa, "rekeyed"), now);
}

/**
 * The peer's DELETE of the old IKE SA told us its rekey won a collision
 * before our own rekey was answered: its new SA takes the children now.
 */
export function peerWonIkeRekey(sa: IkeSa): void {
  const winner = sa.peerIkeRekey!;
  sa.core.log("info", "ike-rekey-collision", `IKE_SA ${sa.peerName}[${sa.id}] was rekeyed by both sides; the peer's [${winner.sa.id}] survives`, sa.logFields);
  moveChildren(sa, winner.sa);
  sa.peerIkeRekey = undefined;
  sa.state = "rekeyed";
  sa.expiresAt = sa.core.now + sa.core.halfOpenTimeoutMs;
}

/** The IKE SA that replaces `old` (§2.18): keys from the old SK_d and the new Diffie-Hellman. */
function makeRekeyedSa(old: IkeSa, role: "initiator" | "responder", spiI: bigint, spiR: bigint, algorithms: IkeAlgorithms, ni: Uint8Array, nr: Uint8Array, shared: Uint8Array): IkeSa {
  const core = old.core;
  const fresh = core.newSa(role, spiI, old.local, old.remote, core.now);
  fresh.spiR = spiR;
  fresh.peer = old.peer;
  fresh.localId = old.localId;
  fresh.remoteId = old.remoteId;
  fresh.natT = old.natT;
  fresh.natLocal = old.natLocal;
  fresh.natRemote = old.natRemote;
  // RFC 7383 fragmentation was agreed for the IKE SA; its successor keeps it (as strongSwan's inherit_pre does).
  fresh.fragmentation = old.fragmentation;
  fresh.algorithms = algorithms;
  fresh.setKeys(deriveRekeyedIkeKeys(old.algorithms!.prf, old.keys!.skD, algorithms, ni, nr, shared, spiI, spiR));
  core.indexSa(fresh);
  core.established(fresh, true);
  return fresh;
}

/** The children (and what the data plane knows the peer by) move to the new IKE SA. */
function moveChildren(from: IkeSa, to: IkeSa): void {
  to.children.push(...from.children.splice(0));
  to.leases.push(...from.leases.splice(0));
  to.virtualIps = from.virtualIps;
  to.remoteCertSubject = from.remoteCertSubject;
  for (const spi of from.pendingSpis) to.pendingSpis.add(spi);
  from.pendingSpis.clear();
  from.core.emit({ type: "ike-rekeyed", oldIkeSaId: from.id, newIkeSaId: to.id, peerName: to.peerName });
  // Their lifetimes and linger times are the new SA's deadlines now.
  from.core.reschedule(to);
}

// ---------------------------------------------------------------- the responder

/** Any CREATE_CHILD_SA request (§1.3). */
export function answerCreateChild(sa: IkeSa, payloads: IkePayload[]): Answer {
  const temporary = (): Answer => ({ payloads: [notify(Notify.TEMPORARY_FAILURE)] });
  if (sa.state !== "established") return temporary(); // being deleted or already rekeyed (§2.25.1/2)
  const sa1 = findPayload(payloads, Payload.SA);
  if (!sa1) return { payloads: [notify(Notify.INVALID_SYNTAX)] };
  if (sa1.proposals.some((p) => p.protocol === Protocol.IKE)) return answerIkeRekey(sa, payloads);
  // §2.25.2: no child work while we rekey the IKE SA.
  if (sa.ourIkeRekey !== undefined) return temporary();
  return answerChild(sa, payloads);
}

const temporaryFailure = (): Answer => ({ payloads: [notify(Notify.TEMPORARY_FAILURE)] });

function answerChild(sa: IkeSa, payloads: IkePayload[]): Answer {
  const core = sa.core;
  const now = core.now;
  const peer = sa.peer!;
  const rekey = findNotify(payloads, Notify.REKEY_SA);
  let old: ChildSa | undefined;
  if (rekey) {
    old = sa.children.find((c) => c.outboundSpi === spiFromBytes(rekey.spi));
    // An SPI we do not know while our own CREATE_CHILD_SA is unanswered may be the child that exchange made,
    // which the peer has and we do not yet (§2.25: TEMPORARY_FAILURE, try again later, not CHILD_SA_NOT_FOUND).
    if (old === undefined && sa.pendingSpis.size > 0) return temporaryFailure();
    if (old === undefined) return { payloads: [notify(Notify.CHILD_SA_NOT_FOUND, new Uint8Array(0), Protocol.ESP, rekey.spi.slice())] };
    if (old.state === "rekeyed" || old.state === "deleting" || old.peerRekey) return { payloads: [notify(Notify.TEMPORARY_FAILURE)] };
  }
  const sa2 = findPayload(payloads, Payload.SA)!;
  const nonce = findPayload(payloads, Payload.NONCE);
  const kePayload = findPayload(payloads, Payload.KE);
  const tsi = findPayload(payloads, Payload.TSi);
  const tsr = findPayload(payloads, Payload.TSr);
  if (!nonce || !tsi || !tsr) return { payloads: [notify(Notify.INVALID_SYNTAX)] };
  // With a KE, PFS: the group must be ours; a peer asking PFS of a peer configured without accepts it (stronger, never weaker).
  const ours = kePayload && peer.espProposals.every((p) => p.groups.length === 0)
    ? peer.espProposals.map((p) => ({ ...p, groups: [kePayload.group as GroupId] }))
    : peer.espProposals;
  const chosen = chooseEsp(ours, sa2.proposals, kePayload?.group as GroupId | undefined);
  if (chosen === null) {
    const wanted = kePayload ? ours.flatMap((p) => p.groups).find((g) => chooseEsp(ours, sa2.proposals, g) !== null) : undefined;
    if (wanted !== undefined) return { payloads: [notify(Notify.INVALID_KE_PAYLOAD, new Uint8Array([wanted >> 8, wanted & 0xff]))] };
    core.log("warn", "child-refused", `${sa.peerName}: no acceptable ESP proposal for a ${rekey ? "rekey" : "new CHILD_SA"} among ${describeOffered(sa2.proposals)}`, { ...sa.logFields, reason: "NO_PROPOSAL_CHOSEN" });
    return { payloads: [notify(Notify.NO_PROPOSAL_CHOSEN)] };
  }
  // Within one configured pair: the first child's, or one of moreChildren.
  const pairs = [{ localTs: peer.localTs, remoteTs: peer.remoteTs }, ...peer.moreChildren];
  const narrowed = pairs.map((pair) => ({ remoteTs: narrow(fromWire(tsi.selectors), pair.remoteTs), localTs: narrow(fromWire(tsr.selectors), pair.localTs) }))
    .find((pair) => pair.remoteTs.length > 0 && pair.localTs.length > 0) ?? { remoteTs: [], localTs: [] };
  const { remoteTs, localTs } = narrowed;
  if (remoteTs.length === 0 || localTs.length === 0) {
    core.log("warn", "child-refused", `${sa.peerName}: traffic selectors ${fromWire(tsr.selectors).map(formatSelector).join(" ")} === ${fromWire(tsi.selectors).map(formatSelector).join(" ")} unacceptable`, { ...sa.logFields, reason: "TS_UNACCEPTABLE" });
    return { payloads: [notify(Notify.TS_UNACCEPTABLE)] };
  }
  const exchanged = kePayload ? respondToKe(kePayload, core.random) : undefined;
  if (exchanged && "payloads" in exchanged) return exchanged;
  const ke = exchanged?.ke;
  const shared = exchanged?.shared;
  const ni = nonce.data.slice();
  const nr = core.random(NONCE_BYTES);
  const inboundSpi = core.allocateChildSpi(sa);
  // A rekey's new child waits with its outbound SA until the old one's DELETE (the initiator may not have our new SA's inbound half before our answer).
  const child = establishChild(sa, { inboundSpi, outboundSpi: chosen.peerSpi, algorithms: chosen.algorithms, localTs, remoteTs, ni, nr, sharedSecret: shared, initiator: false, outbound: old === undefined }, now);
  shared?.fill(0);
  if (old) old.peerRekey = { child, ni, nr };
  const answer: IkePayload[] = [{ type: Payload.SA, proposals: [chosenEspToWire(chosen.algorithms, chosen.number, inboundSpi)] }, { type: Payload.NONCE, data: nr }];
  if (ke) answer.push({ type: Payload.KE, group: ke.group, data: ke.publicValue });
  ke?.wipe();
  answer.push({ type: Payload.TSi, selectors: remoteTs.map(selectorToWire) }, { type: Payload.TSr, selectors: localTs.map(selectorToWire) });
  return { payloads: answer };
}

/**
 * The responder's half of a KE payload (a child's PFS, an IKE rekey): a key
 * pair of the peer's group and the shared secret, or INVALID_SYNTAX when the
 * peer's public value is refused (RFC 6989), the key pair wiped then.
 */
function respondToKe(kePayload: { group: number; data: Uint8Array }, random: (length: number) => Uint8Array): { ke: KeyExchange; shared: Uint8Array } | Answer {
  const ke = createKeyExchange(kePayload.group as GroupId, random);
  try {
    return { ke, shared: ke.sharedSecret(kePayload.data) };
  } catch (error) {
    ke.wipe();
    if (error instanceof KeyExchangeError) return { payloads: [notify(Notify.INVALID_SYNTAX)] };
    throw error;
  }
}

/**
 * The peer deleted child `old` that it had rekeyed (or that both rekeyed and
 * the peer won): the new child takes the traffic, the old one lingers.
 * Returns whether `old` was such a child.
 */
export function completePeerRekey(sa: IkeSa, old: ChildSa): boolean {
  const successor = old.peerRekey?.child;
  if (successor === undefined || !sa.children.includes(successor)) return false;
  activateOutbound(sa, successor, old);
  retire(sa, old, successor);
  old.peerRekey = undefined;
  return true;
}

function answerIkeRekey(sa: IkeSa, payloads: IkePayload[]): Answer {
  const core = sa.core;
  const peer = sa.peer!;
  // §2.25.1: no IKE rekey while a child is being created, rekeyed or closed by us.
  if (sa.children.some((c) => c.state === "rekeying" || c.state === "deleting")) return { payloads: [notify(Notify.TEMPORARY_FAILURE)] };
  const sa1 = findPayload(payloads, Payload.SA)!;
  const nonce = findPayload(payloads, Payload.NONCE);
  const kePayload = findPayload(payloads, Payload.KE);
  if (!nonce || !kePayload) return { payloads: [notify(Notify.INVALID_SYNTAX)] };
  const chosen = chooseIke(peer.ikeProposals, sa1.proposals, kePayload.group);
  const peerSpiBytes = chosen ? sa1.proposals.find((p) => p.number === chosen.number)?.spi : undefined;
  if (chosen === null || peerSpiBytes?.length !== 8) return { payloads: [notify(Notify.NO_PROPOSAL_CHOSEN)] };
  if (chosen.algorithms.group !== kePayload.group) {
    const g = chosen.algorithms.group;
    return { payloads: [notify(Notify.INVALID_KE_PAYLOAD, new Uint8Array([g >> 8, g & 0xff]))] };
  }
  const exchanged = respondToKe(kePayload, core.random);
  if ("payloads" in exchanged) return exchanged;
  const { ke, shared } = exchanged;
  const ni = nonce.data.slice();
  const nr = core.random(NONCE_BYTES);
  const peerSpi = new DataView(peerSpiBytes.buffer, peerSpiBytes.byteOffset, 8).getBigUint64(0);
  const ourSpi = core.newIkeSpi();
  const ourSpiBytes = new Uint8Array(8);
  new DataView(ourSpiBytes.buffer).setBigUint64(0, ourSpi);
  // The peer initiated this rekey: it is the new SA's initiator (§2.18).
  const fresh = makeRekeyedSa(sa, "responder", peerSpi, ourSpi, chosen.algorithms, ni, nr, shared);
  shared.fill(0);
  const answer: IkePayload[] = [
    { type: Payload.SA, proposals: [chosenIkeToWire(chosen.algorithms, chosen.number, ourSpiBytes)] },
    { type: Payload.NONCE, data: nr },
    { type: Payload.KE, group: ke.group, data: ke.publicValue },
  ];
  ke.wipe();
  if (sa.ourIkeRekey !== undefined) {
    // A collision (§2.8.2): who keeps what is decided when our own rekey is answered.
    sa.peerIkeRekey = { sa: fresh, ni, nr };
  } else {
    moveChildren(sa, fresh);
    sa.state = "rekeyed";
    // The peer deletes the old SA; if it never does, the old one goes after the half-open time.
    sa.expiresAt = core.now + core.halfOpenTimeoutMs;
  }
  core.log("info", "ike-rekeyed", `IKE_SA ${sa.peerName}[${sa.id}] rekeyed by the peer into [${fresh.id}]`, { ...sa.logFields, newIkeSa: fresh.id });
  return { payloads: answer };
}
