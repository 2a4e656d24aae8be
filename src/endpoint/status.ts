/**
 * What `sluice status` answers over the control socket (JSON, `sluice
 * status --json` prints it as it comes): the shapes the endpoint builds, the
 * CLI formats and the tests read, written once here.
 */
import type { IkeCounters, IkeSaStatus } from "../ike/core.js";
import type { DosStatus } from "../ike/dosGuard.js";
import type { EndpointIo } from "./endpoint.js";
import type { ChildCounters } from "./peer.js";

/** Age, and when the SA is due to be rekeyed and to expire, in whole seconds from the answer. */
export type StatusTimes = { ageSeconds: number; rekeyInSeconds?: number; expireInSeconds?: number };

/** A child SA of an IKE SA: the core's view, its times and its traffic. */
export type ChildStatus = IkeSaStatus["children"][number] & StatusTimes & ChildCounters;

/** An IKE SA with its children (the core's IkeSaStatus, times in seconds from now). */
export type IkeStatus = Omit<IkeSaStatus, "children"> & StatusTimes & { children: ChildStatus[] };

/** A static-key peer's one child. */
export type StaticPeerStatus = { name: string; address: string; spiIn: string; spiOut: string } & ChildCounters;

/**
 * The whole answer.
 *
 * @example
 * const status: EndpointStatus = endpoint.status();
 * for (const sa of status.ike) console.log(sa.peer, sa.state, sa.virtualIps);
 */
export type EndpointStatus = {
  io: EndpointIo;
  staticPeers: StaticPeerStatus[];
  ike: IkeStatus[];
  /** What the IKE core counted (drops and refusals by reason, cookies on or off); absent without IKE peers. */
  ikeCounters?: IkeCounters & { dos: DosStatus };
};
