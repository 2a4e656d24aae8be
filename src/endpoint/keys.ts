/**
 * Key material for static SAs: read from a file or an environment variable
 * (never from the config itself), or derived from one shared secret.
 *
 * Derivation: for the SA whose SPI is `spi` and whose reverse SA's SPI is
 * `reverseSpi`, key ‖ salt = HKDF-SHA256(ikm = secret, salt = "sluice esp v1",
 * info = be32(spi) ‖ be32(reverseSpi), 36 bytes). One side's outbound SA is
 * the other's inbound SA with the same two SPIs in the same order, so both
 * derive the same bytes; the two directions differ by SPI order. Errors name
 * where the material came from, never the material.
 *
 * A key file that anyone but its owner may read has leaked, and one they may
 * write can be swapped for a key they know: such a file is refused, in one
 * line that names the file, its mode and the chmod that fixes it, as OpenSSH
 * refuses a private key that is "too open" (wg only warns). Every file that
 * holds key material is read through readKeyFile, so the rule is one rule.
 */
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import type { KeySource } from "./config.js";
import { cipherKeyBytes, cipherKeymatBytes, type EspCipher } from "../kernel/cipher.js";

export const KEYMAT_BYTES = 36;

export interface SaKeys {
  key: Uint8Array;
  salt: Uint8Array;
}

function describeSource(source: KeySource): string {
  return "file" in source ? `file ${source.file}` : `environment variable ${source.env}`;
}

/** Permission bits that let the file's group or others read or write it. */
const SHARED_BITS = 0o066;

/**
 * Throws unless only the file's owner may read or write it (`mode` & 0o066
 * is 0; execute bits do not matter).
 * @param path named in the message
 * @param mode the file's st_mode
 * @throws Error with one line, e.g. `key file /etc/sluice/b.secret is mode
 *   0644, readable by group and others: run chmod 600 /etc/sluice/b.secret`
 */
export function checkKeyFileMode(path: string, mode: number): void {
  if ((mode & SHARED_BITS) === 0) return;
  const who = (read: number, write: number, verb: string): string | undefined => {
    const names = [mode & read ? "group" : "", mode & write ? "others" : ""].filter((n) => n !== "");
    return names.length ? `${verb} by ${names.join(" and ")}` : undefined;
  };
  const access = [who(0o040, 0o004, "readable"), who(0o020, 0o002, "writable")].filter((a) => a !== undefined).join(", ");
  const octal = (mode & 0o7777).toString(8).padStart(4, "0");
  throw new Error(`key file ${path} is mode ${octal}, ${access}: run chmod 600 ${shellWord(path)}`);
}

/**
 * Reads a file of key material (a shared secret, SA keys, an IKE PSK or
 * private key) after checking its mode with checkKeyFileMode. The mode is
 * taken from the opened file, so the file checked is the file read.
 * @example
 * ```ts
 * const psk = readKeyFile("/etc/sluice/site-b.psk"); // throws if group or others may read or write it
 * ```
 * @throws Error `cannot read key file PATH: ENOENT` (or the errno), or checkKeyFileMode's error
 */
export function readKeyFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw cannotRead(path, error);
  }
  try {
    checkKeyFileMode(path, fstatSync(fd).mode);
    try {
      return readFileSync(fd);
    } catch (error) {
      throw cannotRead(path, error);
    }
  } finally {
    closeSync(fd);
  }
}

function cannotRead(path: string, error: unknown): Error {
  return new Error(`cannot read key file ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
}

/** `path` as one word of a shell command: quoted unless it is plain. */
function shellWord(path: string): string {
  return /^[\w./@%+=:,-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

/** The raw text of a key source. */
export function readSource(source: KeySource, env: NodeJS.ProcessEnv = process.env): string {
  if ("file" in source) {
    const bytes = readKeyFile(source.file);
    const text = bytes.toString("utf8");
    bytes.fill(0);
    return text;
  }
  const value = env[source.env];
  if (value === undefined || value === "") throw new Error(`key ${describeSource(source)} is not set`);
  return value;
}

/**
 * key ‖ salt as hex digits (whitespace ignored): 72 for a 32-byte key
 * (chacha20poly1305, aes256gcm16), 40 for aes128gcm16's 16-byte key. The
 * KEYMAT layout of RFC 7634 §2 and RFC 4106 §8.1.
 */
export function loadKeymat(source: KeySource, env?: NodeJS.ProcessEnv, cipher: EspCipher = "chacha20poly1305"): SaKeys {
  const text = readSource(source, env).replace(/\s+/g, "");
  const keyBytes = cipherKeyBytes(cipher);
  const digits = 2 * cipherKeymatBytes(cipher);
  if (text.length !== digits || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new Error(`key ${describeSource(source)} must hold ${digits} hex digits (${keyBytes}-byte ${cipher} key and 4-byte salt), found ${text.length} characters`);
  }
  const bytes = Uint8Array.from(Buffer.from(text, "hex"));
  const keys = { key: bytes.slice(0, keyBytes), salt: bytes.slice(keyBytes, keyBytes + 4) };
  bytes.fill(0);
  return keys;
}

/** A shared secret: at least 32 bytes, given as hex (64+ digits) or as text of 32+ characters. */
export function loadSecret(source: KeySource, env?: NodeJS.ProcessEnv): Uint8Array {
  const text = readSource(source, env).trim();
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 64) return Uint8Array.from(Buffer.from(text, "hex"));
  if (text.length < 32) throw new Error(`secret ${describeSource(source)} is too short: give at least 32 bytes (64 hex digits)`);
  return new TextEncoder().encode(text);
}

/**
 * The key and salt of the SA `spi`, whose reverse SA is `reverseSpi`. An AES
 * cipher's name is appended to the info, so one secret never gives the same
 * key bytes to two ciphers; ChaCha20-Poly1305's derivation is unchanged.
 */
export function deriveSaKeys(secret: Uint8Array, spi: number, reverseSpi: number, cipher: EspCipher = "chacha20poly1305"): SaKeys {
  const label = cipher === "chacha20poly1305" ? "" : cipher;
  const info = new Uint8Array(8 + label.length);
  const view = new DataView(info.buffer);
  view.setUint32(0, spi);
  view.setUint32(4, reverseSpi);
  info.set(new TextEncoder().encode(label), 8);
  const keyBytes = cipherKeyBytes(cipher);
  const okm = hkdf(sha256, secret, new TextEncoder().encode("sluice esp v1"), info, cipherKeymatBytes(cipher));
  const keys = { key: okm.slice(0, keyBytes), salt: okm.slice(keyBytes, keyBytes + 4) };
  okm.fill(0);
  return keys;
}
