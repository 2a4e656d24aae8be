/**
 * INFORMATIONAL (RFC 7296 §1.4, §3.11): deleting child SAs and the IKE SA,
 * liveness checks, and error notifies after authentication.
 *
 *   HDR, SK {D(ESP, SPIs we receive on)}  -->  <--  HDR, SK {D(ESP, SPIs the peer receives on)}
 *   HDR, SK {D(IKE)}                      -->  <--  HDR, SK {}
 *   HDR, SK {}                            -->  <--  HDR, SK {}      (liveness)
 *
 * Why children go at once: a Delete says the peer no longer accepts or sends
 * on those SAs (§1.4.1); traffic for them is lost either way, so they leave
 * the data plane before the response is sent rather than after.
 */
import { Exchange, FIRST_STATUS_NOTIFY, Notify, Payload, Protocol, nameOf } from "../constants.js";
import { notifies, type DeletePayload, type IkePayload } from "../codec/payloads.js";
import { spiFromBytes, spiToBytes } from "../proposals.js";
import type { Answer, IkeSa } from "../ikeSa.js";
import { completePeerRekey, peerWonIkeRekey } from "./createChildSa.js";

/** The responder's side of an INFORMATIONAL request. */
export function answerInformational(sa: IkeSa, payloads: IkePayload[]): Answer {
  const core = sa.core;
  const deletes = payloads.filter((p): p is DeletePayload => p.type === Payload.DELETE && !("unknown" in p));
  for (const n of notifies(payloads)) {
    if (n.notifyType >= FIRST_STATUS_NOTIFY) continue;
    if (n.notifyType === Notify.AUTHENTICATION_FAILED) {
      // §2.21.2: the initiator refused our authentication after our IKE_AUTH response.
      return { payloads: [], after: () => core.fail(sa, "AUTHENTICATION_FAILED", "the initiator refused our authentication (wrong PSK or ID on its side?)") };
    }
    core.log("warn", "ike-notify", `${sa.peerName}: the peer reports ${nameOf(Notify, n.notifyType)}`, { ...sa.logFields, notify: nameOf(Notify, n.notifyType) });
  }
  if (deletes.some((d) => d.protocol === Protocol.IKE)) {
    if (sa.peerIkeRekey !== undefined && sa.ourIkeRekey === undefined) peerWonIkeRekey(sa);
    if (sa.ourIkeRekey !== undefined && sa.peerIkeRekey !== undefined) {
      // Both sides rekeyed it and the peer's exchange won (§2.8.2): its new SA takes the children; ours,
      // still to be answered, is the redundant one we delete then (createChildSa.ts), so the old SA stays until that answer.
      peerWonIkeRekey(sa);
      return { payloads: [] };
    }
    return {
      payloads: [],
      after: () => {
        const rekeyed = sa.state === "rekeyed";
        core.removeSa(sa, rekeyed ? "rekeyed" : "deleted by the peer");
        if (!rekeyed) core.peerDeleted(sa);
      },
    };
  }
  const ours: Uint8Array[] = [];
  for (const d of deletes) {
    if (d.protocol !== Protocol.ESP || d.spiSize !== 4) continue;
    for (const spiBytes of d.spis) {
      // The peer names the SPIs it receives on: our outbound ones (§3.11).
      const child = sa.children.find((c) => c.outboundSpi === spiFromBytes(spiBytes));
      if (child === undefined) continue;
      if (child.state === "deleting") {
        // §2.25.1: both sides close it: answer without a Delete for it.
        core.removeChild(sa, child, "deleted by both sides");
        continue;
      }
      ours.push(spiToBytes(child.inboundSpi));
      // The old child of a rekey (the peer's, or ours whose DELETE crossed this one): its successor
      // takes over and it lingers for stragglers; any other child goes now.
      if (completePeerRekey(sa, child) || child.state === "rekeyed") continue;
      core.removeChild(sa, child, "deleted by the peer");
    }
  }
  if (ours.length === 0) return { payloads: [] };
  return { payloads: [{ type: Payload.DELETE, protocol: Protocol.ESP, spiSize: 4, spis: ours }] };
}

/** An empty INFORMATIONAL request: is the peer alive? (§1.4) */
export function sendLivenessCheck(sa: IkeSa, now: number): void {
  sa.request(Exchange.INFORMATIONAL, [], () => undefined, now, true);
}

/** Deletes the IKE SA (and with it every child SA, §1.4.1); the SA is gone once answered or given up on. */
export function sendIkeDelete(sa: IkeSa, now: number): void {
  sa.request(Exchange.INFORMATIONAL, [{ type: Payload.DELETE, protocol: Protocol.IKE, spiSize: 0, spis: [] }], () => sa.core.removeSa(sa, "deleted"), now);
}
