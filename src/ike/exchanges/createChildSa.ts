/**
 * CREATE_CHILD_SA (RFC 7296 §1.3): more child SAs, and rekeying of child
 * SAs and of the IKE SA.
 *
 * Not negotiated yet (rekeying is its own piece of work): a request is
 * answered with NO_ADDITIONAL_SAS (§1.3), which every peer understands as
 * "not now", and logged; the existing SAs are left as they are.
 */
import { Notify } from "../constants.js";
import { notify, type IkePayload } from "../codec/payloads.js";
import type { Answer, IkeSa } from "../ikeSa.js";

export function answerCreateChild(sa: IkeSa, _payloads: IkePayload[]): Answer {
  sa.core.log("warn", "create-child-refused", `${sa.peerName}: CREATE_CHILD_SA (rekey or a new child SA) is not supported yet; answered NO_ADDITIONAL_SAS`, sa.logFields);
  return { payloads: [notify(Notify.NO_ADDITIONAL_SAS)] };
}
