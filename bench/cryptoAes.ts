/**
 * The crypto suite's AES-256-GCM rows (RFC 4106's AEAD): sluice's batch path
 * (the engine's passes: the kernel frames, one native call per 64 packets
 * runs OpenSSL's AES-GCM in place), sluice's one-shot (sluice/crypto's
 * sealAesGcm), node:crypto per packet, sodium-native's
 * crypto_aead_aes256gcm where it has one and the CPU supports it, and
 * `openssl speed -evp aes-256-gcm -bytes N` as the ceiling: OpenSSL sealing
 * one buffer over and over, no framing, no call from JavaScript. Each row
 * carries its ratio to that ceiling and to sluice's ChaCha20-Poly1305 batch
 * of the same size and op, measured in the same run.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
// @ts-expect-error: sodium-native ships no types; what is used is declared below.
import sodiumNativeModule from "sodium-native";
import { createBatchRunner, BATCH } from "./sluiceBatch.js";
import { measure, formatGroupedTable, type MeasureOptions, type TimedTask } from "./measure.js";
import { nodeAead } from "./peers.js";
import { sealAesGcm, openAesGcm, aesGcmPath } from "../src/crypto.js";

export const AES_BATCH = "sluice batch AES-256-GCM";
export const CHACHA_BATCH = "sluice batch ChaCha20-Poly1305";
export const OPENSSL_SPEED = "openssl speed (ceiling)";

export interface AesCryptoRow {
  suite: "crypto";
  cipher: "aes256gcm16";
  size: number;
  op: "seal" | "open";
  impl: string;
  nsPerPacket: number;
  gbitPerSecond: number;
  packetsPerSecond: number;
  /** This row's throughput / `openssl speed`'s (sealing; OpenSSL's figure for its encryption serves both ops). */
  opensslRatio: number | null;
  /** This row's throughput / sluice's ChaCha20-Poly1305 batch (same size, op, run). */
  chachaBatchRatio: number;
  /** Where sluice's AES ran ("native" / "portable"); for the sluice rows. */
  aesPath?: string;
}

interface SodiumAes {
  crypto_aead_aes256gcm_is_available?: () => boolean;
  crypto_aead_aes256gcm_encrypt?: (c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer) => number;
  crypto_aead_aes256gcm_decrypt?: (m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer) => number;
}
const sodium = sodiumNativeModule as SodiumAes;

/** Why sodium-native's AES-256-GCM is not measured, or null when it is. */
export function sodiumAesUnavailable(): string | null {
  if (typeof sodium.crypto_aead_aes256gcm_encrypt !== "function") return "this sodium-native has no crypto_aead_aes256gcm binding";
  if (sodium.crypto_aead_aes256gcm_is_available?.() !== true) return "libsodium says this CPU has no AES-256-GCM (crypto_aead_aes256gcm_is_available)";
  return null;
}

/** `openssl speed -evp aes-256-gcm -bytes N` in ns per buffer, or null with the reason logged. */
export function opensslSpeed(size: number, seconds: number, log: (line: string) => void): number | null {
  const run = spawnSync("openssl", ["speed", "-evp", "aes-256-gcm", "-bytes", String(size), "-seconds", String(seconds)], { encoding: "utf8", timeout: (seconds + 30) * 1000 });
  if (run.error || run.status !== 0) {
    log(`openssl speed not measured: ${run.error?.message ?? run.stderr.trim().split("\n").pop()}`);
    return null;
  }
  // The last line: "AES-256-GCM    1317450.32k" (1000s of bytes per second).
  const match = /^aes-256-gcm\s+([\d.]+)k\s*$/im.exec(run.stdout);
  if (!match) {
    log(`openssl speed: no AES-256-GCM figure in its output: ${run.stdout.trim().split("\n").pop()}`);
    return null;
  }
  const bytesPerSecond = Number(match[1]) * 1000;
  return (size / bytesPerSecond) * 1e9;
}

export async function runAesCryptoSuite(options: MeasureOptions, sizes: number[], log: (line: string) => void = () => {}): Promise<AesCryptoRow[]> {
  const rows: AesCryptoRow[] = [];
  const sodiumReason = sodiumAesUnavailable();
  if (sodiumReason) log(`sodium-native AES-256-GCM not measured: ${sodiumReason}`);
  for (const size of sizes) {
    const key = new Uint8Array(randomBytes(32));
    const salt = new Uint8Array(randomBytes(4));
    const nonce = new Uint8Array(randomBytes(12));
    const aad = new Uint8Array(randomBytes(8));
    const plaintext = new Uint8Array(randomBytes(size));
    const aesBatch = createBatchRunner(size, key, salt, "aes256gcm16");
    const chachaBatch = createBatchRunner(size, key, salt, "chacha20poly1305");
    for (const batch of [aesBatch, chachaBatch]) {
      batch.open();
      batch.checkOpened();
    }
    const sealed = sealAesGcm(key, nonce, aad, plaintext);
    const sealOut = new Uint8Array(sealed.length);
    const openOut = new Uint8Array(size);
    const node = nodeAead("aes-256-gcm", { key, nonce, aad, plaintext });
    const tasks: TimedTask[] = [
      { name: `seal|${AES_BATCH}`, fn: aesBatch.seal, units: BATCH },
      { name: `open|${AES_BATCH}`, fn: aesBatch.open, units: BATCH },
      { name: `seal|${CHACHA_BATCH}`, fn: chachaBatch.seal, units: BATCH },
      { name: `open|${CHACHA_BATCH}`, fn: chachaBatch.open, units: BATCH },
      { name: "seal|sluice one-shot + output", fn: () => void sealAesGcm(key, nonce, aad, plaintext, sealOut), units: 1 },
      { name: "open|sluice one-shot + output", fn: () => void must(openAesGcm(key, nonce, aad, sealed, openOut)), units: 1 },
      { name: "seal|node:crypto", fn: node.seal, units: 1 },
      { name: "open|node:crypto", fn: node.open, units: 1 },
    ];
    if (!sodiumReason) {
      const s = sodiumAes(key, nonce, aad, plaintext);
      tasks.push({ name: "seal|sodium-native", fn: s.seal, units: 1 }, { name: "open|sodium-native", fn: s.open, units: 1 });
    }
    log(`crypto AES-256-GCM ${size} B: ${tasks.length} tasks × ${options.rounds} rounds`);
    const latency = measure(tasks, options);
    aesBatch.checkOpened();
    const ceiling = opensslSpeed(size, Math.max(1, Math.round((options.rounds * options.timeMs) / 1000)), log);
    for (const op of ["seal", "open"] as const) {
      const chachaNs = latency.get(`${op}|${CHACHA_BATCH}`)!;
      const impls = [...new Set(tasks.map((t) => t.name.split("|")[1]!))];
      const entries: [string, number][] = impls.map((impl) => [impl, latency.get(`${op}|${impl}`)!]);
      if (ceiling !== null) entries.push([OPENSSL_SPEED, ceiling]);
      for (const [impl, ns] of entries) {
        rows.push({
          suite: "crypto", cipher: "aes256gcm16", size, op, impl,
          nsPerPacket: ns,
          gbitPerSecond: (size * 8) / ns,
          packetsPerSecond: 1e9 / ns,
          opensslRatio: ceiling === null ? null : ceiling / ns,
          chachaBatchRatio: chachaNs / ns,
          ...(impl.startsWith("sluice") ? { aesPath: aesGcmPath() } : {}),
        });
      }
    }
  }
  return rows;
}

function must(result: Uint8Array | null): void {
  if (result === null) throw new Error("sluice one-shot AES-GCM: open failed to authenticate");
}

function sodiumAes(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): { seal: () => void; open: () => void } {
  const k = Buffer.from(key), n = Buffer.from(nonce), ad = Buffer.from(aad), m = Buffer.from(plaintext);
  const c = Buffer.alloc(m.length + 16), out = Buffer.alloc(m.length);
  const encrypt = sodium.crypto_aead_aes256gcm_encrypt!, decrypt = sodium.crypto_aead_aes256gcm_decrypt!;
  encrypt(c, m, ad, null, n, k);
  return { seal: () => void encrypt(c, m, ad, null, n, k), open: () => void decrypt(out, null, c, ad, n, k) };
}

/** The AES table: throughput, and the ratios to OpenSSL's own figure and to sluice's ChaCha20 batch. */
export function formatAesTable(rows: AesCryptoRow[]): string {
  const header = ["size", "op", "implementation", "Gbit/s", "packets/s", "ns/packet", "× openssl speed", "× sluice ChaCha batch"];
  const lines = rows.map((r) => [
    `${r.size} B`, r.op, r.impl, r.gbitPerSecond.toFixed(2),
    r.packetsPerSecond >= 1e6 ? `${(r.packetsPerSecond / 1e6).toFixed(2)} M` : `${(r.packetsPerSecond / 1e3).toFixed(0)} k`,
    r.nsPerPacket.toFixed(0), r.opensslRatio === null ? "—" : r.opensslRatio.toFixed(2), r.chachaBatchRatio.toFixed(2),
  ]);
  return formatGroupedTable(header, lines, (i) => `${rows[i]!.size}|${rows[i]!.op}`);
}
