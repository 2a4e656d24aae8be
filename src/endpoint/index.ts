/**
 * `sluice/endpoint`: the VPN endpoint for applications that embed it rather
 * than run `sluice up`. The pieces an embedding needs, from one place: the
 * config parser, the I/O path choice (selectIoPath) and the Endpoint. On the
 * portable path the application is the endpoint's inner side (sendInner /
 * onInnerPacket); see endpoint.ts.
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
export { Endpoint, type EndpointOptions, type EndpointIo, type EndpointCounters, type InnerPacketHandler } from "./endpoint.js";
export { parseConfig, ConfigError, type EndpointConfig, type PeerConfig } from "./config.js";
export { selectIoPath, type IoPath } from "../io/index.js";
