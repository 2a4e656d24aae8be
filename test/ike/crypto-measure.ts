// Not a test: the measurements behind src/ike/crypto's choices, for anyone
// who wants to repeat them (`npm run build && node dist/test/ike/crypto-measure.js`).
// 1. prf and prf+ on node:crypto's HMAC against @noble/hashes' hmac at the
//    sizes IKE uses, interleaved (A, B, A, B …) in one process; medians.
// 2. The cost of one IKE key exchange per group: a key pair plus one shared
//    secret (what each side of IKE_SA_INIT or CREATE_CHILD_SA pays), medians.
// 3. Why keyExchange.ts imports an X25519 private key as JWK: PKCS#8 DER
//    against JWK, interleaved.
// Absolute times are noisy on a shared machine; the ratios are what counts.
import { randomBytes, createHmac, createPrivateKey } from "node:crypto";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { prf, prfPlus, prfLength, type PrfId } from "../../src/ike/crypto/prf.js";
import { createKeyExchange, type GroupId } from "../../src/ike/crypto/keyExchange.js";

const NOBLE = { 5: sha256, 6: sha384, 7: sha512 } as const;
const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

function noblePrf(id: PrfId, key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(NOBLE[id], key, data);
}

/** prf+ on noble, at its best: the keyed HMAC state is built once and cloned per block. */
function noblePrfPlus(id: PrfId, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const keyed = hmac.create(NOBLE[id], key);
  const out = new Uint8Array(length);
  let previous = new Uint8Array(0);
  for (let n = 1, at = 0; at < length; n++, at += previous.length) {
    const h = keyed.clone();
    h.update(previous);
    h.update(seed);
    h.update(Uint8Array.of(n));
    previous = h.digest();
    out.set(previous.subarray(0, Math.min(previous.length, length - at)), at);
  }
  return out;
}

/** Nanoseconds per call over `iterations` calls. */
function time(fn: () => unknown, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - start) / iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

function interleaved(a: () => unknown, b: () => unknown, rounds: number, iterations: number): [number, number] {
  for (let i = 0; i < iterations * 3; i++) { a(); b(); }
  const ta: number[] = [], tb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    ta.push(time(a, iterations));
    tb.push(time(b, iterations));
  }
  return [median(ta), median(tb)];
}

const us = (ns: number): string => (ns / 1000).toFixed(2).padStart(7);

console.log("prf / prf+: node:crypto HMAC vs @noble/hashes hmac (median of 15 interleaved rounds of 400 calls)");
for (const id of [5, 6, 7] as PrfId[]) {
  const key = random(prfLength(id));
  for (const dataLength of [64, 256, 600]) {
    const data = random(dataLength);
    if (Buffer.compare(prf(id, key, data), noblePrf(id, key, data)) !== 0) throw new Error("prf mismatch");
    const [node, noble] = interleaved(() => prf(id, key, data), () => noblePrf(id, key, data), 15, 400);
    console.log(`  prf  ${id} key ${prfLength(id)} B data ${String(dataLength).padStart(3)} B    node ${us(node)} µs  noble ${us(noble)} µs  noble/node ${(noble / node).toFixed(2)}`);
  }
  const seed = random(80); // Ni | Nr | SPIi | SPIr with 32-byte nonces
  for (const length of [100, 300]) {
    if (Buffer.compare(prfPlus(id, key, seed, length), noblePrfPlus(id, key, seed, length)) !== 0) throw new Error("prf+ mismatch");
    const [node, noble] = interleaved(() => prfPlus(id, key, seed, length), () => noblePrfPlus(id, key, seed, length), 15, 400);
    console.log(`  prf+ ${id} key ${prfLength(id)} B seed 80 B out ${length} B  node ${us(node)} µs  noble ${us(noble)} µs  noble/node ${(noble / node).toFixed(2)}`);
  }
}
// Keep the import of createHmac honest: prf is node's HMAC and nothing else.
if (Buffer.compare(prf(5, Uint8Array.of(1), Uint8Array.of(2)), createHmac("sha256", Uint8Array.of(1)).update(Uint8Array.of(2)).digest()) !== 0) throw new Error("prf is not HMAC");

console.log("\nkey exchange: key pair + one shared secret with a fixed peer value (median of 9 rounds)");
const groups: [GroupId, string, number][] = [[14, "MODP-2048", 40], [15, "MODP-3072", 15], [19, "ECP-256", 400], [20, "ECP-384", 100], [31, "Curve25519", 400]];
for (const [group, name, iterations] of groups) {
  const peer = createKeyExchange(group, random).publicValue;
  const rounds: number[] = [], keygen: number[] = [];
  for (let r = 0; r < 9; r++) {
    rounds.push(time(() => createKeyExchange(group, random).sharedSecret(peer), iterations));
    keygen.push(time(() => createKeyExchange(group, random), iterations));
  }
  const total = median(rounds), pair = median(keygen);
  console.log(`  ${String(group).padStart(2)} ${name.padEnd(10)} ${us(total)} µs  (key pair ${us(pair).trim()} µs, shared secret ${us(total - pair).trim()} µs)  ~${Math.round(1e9 / total)} per second per core`);
}

console.log("\nX25519 private key import (median of 15 interleaved rounds of 100)");
const pkcs8Prefix = Buffer.from("302e020100300506032b656e04220420", "hex");
const d = randomBytes(32);
const [der, jwk] = interleaved(
  () => createPrivateKey({ key: Buffer.concat([pkcs8Prefix, d]), format: "der", type: "pkcs8" }),
  () => createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: d.toString("base64url"), x: "" }, format: "jwk" }),
  15, 100);
console.log(`  PKCS#8 DER ${us(der)} µs  JWK ${us(jwk)} µs  DER/JWK ${(der / jwk).toFixed(1)}`);
