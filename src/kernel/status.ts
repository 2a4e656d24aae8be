/**
 * Per-packet outcomes of sealing and opening. The numbers are the kernel's
 * (assembly/layout.ts); the strings are what the public API reports.
 *
 * - `ok`: sealed, or opened and authentic with a valid trailer
 * - `auth`: the ICV did not verify (forged, corrupted, or wrong key)
 * - `replay`: the sequence number was already accepted inside the window
 * - `too-old`: the sequence number lies left of the replay window
 * - `truncated`: shorter than SPI ‖ sequence number ‖ IV (16 bytes)
 * - `malformed`: no room for pad length, next header and ICV, or a ciphertext
 *   not ending on a 4-byte boundary (RFC 4303 §2.4)
 * - `bad-padding`: pad bytes other than 1, 2, 3, … (RFC 4303 §2.4)
 * - `bad-pad-length`: the pad length runs past the start of the payload
 * - `unknown-sa`: the SPI is not the SA's
 * - `bad-next-header`: the next header is neither 4 (IPv4) nor 41 (IPv6)
 * - `seq-exhausted`: sealing refused, the sequence counter would wrap; rekey
 * - `dummy`: next header 59, a dummy packet (RFC 4303 §2.6), dropped
 * - `worker-failed`: (engine) the worker running the batch threw or died; the
 *   packet was neither sealed nor opened. Never produced by the kernel itself.
 */
export type PacketStatus =
  | "ok"
  | "auth"
  | "replay"
  | "too-old"
  | "truncated"
  | "malformed"
  | "bad-padding"
  | "bad-pad-length"
  | "unknown-sa"
  | "bad-next-header"
  | "seq-exhausted"
  | "dummy"
  | "worker-failed";

/** Index = the kernel's status number. */
export const PACKET_STATUSES: readonly PacketStatus[] = [
  "ok",
  "auth",
  "replay",
  "too-old",
  "truncated",
  "malformed",
  "bad-padding",
  "bad-pad-length",
  "unknown-sa",
  "bad-next-header",
  "seq-exhausted",
  "dummy",
  "worker-failed",
];

/** The kernel status numbers the engine uses by name. */
export const STATUS_OK = 0;
export const STATUS_WORKER_FAILED = 12;

export function statusName(code: number): PacketStatus {
  const name = PACKET_STATUSES[code];
  if (name === undefined) throw new RangeError(`unknown kernel status ${code}`);
  return name;
}
