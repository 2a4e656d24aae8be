/**
 * NAT detection (RFC 7296 §2.23): each side sends
 * SHA-1(SPIi | SPIr | IP address | port) of where it sends from
 * (NAT_DETECTION_SOURCE_IP) and of where it sends to
 * (NAT_DETECTION_DESTINATION_IP); a mismatch at the receiver means a NAT
 * changed that address on the way.
 *
 * Why sluice fakes its own source hash (as strongSwan's `encap = yes`
 * does): its data plane carries ESP only in UDP (RFC 3948), never raw ESP
 * (IP protocol 50), so the peer must believe there is a NAT and encapsulate.
 * Whether a NAT really is in the path is still computed from the peer's
 * hashes, and decides whether sluice sends NAT keepalives.
 */
import { sha1 } from "@noble/hashes/legacy.js";
import { isIP } from "node:net";
import { addressBytes } from "../endpoint/prefix.js";
import { equalBytes } from "./codec/bytes.js";

/** An address and port as the IKE core sees them. */
export interface Endpoint {
  address: string;
  port: number;
}

/**
 * SHA-1(SPIi | SPIr | IP | port). SHA-1 from @noble/hashes: for these 22 or
 * 34 bytes it is faster than a node:crypto Hash object, and leaves no native
 * object behind for the garbage collector (four per handshake and side).
 */
export function natHash(spiI: bigint, spiR: bigint, endpoint: Endpoint): Uint8Array {
  const address = addressBytes(endpoint.address, isIP(endpoint.address) === 6 ? 6 : 4);
  const input = new Uint8Array(16 + address.length + 2);
  const view = new DataView(input.buffer);
  view.setBigUint64(0, spiI);
  view.setBigUint64(8, spiR);
  input.set(address, 16);
  view.setUint16(16 + address.length, endpoint.port);
  return sha1(input);
}

/** Whether any of the received hashes equals the hash of any of `endpoints` (§2.23: any match means no NAT for that side). */
export function natHashMatches(received: readonly Uint8Array[], spiI: bigint, spiR: bigint, endpoints: readonly Endpoint[]): boolean {
  return endpoints.some((endpoint) => {
    const expected = natHash(spiI, spiR, endpoint);
    return received.some((hash) => equalBytes(hash, expected));
  });
}
