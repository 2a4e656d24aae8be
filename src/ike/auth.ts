/**
 * Authentication with a pre-shared key (RFC 7296 §2.15):
 *
 *   AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
 *   InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
 *   ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
 *
 * RealMessage is the IKE_SA_INIT message that side sent, exactly as sent;
 * the nonce is the other side's Nonce payload body; RestOf…IDPayload is the
 * ID payload's body (from the ID Type on). The comparison of a received AUTH
 * is constant-time.
 */
import { timingSafeEqual } from "node:crypto";
import { concatBytes } from "./codec/bytes.js";
import { prf, type PrfId } from "./crypto/prf.js";

const KEY_PAD = new TextEncoder().encode("Key Pad for IKEv2");

/** The octets one side signs (§2.15). */
export function signedOctets(prfId: PrfId, realMessage: Uint8Array, peerNonce: Uint8Array, skP: Uint8Array, idBody: Uint8Array): Uint8Array {
  return concatBytes(realMessage, peerNonce, prf(prfId, skP, idBody));
}

/** The AUTH data for a PSK. */
export function pskAuth(prfId: PrfId, psk: Uint8Array, octets: Uint8Array): Uint8Array {
  const padded = prf(prfId, psk, KEY_PAD);
  const auth = prf(prfId, padded, octets);
  padded.fill(0);
  return auth;
}

/** Whether a received AUTH equals the expected one, in constant time. */
export function authEquals(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && timingSafeEqual(expected, received);
}
