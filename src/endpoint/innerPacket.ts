/**
 * Just enough of the inner IP header to route a packet: its version and
 * where its source and destination addresses are. No parsing beyond that:
 * the kernel behind the TUN validated what it wrote, and what a peer sent
 * was authenticated before it is looked at.
 */
export interface InnerAddresses {
  family: 4 | 6;
  /** Byte offsets of the source and destination addresses. */
  source: number;
  destination: number;
  /** ESP next header for this packet: 4 or 41. */
  nextHeader: 4 | 41;
}

/** Where the addresses of the packet at bytes[at, at + length) are, or null if it is not a whole IPv4/IPv6 header. */
export function innerAddresses(bytes: Uint8Array, at: number, length: number): InnerAddresses | null {
  if (length < 1) return null;
  const version = bytes[at]! >> 4;
  if (version === 4 && length >= 20) return { family: 4, source: at + 12, destination: at + 16, nextHeader: 4 };
  if (version === 6 && length >= 40) return { family: 6, source: at + 8, destination: at + 24, nextHeader: 41 };
  return null;
}
