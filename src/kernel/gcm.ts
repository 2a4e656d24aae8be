/**
 * The AES pass of AES-GCM SAs (RFC 4106): the AEAD step of the packets the
 * WASM kernel left INTERIM_AEAD_PENDING (assembly/esp.ts frames them, checks
 * replay and trailers; this only seals or opens).
 *
 * Two paths, the same contract (native/src/gcm.c has the details):
 * - "native": one call into the sluice_io addon per batch, which runs
 *   Node's own OpenSSL (AES-NI/VAES + PCLMUL, constant time) in place over
 *   the shared memory, one cached EVP context per SA key.
 * - "portable": node:crypto per packet (the same OpenSSL, with a cipher
 *   object, a copy and some JS per packet): when the addon is not built, or
 *   SLUICE_AES=portable asks for it (tests). Slower, still constant time.
 *
 * Loading never throws; `aesGcmPass().reason` says why the portable path runs.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { createRequire } from "node:module";
import { nativeIoAddonPath } from "../io/native.js";
import {
  D_BUF, D_LEN, D_SA, D_STATUS, D_SEQ, DESCRIPTOR_SIZE, ESP_HEADER, ESP_ICV,
  SA_FLAGS, SA_FLAG_ESN, SA_SALT, SA_KEY, SA_CIPHER, CIPHER_AES128_GCM, CIPHER_AES256_GCM,
  INTERIM_AEAD_PENDING, INTERIM_AEAD_OPENED,
} from "./layout.js";

/** Batch ops, as in the engine's control block (src/engine/dispatch.ts). */
export const GCM_SEAL = 1;
export const GCM_OPEN = 2;

const STATUS_OK = 0;
const STATUS_AUTH = 1;
const STATUS_MALFORMED = 5;

/** Runs the AES-GCM step of a batch's pending descriptors. */
export interface AesGcmPass {
  /** Which path runs: the addon on Node's OpenSSL, or node:crypto per packet. */
  readonly path: "native" | "portable";
  /** Why the portable path runs (null on the native one). */
  readonly reason: string | null;
  /** Seals (GCM_SEAL) or opens (GCM_OPEN) every INTERIM_AEAD_PENDING descriptor of the batch. */
  run(memory: Uint8Array, descriptors: number, count: number, op: number): void;
  /** Drops cached keys whose SA record was wiped (call when SAs were removed, or when idle). */
  sweep(memory: Uint8Array): void;
  /**
   * One message (sluice/crypto): sealing writes ciphertext ‖ tag to output;
   * opening writes the plaintext only when input's tag verifies (else false,
   * output untouched). Arguments are checked by the caller.
   */
  once(encrypt: boolean, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array): boolean;
  /** How many SA keys this thread's cache holds (0 on the portable path, which caches none). */
  cachedKeys(): number;
}

interface GcmAddon {
  gcmInfo(): { ok: boolean; reason?: string; version?: string };
  gcmBatch(memory: Uint8Array, descriptors: number, count: number, op: number): number;
  gcmSweep(memory: Uint8Array): number;
  gcmOnce(encrypt: boolean, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array): boolean;
  gcmCached(): number;
}

let pass: AesGcmPass | undefined;

/** This thread's AES pass, chosen on first use. */
export function aesGcmPass(): AesGcmPass {
  return (pass ??= choose());
}

function choose(): AesGcmPass {
  if (process.env.SLUICE_AES === "portable") return portable("SLUICE_AES=portable asks for the portable path");
  let addon: Partial<GcmAddon>;
  try {
    addon = createRequire(import.meta.url)(nativeIoAddonPath) as Partial<GcmAddon>;
  } catch (error) {
    return portable(`the native addon did not load (${firstLine(error)})`);
  }
  if (typeof addon.gcmBatch !== "function" || typeof addon.gcmInfo !== "function" || typeof addon.gcmSweep !== "function" ||
      typeof addon.gcmOnce !== "function" || typeof addon.gcmCached !== "function") {
    return portable("the native addon has no AES-GCM (an older build: npm run build:native)");
  }
  const info = addon.gcmInfo();
  if (!info.ok) return portable(info.reason ?? "the native AES-GCM is unavailable");
  const { gcmBatch, gcmSweep, gcmOnce, gcmCached } = addon as GcmAddon;
  return {
    path: "native",
    reason: null,
    run: (memory, descriptors, count, op) => void gcmBatch(memory, descriptors, count, op),
    sweep: (memory) => void gcmSweep(memory),
    once: gcmOnce,
    cachedKeys: gcmCached,
  };
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

function portable(reason: string): AesGcmPass {
  return { path: "portable", reason, run: runPortable, sweep: () => {}, once: oncePortable, cachedKeys: () => 0 };
}

function oncePortable(encrypt: boolean, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array): boolean {
  const algorithm = key.length === 16 ? "aes-128-gcm" : "aes-256-gcm";
  if (encrypt) {
    const cipher = createCipheriv(algorithm, key, nonce, { authTagLength: 16 });
    cipher.setAAD(aad);
    const body = cipher.update(input);
    const rest = cipher.final();
    output.set(body, 0);
    output.set(rest, body.length);
    output.set(cipher.getAuthTag(), input.length);
    return true;
  }
  const length = input.length - 16;
  const decipher = createDecipheriv(algorithm, key, nonce, { authTagLength: 16 });
  decipher.setAAD(aad);
  decipher.setAuthTag(input.subarray(length));
  const plain = decipher.update(input.subarray(0, length));
  try {
    const rest = decipher.final();
    output.set(plain, 0);
    output.set(rest, plain.length);
    return true;
  } catch {
    return false;
  } finally {
    plain.fill(0);
  }
}

/** node:crypto, one packet at a time; see native/src/gcm.c for the framing. */
function runPortable(memory: Uint8Array, descriptors: number, count: number, op: number): void {
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  for (let i = 0; i < count; i++) {
    const d = descriptors + i * DESCRIPTOR_SIZE;
    if (view.getUint8(d + D_STATUS) !== INTERIM_AEAD_PENDING) continue;
    view.setUint8(d + D_STATUS, portableOne(memory, view, d, op));
  }
}

function portableOne(memory: Uint8Array, view: DataView, d: number, op: number): number {
  const buf = view.getUint32(d + D_BUF, true);
  const len = view.getUint32(d + D_LEN, true);
  const sa = view.getUint32(d + D_SA, true);
  const code = view.getUint32(sa + SA_CIPHER, true);
  if (len < ESP_HEADER + ESP_ICV || (code !== CIPHER_AES128_GCM && code !== CIPHER_AES256_GCM)) return STATUS_MALFORMED;
  const keyBytes = code === CIPHER_AES128_GCM ? 16 : 32;
  const algorithm = code === CIPHER_AES128_GCM ? "aes-128-gcm" : "aes-256-gcm";
  // Copies: node:crypto keeps what it is given; the key copy is wiped below.
  const key = memory.slice(sa + SA_KEY, sa + SA_KEY + keyBytes);
  const nonce = new Uint8Array(12); // RFC 4106 §4: salt ‖ IV
  nonce.set(memory.subarray(sa + SA_SALT, sa + SA_SALT + 4), 0);
  nonce.set(memory.subarray(buf + 8, buf + 16), 4);
  // RFC 4106 §5: SPI ‖ seq-low, or SPI ‖ seq-high ‖ seq-low with ESN.
  const esn = (view.getUint32(sa + SA_FLAGS, true) & SA_FLAG_ESN) !== 0;
  const aad = new Uint8Array(esn ? 12 : 8);
  aad.set(memory.subarray(buf, buf + 4), 0);
  if (esn) {
    new DataView(aad.buffer).setUint32(4, view.getUint32(d + D_SEQ + 4, true), false);
    aad.set(memory.subarray(buf + 4, buf + 8), 8);
  } else {
    aad.set(memory.subarray(buf + 4, buf + 8), 4);
  }
  const payload = buf + ESP_HEADER;
  const ctLen = len - ESP_HEADER - ESP_ICV;
  const data = memory.slice(payload, payload + ctLen);
  try {
    if (op === GCM_SEAL) {
      const cipher = createCipheriv(algorithm, key, nonce, { authTagLength: 16 });
      cipher.setAAD(aad);
      const out = cipher.update(data);
      const rest = cipher.final();
      memory.set(out, payload);
      memory.set(rest, payload + out.length);
      memory.set(cipher.getAuthTag(), payload + ctLen);
      return STATUS_OK;
    }
    const decipher = createDecipheriv(algorithm, key, nonce, { authTagLength: 16 });
    decipher.setAAD(aad);
    decipher.setAuthTag(memory.slice(payload + ctLen, payload + ctLen + ESP_ICV));
    const plain = decipher.update(data);
    let rest: Buffer;
    try {
      rest = decipher.final();
    } catch {
      plain.fill(0);
      return STATUS_AUTH;
    }
    // Only now, authentic: the plaintext goes into the slot.
    memory.set(plain, payload);
    memory.set(rest, payload + plain.length);
    plain.fill(0);
    return INTERIM_AEAD_OPENED;
  } finally {
    key.fill(0);
  }
}
