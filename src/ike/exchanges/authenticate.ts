/**
 * The AUTH of IKE_AUTH, both ways (RFC 7296 §2.15, §3.6–§3.8; RFC 7427):
 * what we send to prove who we are (a PSK's MAC, or CERT payloads and a
 * signature), and whether what the peer sent proves the identity it claims.
 * ikeAuth.ts runs the exchange; this file decides what authenticates.
 *
 * Why each side's method is its own: `localAuth` and `remoteAuth` of a peer
 * config are independent (a gateway proves itself with a certificate, road
 * warriors with PSKs, or the reverse), as in strongSwan's `local` and
 * `remote` sections; and a signature is verified only with the key of a
 * certificate that the peer's trust (the configured CAs, their CRL, the
 * wall clock) accepted for the identity the peer claims.
 *
 *   CERTREQ (§3.7): sent by a responder in IKE_SA_INIT and by an initiator
 *     in IKE_AUTH when it expects a certificate, naming its CAs by the SHA-1
 *     of their SubjectPublicKeyInfo; a peer's CERTREQ makes an `ifasked`
 *     side send its CERT.
 *   SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4): read from the peer's
 *     IKE_SA_INIT message (kept as sent, for the signed octets anyway).
 */
import { AuthMethod, CertEncoding, Exchange, Notify, Payload, nameOf } from "../constants.js";
import { decodeMessage } from "../codec/message.js";
import { findNotify, type AuthPayload, type CertPayload, type IkePayload } from "../codec/payloads.js";
import { authEquals, pskAuth, signedOctets } from "../auth.js";
import { formatIdentity, type Identity } from "../identity.js";
import { chooseScheme, decodeSignatureAuth, describeScheme, encodeSignatureAuth, schemeFitsKey, verifyOctets } from "../signatures.js";
import { describeCertificate } from "../certificates.js";
import type { IkePeerConfig } from "../config.js";
import type { IkeSa } from "../ikeSa.js";

/** The octets our AUTH covers (§2.15): the IKE_SA_INIT message we sent, the peer's nonce, prf(SK_p, our ID payload's body). */
function ourOctets(sa: IkeSa, idBody: Uint8Array): Uint8Array {
  const initiator = sa.role === "initiator";
  return signedOctets(sa.algorithms!.prf, initiator ? sa.initRequest! : sa.initResponse!, initiator ? sa.nr! : sa.ni!, initiator ? sa.keys!.skPi : sa.keys!.skPr, idBody);
}

/** The octets the peer's AUTH covers. */
function peerOctets(sa: IkeSa, idBody: Uint8Array): Uint8Array {
  const initiator = sa.role === "initiator";
  return signedOctets(sa.algorithms!.prf, initiator ? sa.initResponse! : sa.initRequest!, initiator ? sa.ni! : sa.nr!, initiator ? sa.keys!.skPr : sa.keys!.skPi, idBody);
}

/** The peer's IKE_SA_INIT payloads (its message as received; the core keeps it for the signed octets). */
function peerInitPayloads(sa: IkeSa): IkePayload[] {
  const message = sa.role === "initiator" ? sa.initResponse : sa.initRequest;
  if (message === undefined) return [];
  try {
    return decodeMessage(message).payloads;
  } catch {
    return [];
  }
}

/** The hashes the peer announced in SIGNATURE_HASH_ALGORITHMS, or undefined when it sent none (RFC 7427 §4). */
export function peerSignatureHashes(sa: IkeSa): number[] | undefined {
  const found = findNotify(peerInitPayloads(sa), Notify.SIGNATURE_HASH_ALGORITHMS);
  if (found === undefined) return undefined;
  const hashes: number[] = [];
  for (let i = 0; i + 1 < found.data.length; i += 2) hashes.push((found.data[i]! << 8) | found.data[i + 1]!);
  return hashes;
}

/** Our CERTREQ for the CAs of these peers' remote trust (one payload, §3.7), or none when no peer expects a certificate. */
export function certificateRequest(peers: readonly IkePeerConfig[]): IkePayload[] {
  const hashes = new Map<string, Uint8Array>();
  for (const peer of peers) {
    if (peer.remoteAuth?.method !== "pubkey") continue;
    for (const hash of peer.remoteAuth.trust.caKeyHashes) hashes.set(Buffer.from(hash).toString("hex"), hash);
  }
  if (hashes.size === 0) return [];
  const data = new Uint8Array(hashes.size * 20);
  [...hashes.values()].forEach((hash, i) => data.set(hash, i * 20));
  return [{ type: Payload.CERTREQ, encoding: CertEncoding.X509_SIGNATURE, data }];
}

/** Whether the peer asked for certificates: a CERTREQ in its IKE_SA_INIT (a responder's) or in these IKE_AUTH payloads (an initiator's). */
function peerAskedForCert(sa: IkeSa, authPayloads: readonly IkePayload[]): boolean {
  const asked = (list: readonly IkePayload[]): boolean => list.some((p) => p.type === Payload.CERTREQ);
  return asked(authPayloads) || (sa.role === "initiator" && asked(peerInitPayloads(sa)));
}

/**
 * Our CERT payloads (when a certificate is to be sent) and AUTH payload for
 * IKE_AUTH, for the ID payload body we send; or why we cannot authenticate.
 * `peerPayloads` is the peer's IKE_AUTH request (a responder's CERTREQ
 * source); an initiator passes [].
 */
export function ownAuth(sa: IkeSa, peer: IkePeerConfig, idBody: Uint8Array, peerPayloads: readonly IkePayload[]): { certs: IkePayload[]; auth: AuthPayload } | { error: string; detail: string } {
  const local = peer.localAuth ?? { method: "psk" };
  if (local.method === "psk") {
    const remoteId = sa.remoteId ?? (peer.remoteId.kind === "exact" ? peer.remoteId.id : undefined);
    const psk = peer.psk(remoteId);
    if (psk === undefined) return { error: "NO_PSK", detail: `no pre-shared key to authenticate with${remoteId ? ` to ${formatIdentity(remoteId)}` : ""}` };
    const auth = pskAuth(sa.algorithms!.prf, psk, ourOctets(sa, idBody));
    psk.fill(0);
    return { certs: [], auth: { type: Payload.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: auth } };
  }
  const credential = local.credential;
  const choice = chooseScheme(credential.kind, peerSignatureHashes(sa), credential.rsaPss);
  if ("error" in choice) return { error: "NO_SIGNATURE_SCHEME", detail: `cannot sign with our ${credential.kind} key: ${choice.error}` };
  const signature = credential.sign(choice.method, choice.scheme, ourOctets(sa, idBody));
  const send = credential.sendCert === "always" || (credential.sendCert === "ifasked" && peerAskedForCert(sa, peerPayloads));
  const certs: IkePayload[] = send ? credential.chain.map((der) => ({ type: Payload.CERT, encoding: CertEncoding.X509_SIGNATURE, data: der })) : [];
  sa.core.log("debug", "ike-auth-own", `${sa.peerName}: authenticating with ${describeScheme(choice.scheme, choice.method)}${send ? `, sending ${certs.length} certificate(s)` : ""}`, sa.logFields);
  return { certs, auth: { type: Payload.AUTH, method: choice.method, data: encodeSignatureAuth(choice.method, choice.scheme, signature) } };
}

/**
 * Whether the peer's AUTH proves `remoteId`, with the method its peer config
 * asks for; a reason naming what failed when not. Logs a successful
 * signature check (which key, which certificate).
 */
export function verifyPeerAuth(sa: IkeSa, peer: IkePeerConfig, remoteId: Identity, idBody: Uint8Array, auth: AuthPayload, payloads: readonly IkePayload[]): { ok: true } | { ok: false; reason: string } {
  const remote = peer.remoteAuth ?? { method: "psk" };
  const who = formatIdentity(remoteId);
  if (remote.method === "psk") {
    if (auth.method !== AuthMethod.SHARED_KEY_MIC) return { ok: false, reason: `${who} authenticates with ${nameOf(AuthMethod, auth.method)}; a pre-shared key is configured for it` };
    const psk = peer.psk(remoteId);
    if (psk === undefined) return { ok: false, reason: `no pre-shared key for ${who}` };
    const expected = pskAuth(sa.algorithms!.prf, psk, peerOctets(sa, idBody));
    psk.fill(0);
    const ok = authEquals(expected, auth.data);
    expected.fill(0);
    return ok ? { ok: true } : { ok: false, reason: `the AUTH of ${who} does not verify (wrong PSK?)` };
  }
  if (auth.method === AuthMethod.SHARED_KEY_MIC) return { ok: false, reason: `${who} authenticates with a pre-shared key; a certificate is required (remote auth pubkey)` };
  const signed = decodeSignatureAuth(auth.method, auth.data);
  if ("error" in signed) return { ok: false, reason: `the AUTH of ${who}: ${signed.error}` };
  const chain = payloads.filter((p): p is CertPayload => p.type === Payload.CERT && (p as CertPayload).encoding === CertEncoding.X509_SIGNATURE).map((p) => p.data);
  const validation = remote.trust.validate(chain, remoteId);
  if (!validation.ok) return { ok: false, reason: validation.reason };
  if (!schemeFitsKey(validation.kind, signed.method, signed.scheme)) {
    return { ok: false, reason: `${who} signed with ${describeScheme(signed.scheme, signed.method)}, which its ${validation.kind} key in certificate ${describeCertificate(validation.certificate)} cannot make` };
  }
  if (!verifyOctets(validation.certificate.publicKey, signed.method, signed.scheme, peerOctets(sa, idBody), signed.signature)) {
    return { ok: false, reason: `the ${describeScheme(signed.scheme, signed.method)} signature of ${who} does not verify with the key of certificate ${describeCertificate(validation.certificate)}` };
  }
  sa.remoteCertSubject = validation.certificate.subjectText;
  sa.core.log("info", "ike-authenticated", `authentication of '${who}' with ${describeScheme(signed.scheme, signed.method)} successful (certificate ${describeCertificate(validation.certificate)}, ${validation.path.length - 1} CA(s) up to ${describeCertificate(validation.path.at(-1)!)})`, { ...sa.logFields, remoteId: who, exchange: nameOf(Exchange, Exchange.IKE_AUTH) });
  return { ok: true };
}
