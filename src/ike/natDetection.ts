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
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { addressBytes } from "../endpoint/prefix.js";
import { equalBytes } from "./codec/bytes.js";

/** An address and port as the IKE core sees them. */
export interface Endpoint {
  address: string;
  port: number;
}

/** SHA-1(SPIi | SPIr | IP | port). */
export function natHash(spiI: bigint, spiR: bigint, endpoint: Endpoint): Uint8Array {
  const family = isIP(endpoint.address) === 6 ? 6 : 4;
  const head = new Uint8Array(16);
  const view = new DataView(head.buffer);
  view.setBigUint64(0, spiI);
  view.setBigUint64(8, spiR);
  const port = new Uint8Array([endpoint.port >> 8, endpoint.port & 0xff]);
  return new Uint8Array(createHash("sha1").update(head).update(addressBytes(endpoint.address, family)).update(port).digest());
}

/** Whether any of the received hashes equals the hash of any of `endpoints` (§2.23: any match means no NAT for that side). */
export function natHashMatches(received: readonly Uint8Array[], spiI: bigint, spiR: bigint, endpoints: readonly Endpoint[]): boolean {
  return endpoints.some((endpoint) => {
    const expected = natHash(spiI, spiR, endpoint);
    return received.some((hash) => equalBytes(hash, expected));
  });
}
