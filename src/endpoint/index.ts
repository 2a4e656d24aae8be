/**
 * `sluice/endpoint`: the VPN endpoint for applications that embed it rather
 * than run `sluice up`. The pieces an embedding needs, from one place: the
 * config parser, the I/O path choice (selectIoPath) and the Endpoint. On the
 * portable path the application is the endpoint's inner side (sendInner /
 * onInnerPacket); see endpoint.ts. A negotiating control plane (IKE) drives
 * the peer table (endpoint.table), control datagrams (sendControl,
 * setControlHooks) and registers its metrics on endpoint.metrics.registry.
 *
 * @example
 * ```ts
 * import { pino } from "pino";
 * import { Endpoint, parseConfig, selectIoPath } from "sluice/endpoint";
 * const endpoint = await Endpoint.start(parseConfig(text), selectIoPath(), pino(), {
 *   onInnerPacket: (packet, peer) => deliver(packet.slice(), peer),   // portable path only
 * });
 * ```
 */
export { Endpoint, type EndpointOptions, type EndpointIo, type EndpointCounters, type InnerPacketHandler, type ControlHooks } from "./endpoint.js";
export { PeerTable, type PeerSpec, type ChildSpec, type ChildSaKeys } from "./peerTable.js";
export { Peer, Child, type ChildCounters } from "./peer.js";
export { parsePrefix, type Prefix } from "./prefix.js";
export { EndpointMetrics } from "./metrics.js";
export type { SocketAddress } from "../io/address.js";
export { parseConfig, ConfigError, type EndpointConfig, type PeerConfig } from "./config.js";
export { selectIoPath, type IoPath } from "../io/index.js";
