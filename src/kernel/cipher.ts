/**
 * The AEADs an SA may use, by the names strongSwan's proposals give them
 * (and sluice.toml's `cipher` key takes):
 *
 * - `chacha20poly1305`: ChaCha20-Poly1305 (RFC 7634), 32-byte key, in the WASM kernel
 * - `aes128gcm16`: AES-GCM with a 16-byte ICV (RFC 4106), 16-byte key
 * - `aes256gcm16`: the same with a 32-byte key
 *
 * All three take a 4-byte salt and the same ESP framing (8-byte IV = the
 * sequence number, 16-byte ICV, AAD = SPI ‖ seq), so they share SA records,
 * descriptors and statuses; only the AEAD step differs (./gcm.ts runs AES).
 */
import { describe } from "../argumentChecks.js";
import { CIPHER_CHACHA20_POLY1305, CIPHER_AES128_GCM, CIPHER_AES256_GCM } from "./layout.js";

/** An SA's cipher. */
export type EspCipher = "chacha20poly1305" | "aes128gcm16" | "aes256gcm16";

/** Every cipher, ChaCha20-Poly1305 first (the default). */
export const ESP_CIPHERS: readonly EspCipher[] = ["chacha20poly1305", "aes128gcm16", "aes256gcm16"];

const CODES: Record<EspCipher, number> = {
  chacha20poly1305: CIPHER_CHACHA20_POLY1305,
  aes128gcm16: CIPHER_AES128_GCM,
  aes256gcm16: CIPHER_AES256_GCM,
};

/** Whether `value` names a cipher. */
export function isEspCipher(value: unknown): value is EspCipher {
  return typeof value === "string" && Object.hasOwn(CODES, value);
}

/** Throws a TypeError naming `name` unless value is a cipher name. */
export function checkCipher(name: string, value: unknown): EspCipher {
  if (!isEspCipher(value)) throw new TypeError(`${name} must be one of ${ESP_CIPHERS.join(", ")}, got ${describe(value)}`);
  return value;
}

/** The SA record's SA_CIPHER value. */
export function cipherCode(cipher: EspCipher): number {
  return CODES[cipher];
}

/** Key bytes of a cipher (the salt is 4 bytes for every one). */
export function cipherKeyBytes(cipher: EspCipher): number {
  return cipher === "aes128gcm16" ? 16 : 32;
}

/** KEYMAT bytes per direction: key then salt (RFC 7634 §2, RFC 4106 §8.1). */
export function cipherKeymatBytes(cipher: EspCipher): number {
  return cipherKeyBytes(cipher) + 4;
}
