/**
 * IKE_SA_INIT (RFC 7296 §1.2): proposals, Diffie-Hellman, nonces and NAT
 * detection, in the clear.
 *
 *   Initiator                         Responder
 *   HDR, SAi1, KEi, Ni,
 *     N(NAT_D_S), N(NAT_D_D),
 *     N(SIGNATURE_HASH_ALGORITHMS) -->
 *                                <-- HDR, SAr1, KEr, Nr, N(NAT_D_S), N(NAT_D_D),
 *                                      N(SIGNATURE_HASH_ALGORITHMS), [CERTREQ]
 *                                <-- or HDR, N(INVALID_KE_PAYLOAD | NO_PROPOSAL_CHOSEN | COOKIE)
 *
 * Why the responder keeps no state for a refusal: until IKE_AUTH nothing is
 * authenticated, so a refusal (no proposal, another KE group) is answered
 * from the request alone and forgotten (§2.6's spirit: a spoofed request
 * costs no memory). A request it accepts costs one Diffie-Hellman and a
 * half-open SA that expires.
 */
import { Exchange, Flag, FIRST_STATUS_NOTIFY, Notify, Payload, SignatureHash, nameOf } from "../constants.js";
import { encodeMessage, type DecodedMessage } from "../codec/message.js";
import { findNotify, findPayload, notifies, notify, type IkePayload } from "../codec/payloads.js";
import { createKeyExchange, KeyExchangeError, type GroupId } from "../crypto/keyExchange.js";
import { deriveIkeKeys } from "../keySchedule.js";
import { natHash, natHashMatches } from "../natDetection.js";
import { acceptedIke, chooseIke, chosenIkeToWire, describeIke, describeOffered, groupName, ikeProposalsToWire } from "../proposals.js";
import type { IkeCore } from "../core.js";
import type { IkePeerConfig } from "../config.js";
import type { IkeSa, Path } from "../ikeSa.js";
import { sendAuthRequest } from "./ikeAuth.js";
import { certificateRequest } from "./authenticate.js";
import { fragmentationAgreed, offerFragmentation } from "../fragments.js";

const NONCE_BYTES = 32;
/** INVALID_KE_PAYLOAD and COOKIE retries per connection attempt: a peer cannot keep us in a loop. */
const MAX_INIT_RETRIES = 3;

/** RFC 7427 §4, RFC 8420 §2: the hashes we verify signatures with; Identity for Ed25519. */
function signatureHashes(): IkePayload {
  return notify(Notify.SIGNATURE_HASH_ALGORITHMS, new Uint8Array([0, SignatureHash.SHA2_256, 0, SignatureHash.SHA2_384, 0, SignatureHash.SHA2_512, 0, SignatureHash.IDENTITY]));
}

/**
 * Our NAT_DETECTION_SOURCE_IP: deliberately wrong (random), so the peer sees
 * a NAT and carries ESP in UDP, the only ESP sluice's data plane speaks
 * (natDetection.ts).
 */
function fakeSourceHash(core: IkeCore): IkePayload {
  return notify(Notify.NAT_DETECTION_SOURCE_IP, core.random(20));
}

function hashesOf(payloads: readonly IkePayload[], type: number): Uint8Array[] {
  return notifies(payloads).filter((n) => n.notifyType === type).map((n) => n.data);
}

// ---------------------------------------------------------------- initiator

/** Starts an IKE SA with `peer`: the first IKE_SA_INIT request. */
export function initiate(core: IkeCore, peer: IkePeerConfig, now: number, autoRetry: boolean): IkeSa {
  const remote = peer.remote!;
  const natT = remote.port === peer.remoteNatTPort;
  const sa = core.newSa("initiator", core.newIkeSpi(), core.localFor(natT), { ...remote }, now);
  sa.peer = peer;
  sa.natT = natT;
  sa.autoRetry = autoRetry;
  sa.ni = core.random(NONCE_BYTES);
  core.log("info", "ike-connecting", `initiating IKE_SA ${peer.name}[${sa.id}] to ${remote.address}:${remote.port}`, sa.logFields);
  sendInitRequest(sa, peer.ikeProposals[0]!.groups[0]!, undefined, 0, now);
  return sa;
}

function sendInitRequest(sa: IkeSa, group: GroupId, cookie: Uint8Array | undefined, retries: number, now: number): void {
  const core = sa.core;
  const peer = sa.peer!;
  sa.keyExchange?.wipe();
  sa.keyExchange = createKeyExchange(group, core.random);
  const payloads: IkePayload[] = [];
  // §2.6: the cookie comes first.
  if (cookie) payloads.push(notify(Notify.COOKIE, cookie));
  payloads.push(
    { type: Payload.SA, proposals: ikeProposalsToWire(peer.ikeProposals) },
    { type: Payload.KE, group, data: sa.keyExchange.publicValue },
    { type: Payload.NONCE, data: sa.ni! },
    fakeSourceHash(core),
    notify(Notify.NAT_DETECTION_DESTINATION_IP, natHash(sa.spiI, 0n, sa.remote)),
    signatureHashes(),
    ...offerFragmentation(core.fragmentation),
  );
  sa.initRequest = sa.sendInit(payloads, (response, message) => onInitResponse(sa, response, message, group, retries), now);
}

function onInitResponse(sa: IkeSa, payloads: IkePayload[], message: DecodedMessage, group: GroupId, retries: number): void {
  const core = sa.core;
  const peer = sa.peer!;
  const now = core.now;
  const cookie = findNotify(payloads, Notify.COOKIE);
  if (cookie && findPayload(payloads, Payload.SA) === undefined) {
    if (retries >= MAX_INIT_RETRIES) return core.fail(sa, "COOKIE", "the responder keeps asking for a cookie");
    core.log("info", "ike-cookie", `${peer.name}: the responder asked for a cookie; retrying with it`, sa.logFields);
    return sendInitRequest(sa, group, cookie.data.slice(), retries + 1, now);
  }
  const invalidKe = findNotify(payloads, Notify.INVALID_KE_PAYLOAD);
  if (invalidKe) {
    const wanted = invalidKe.data.length === 2 ? (invalidKe.data[0]! << 8) | invalidKe.data[1]! : -1;
    const offered = peer.ikeProposals.some((p) => p.groups.includes(wanted as GroupId));
    if (!offered || wanted === group || retries >= MAX_INIT_RETRIES) {
      return core.fail(sa, "INVALID_KE_PAYLOAD", `the responder asks for key exchange group ${groupName(wanted)}, which we do not offer`);
    }
    core.log("info", "ike-invalid-ke", `${peer.name}: the responder asks for ${groupName(wanted)} instead of ${groupName(group)}; retrying`, { ...sa.logFields, group: groupName(wanted) });
    return sendInitRequest(sa, wanted as GroupId, undefined, retries + 1, now);
  }
  const error = notifies(payloads).find((n) => n.notifyType < FIRST_STATUS_NOTIFY);
  if (error) return core.fail(sa, nameOf(Notify, error.notifyType), `the responder refused IKE_SA_INIT with ${nameOf(Notify, error.notifyType)}`);
  const sa1 = findPayload(payloads, Payload.SA);
  const ke = findPayload(payloads, Payload.KE);
  const nonce = findPayload(payloads, Payload.NONCE);
  if (!sa1 || !ke || !nonce || message.header.spiR === 0n) return core.fail(sa, "INVALID_SYNTAX", "the IKE_SA_INIT response lacks SA, KE, Nonce or the responder's SPI");
  const algorithms = acceptedIke(peer.ikeProposals, sa1.proposals);
  if (algorithms === null || algorithms.group !== group || ke.group !== group) {
    return core.fail(sa, "NO_PROPOSAL_CHOSEN", "the responder chose a proposal we did not offer");
  }
  const destinationHashes = hashesOf(payloads, Notify.NAT_DETECTION_DESTINATION_IP);
  const sourceHashes = hashesOf(payloads, Notify.NAT_DETECTION_SOURCE_IP);
  if (destinationHashes.length === 0 || sourceHashes.length === 0) {
    return core.fail(sa, "NO_NAT_T", "the responder does not support NAT traversal (sluice carries ESP only in UDP, RFC 3948)");
  }
  let shared: Uint8Array;
  try {
    shared = sa.keyExchange!.sharedSecret(ke.data);
  } catch (error) {
    if (error instanceof KeyExchangeError) return core.fail(sa, "INVALID_KE", `the responder's key exchange value is invalid: ${error.message}`);
    throw error;
  }
  sa.spiR = message.header.spiR;
  sa.algorithms = algorithms;
  sa.nr = nonce.data.slice();
  sa.initResponse = message.bytes.slice();
  sa.fragmentation = fragmentationAgreed(core.fragmentation, payloads);
  sa.setKeys(deriveIkeKeys(algorithms, sa.ni!, sa.nr, shared, sa.spiI, sa.spiR));
  shared.fill(0);
  sa.keyExchange!.wipe();
  sa.keyExchange = undefined;
  sa.natLocal = !natHashMatches(destinationHashes, sa.spiI, sa.spiR, core.localCandidates(sa.local));
  sa.natRemote = !natHashMatches(sourceHashes, sa.spiI, sa.spiR, [sa.remote]);
  // §2.23: with a NAT in the path (always, for sluice: see fakeSourceHash) IKE moves to port 4500.
  if (!sa.natT) {
    sa.natT = true;
    sa.remote = { address: sa.remote.address, port: peer.remoteNatTPort };
    sa.local = core.localFor(true);
  }
  core.log("info", "ike-init-done", `${peer.name}: IKE_SA_INIT done (${describeIke(algorithms)}), NAT ${sa.natLocal ? "in front of us" : sa.natRemote ? "in front of the peer" : "not seen"}`, { ...sa.logFields, ike: describeIke(algorithms), natLocal: sa.natLocal, natRemote: sa.natRemote });
  sendAuthRequest(sa, now);
}

// ---------------------------------------------------------------- responder

function refuse(core: IkeCore, message: DecodedMessage, path: Path, notifyType: number, data: Uint8Array, reason: string): void {
  const datagram = encodeMessage({ spiI: message.header.spiI, spiR: 0n, exchange: Exchange.IKE_SA_INIT, flags: Flag.RESPONSE, messageId: 0 }, [notify(notifyType, data)]);
  core.send(datagram, path.remote, path.natT);
  core.refused(nameOf(Notify, notifyType), reason, { remote: `${path.remote.address}:${path.remote.port}` });
}

/** An IKE_SA_INIT request (not a retransmission of one we answered). */
export function respondInit(core: IkeCore, message: DecodedMessage, path: Path, now: number): void {
  const payloads = message.payloads;
  const sa1 = findPayload(payloads, Payload.SA);
  const ke = findPayload(payloads, Payload.KE);
  const nonce = findPayload(payloads, Payload.NONCE);
  if (!sa1 || !ke || !nonce) return core.drop("invalid-syntax");
  const candidates = core.candidatesFor(path.remote);
  if (candidates.length === 0) {
    return refuse(core, message, path, Notify.NO_PROPOSAL_CHOSEN, new Uint8Array(0), `no peer config for ${path.remote.address}`);
  }
  const chosen = chooseIke(candidates.flatMap((peer) => peer.ikeProposals), sa1.proposals, ke.group);
  if (chosen === null) {
    return refuse(core, message, path, Notify.NO_PROPOSAL_CHOSEN, new Uint8Array(0), `no acceptable proposal among ${describeOffered(sa1.proposals)}`);
  }
  const group = chosen.algorithms.group;
  if (ke.group !== group) {
    return refuse(core, message, path, Notify.INVALID_KE_PAYLOAD, new Uint8Array([group >> 8, group & 0xff]), `KE of group ${groupName(ke.group)}; asked for ${groupName(group)}`);
  }
  const sourceHashes = hashesOf(payloads, Notify.NAT_DETECTION_SOURCE_IP);
  const destinationHashes = hashesOf(payloads, Notify.NAT_DETECTION_DESTINATION_IP);
  if (sourceHashes.length === 0 || destinationHashes.length === 0) {
    return refuse(core, message, path, Notify.NO_PROPOSAL_CHOSEN, new Uint8Array(0), "the initiator does not support NAT traversal (sluice carries ESP only in UDP, RFC 3948)");
  }
  const keyExchange = createKeyExchange(group, core.random);
  let shared: Uint8Array;
  try {
    shared = keyExchange.sharedSecret(ke.data);
  } catch (error) {
    keyExchange.wipe();
    if (error instanceof KeyExchangeError) return refuse(core, message, path, Notify.INVALID_SYNTAX, new Uint8Array(0), `invalid key exchange value: ${error.message}`);
    throw error;
  }
  const spiI = message.header.spiI;
  const sa = core.newSa("responder", spiI, path.local, path.remote, now);
  sa.spiR = core.newIkeSpi();
  sa.natT = path.natT;
  sa.candidates = candidates;
  sa.algorithms = chosen.algorithms;
  sa.ni = nonce.data.slice();
  sa.nr = core.random(NONCE_BYTES);
  sa.initRequest = message.bytes.slice();
  sa.setKeys(deriveIkeKeys(chosen.algorithms, sa.ni, sa.nr, shared, spiI, sa.spiR));
  shared.fill(0);
  sa.natRemote = !natHashMatches(sourceHashes, spiI, 0n, [path.remote]);
  sa.natLocal = !natHashMatches(destinationHashes, spiI, 0n, core.localCandidates(path.local));
  // RFC 7383 §2.3: offered back only to an initiator that offered it.
  sa.fragmentation = fragmentationAgreed(core.fragmentation, payloads);
  const response = encodeMessage({ spiI, spiR: sa.spiR, exchange: Exchange.IKE_SA_INIT, flags: Flag.RESPONSE, messageId: 0 }, [
    { type: Payload.SA, proposals: [chosenIkeToWire(chosen.algorithms, chosen.number)] },
    { type: Payload.KE, group, data: keyExchange.publicValue },
    { type: Payload.NONCE, data: sa.nr },
    fakeSourceHash(core),
    notify(Notify.NAT_DETECTION_DESTINATION_IP, natHash(spiI, sa.spiR, path.remote)),
    signatureHashes(),
    // §3.7: the CAs we trust, when a peer this address may be expects a certificate.
    ...certificateRequest(candidates),
    ...(sa.fragmentation ? offerFragmentation(core.fragmentation) : []),
  ]);
  keyExchange.wipe();
  sa.initResponse = response;
  sa.cacheInitResponse(response);
  sa.expiresAt = now + core.halfOpenTimeoutMs;
  core.indexHalfOpen(sa);
  core.log("debug", "ike-init-answered", `IKE_SA_INIT from ${path.remote.address}:${path.remote.port} answered (${describeIke(chosen.algorithms)})`, { ...sa.logFields, ike: describeIke(chosen.algorithms), natLocal: sa.natLocal, natRemote: sa.natRemote });
  core.send(response, path.remote, path.natT);
}
