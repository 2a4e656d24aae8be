/**
 * What a datagram on the ESP-in-UDP port is (RFC 3948 §2): the port carries
 * ESP, IKE and NAT keepalives together, told apart by their first bytes.
 *
 * - one byte 0xFF: a NAT keepalive (§2.3), counted and dropped;
 * - four zero bytes first (the non-ESP marker, §2.2): IKE, handed to the
 *   control plane without the marker;
 * - otherwise ESP (§2.1: an SPI is never zero), at least an SPI and a
 *   sequence number long.
 *
 * Why a function of its own: the three receive paths (recvmmsg, GRO,
 * node:dgram) ask the same question of every datagram, and the answer must
 * not depend on the path (the forwarder's classify acts on it).
 */

/** An ESP packet: look its SPI up. */
export const KIND_ESP = 0;
/** IKE (after the non-ESP marker). */
export const KIND_IKE = 1;
/** A NAT keepalive. */
export const KIND_KEEPALIVE = 2;
/** Too short to be ESP: dropped as "udp-malformed". */
export const KIND_MALFORMED = 3;
/** Cut by the receive (longer than the buffer): dropped as "udp-truncated". */
export const KIND_TRUNCATED = 4;

export type DatagramKind = typeof KIND_ESP | typeof KIND_IKE | typeof KIND_KEEPALIVE | typeof KIND_MALFORMED | typeof KIND_TRUNCATED;

/** The non-ESP marker's length: IKE's bytes start after it. */
export const NON_ESP_MARKER = 4;

/**
 * The kind of the datagram at bytes[at, at + length); a negative length is
 * the receive's mark of a datagram that did not fit.
 * @example
 * ```ts
 * datagramKind(Uint8Array.of(0xff), 0, 1) === KIND_KEEPALIVE;
 * datagramKind(Uint8Array.of(0, 0, 0, 0, 0x11, 0x22), 0, 6) === KIND_IKE;
 * ```
 */
export function datagramKind(bytes: Uint8Array, at: number, length: number): DatagramKind {
  if (length < 0) return KIND_TRUNCATED;
  if (length === 1 && bytes[at] === 0xff) return KIND_KEEPALIVE;
  if (length >= NON_ESP_MARKER && bytes[at] === 0 && bytes[at + 1] === 0 && bytes[at + 2] === 0 && bytes[at + 3] === 0) return KIND_IKE;
  if (length < 8) return KIND_MALFORMED;
  return KIND_ESP;
}
