/**
 * Byte layouts shared with the WASM kernel (assembly/layout.ts holds the same
 * numbers; test/kernel/layout.test.ts checks that the two files agree).
 */

/** Security association record: a 64-byte header, then the replay bitmap. */
export const SA_SPI = 0;
export const SA_FLAGS = 4;
export const SA_SEQ = 8;
export const SA_SALT = 16;
export const SA_WINDOW = 20;
export const SA_KEY = 24;
export const SA_WORD_MASK = 56;
/** u32: the SA's cipher, CIPHER_* (./cipher.ts names them). */
export const SA_CIPHER = 60;
export const SA_BITMAP = 64;
export const SA_FLAG_ESN = 1;

/** SA_CIPHER values. */
export const CIPHER_CHACHA20_POLY1305 = 0;
export const CIPHER_AES128_GCM = 1;
export const CIPHER_AES256_GCM = 2;

/** Between the passes of an AES-GCM batch only (assembly/layout.ts). */
export const INTERIM_AEAD_PENDING = 13;
export const INTERIM_AEAD_OPENED = 14;

/** Packet descriptor, one per packet of a batch. */
export const D_BUF = 0;
export const D_LEN = 4;
export const D_SA = 8;
export const D_STATUS = 12;
export const D_NEXT_HEADER = 13;
export const D_FLAGS = 14;
export const D_SEQ = 16;
export const D_IV = 24;
export const DESCRIPTOR_SIZE = 32;
export const D_FLAG_IV = 1;

/** ESP framing: SPI ‖ seq ‖ IV before the payload, the ICV after it. */
export const ESP_HEADER = 16;
export const ESP_ICV = 16;
/** Most bytes sealing appends after the inner packet: 3 pad, pad length, next header, ICV. */
export const ESP_TRAILER_MAX = 3 + 2 + ESP_ICV;

/** Key and salt sizes of the RFC 7634 transform. */
export const KEY_BYTES = 32;
export const SALT_BYTES = 4;

/** Replay window bounds, in packets; a multiple of 64. */
export const REPLAY_WINDOW_MIN = 64;
export const REPLAY_WINDOW_MAX = 65536;

/**
 * Bytes an SA record takes for a replay window of `window` packets: the header
 * and a ring of 64-bit words, at least window / 64 + 1 of them and a power of
 * two (RFC 6479 §2), so that the ring index is a mask.
 */
export function saRecordSize(window: number): number {
  return SA_BITMAP + 8 * saBitmapWords(window);
}

export function saBitmapWords(window: number): number {
  let words = 1;
  while (words < window / 64 + 1) words *= 2;
  return words;
}
