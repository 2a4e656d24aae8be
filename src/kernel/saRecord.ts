/**
 * Writing and validating SA records (layout: ./layout.ts). Shared by the
 * one-shot ESP API and the engine, which keep SA records in different memories.
 */
import { checkBytes, describe } from "../argumentChecks.js";
import {
  SALT_BYTES, REPLAY_WINDOW_MIN, REPLAY_WINDOW_MAX,
  SA_SPI, SA_FLAGS, SA_SEQ, SA_SALT, SA_WINDOW, SA_KEY, SA_WORD_MASK, SA_CIPHER, SA_FLAG_ESN,
  saBitmapWords, saRecordSize,
} from "./layout.js";
import { checkCipher, cipherCode, cipherKeyBytes, type EspCipher } from "./cipher.js";

/** Parameters of one security association (RFC 4303 with RFC 7634 or RFC 4106). */
export interface SaParams {
  /** Security Parameter Index, 1 … 2^32 − 1 (0 is reserved, RFC 4303 §2.1). */
  spi: number;
  /**
   * The AEAD (./cipher.ts): "chacha20poly1305" (default), "aes128gcm16" or
   * "aes256gcm16".
   */
  cipher?: EspCipher;
  /** The cipher's key: 32 bytes (ChaCha20, AES-256), 16 (AES-128). */
  key: Uint8Array;
  /** Nonce salt, 4 bytes (RFC 7634 §2, RFC 4106 §4). */
  salt: Uint8Array;
  /** Extended (64-bit) sequence numbers, RFC 4303 §2.2.1. Default false. */
  esn?: boolean;
}

/** A validated SA, ready to be written into a record. */
export interface SaSpec {
  spi: number;
  cipher: EspCipher;
  key: Uint8Array;
  salt: Uint8Array;
  esn: boolean;
  replayWindow: number;
  /** The sequence counter: last number used (outbound) or highest accepted (inbound). */
  seq: bigint;
}

/** Checks SA parameters and fills in defaults; errors name the parameter and the problem. */
export function validateSa(params: SaParams, replayWindow: unknown = 1024, seq: unknown = 0n): SaSpec {
  if (typeof params !== "object" || params === null) throw new TypeError("SA parameters must be an object");
  const { spi, key, salt, esn = false } = params;
  if (!Number.isInteger(spi) || spi < 1 || spi > 0xffffffff) {
    throw new RangeError(`spi must be an integer from 1 to 4294967295, got ${describe(spi)}`);
  }
  const cipher = checkCipher("cipher", params.cipher ?? "chacha20poly1305");
  checkBytes("key", key, cipherKeyBytes(cipher));
  checkBytes("salt", salt, SALT_BYTES);
  if (typeof esn !== "boolean") throw new TypeError(`esn must be a boolean, got ${typeof esn}`);
  if (typeof replayWindow !== "number" || !Number.isInteger(replayWindow) || replayWindow % 64 !== 0 ||
      replayWindow < REPLAY_WINDOW_MIN || replayWindow > REPLAY_WINDOW_MAX) {
    throw new RangeError(`replayWindow must be a multiple of 64 from ${REPLAY_WINDOW_MIN} to ${REPLAY_WINDOW_MAX}, got ${describe(replayWindow)}`);
  }
  const limit = esn ? 0xffffffffffffffffn : 0xffffffffn;
  if (typeof seq !== "bigint" || seq < 0n || seq > limit) {
    throw new RangeError(`seq must be a bigint from 0 to ${limit}, got ${describe(seq)}`);
  }
  return { spi, cipher, key, salt, esn, replayWindow, seq };
}

export function recordSize(spec: SaSpec): number {
  return saRecordSize(spec.replayWindow);
}

/** Writes an SA record at `at` (which must be zeroed, bitmap included). */
export function writeSaRecord(bytes: Uint8Array, view: DataView, at: number, spec: SaSpec): void {
  view.setUint32(at + SA_SPI, spec.spi, true);
  view.setUint32(at + SA_FLAGS, spec.esn ? SA_FLAG_ESN : 0, true);
  view.setBigUint64(at + SA_SEQ, spec.seq, true);
  bytes.set(spec.salt, at + SA_SALT);
  view.setUint32(at + SA_WINDOW, spec.replayWindow, true);
  bytes.set(spec.key, at + SA_KEY);
  view.setUint32(at + SA_WORD_MASK, saBitmapWords(spec.replayWindow) - 1, true);
  view.setUint32(at + SA_CIPHER, cipherCode(spec.cipher), true);
}
