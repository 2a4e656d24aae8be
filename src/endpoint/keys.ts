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
 */
import { readFileSync } from "node:fs";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import type { KeySource } from "./config.js";

export const KEYMAT_BYTES = 36;

export interface SaKeys {
  key: Uint8Array;
  salt: Uint8Array;
}

function describeSource(source: KeySource): string {
  return "file" in source ? `file ${source.file}` : `environment variable ${source.env}`;
}

/** The raw text of a key source. */
export function readSource(source: KeySource, env: NodeJS.ProcessEnv = process.env): string {
  if ("file" in source) {
    try {
      return readFileSync(source.file, "utf8");
    } catch (error) {
      throw new Error(`cannot read key ${describeSource(source)}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
  const value = env[source.env];
  if (value === undefined || value === "") throw new Error(`key ${describeSource(source)} is not set`);
  return value;
}

/** key ‖ salt as 72 hex digits (whitespace ignored). */
export function loadKeymat(source: KeySource, env?: NodeJS.ProcessEnv): SaKeys {
  const text = readSource(source, env).replace(/\s+/g, "");
  if (!/^[0-9a-fA-F]{72}$/.test(text)) {
    throw new Error(`key ${describeSource(source)} must hold 72 hex digits (32-byte key and 4-byte salt), found ${text.length} characters`);
  }
  const bytes = Uint8Array.from(Buffer.from(text, "hex"));
  return { key: bytes.slice(0, 32), salt: bytes.slice(32, 36) };
}

/** A shared secret: at least 32 bytes, given as hex (64+ digits) or as text of 32+ characters. */
export function loadSecret(source: KeySource, env?: NodeJS.ProcessEnv): Uint8Array {
  const text = readSource(source, env).trim();
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 64) return Uint8Array.from(Buffer.from(text, "hex"));
  if (text.length < 32) throw new Error(`secret ${describeSource(source)} is too short: give at least 32 bytes (64 hex digits)`);
  return new TextEncoder().encode(text);
}

/** The key and salt of the SA `spi`, whose reverse SA is `reverseSpi`. */
export function deriveSaKeys(secret: Uint8Array, spi: number, reverseSpi: number): SaKeys {
  const info = new Uint8Array(8);
  const view = new DataView(info.buffer);
  view.setUint32(0, spi);
  view.setUint32(4, reverseSpi);
  const okm = hkdf(sha256, secret, new TextEncoder().encode("sluice esp v1"), info, KEYMAT_BYTES);
  const keys = { key: okm.slice(0, 32), salt: okm.slice(32, 36) };
  okm.fill(0);
  return keys;
}
