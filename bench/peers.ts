/**
 * The AEAD implementations sluice is compared with, behind one interface.
 * Each is used the way its documentation says to use it per packet: the
 * one-shot call with a preallocated output where the API allows it. sluice's
 * one-shot runs both ways: allocating its result (the default call, as
 * node:crypto's is) and into an output array.
 * All use a 32-byte key, a 12-byte nonce and 8 bytes of AAD (an ESP header).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
// @ts-expect-error: sodium-native ships no types; the two calls used are declared below.
import sodiumNativeModule from "sodium-native";
import libsodium from "libsodium-wrappers";
import { ChaCha20Poly1305 as AsChaCha, newInstance as asNewInstance } from "@chainsafe/as-chacha20poly1305";
import { seal as sluiceSeal, open as sluiceOpen } from "../src/crypto.js";

/** One implementation, set up for one packet size. */
export interface AeadPeer {
  name: string;
  /** Seals the prepared plaintext once. */
  seal(): void;
  /** Opens the prepared ciphertext once; throws if it does not authenticate. */
  open(): void;
}

export interface PeerInputs {
  key: Uint8Array;
  nonce: Uint8Array;
  aad: Uint8Array;
  plaintext: Uint8Array;
}

export type PeerFactory = (inputs: PeerInputs) => AeadPeer;

export const NODE_CRYPTO = "node:crypto";
export const SLUICE_ONE_SHOT = "sluice one-shot";

/** The part of sodium-native used here (libsodium's ietf ChaCha20-Poly1305). */
interface SodiumNativeAead {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number;
}
const sodiumNative = sodiumNativeModule as SodiumNativeAead;

function checkOpened(result: unknown, name: string): void {
  if (result === null || result === false) throw new Error(`${name}: open failed to authenticate`);
}

/**
 * node:crypto's AEAD, one call per packet as an application makes it (a
 * cipher object, AAD, update, final, tag); the same for each cipher the
 * benches compare it on.
 */
export function nodeAead(algorithm: "chacha20-poly1305" | "aes-256-gcm", { key, nonce, aad, plaintext }: { key: Uint8Array; nonce: Uint8Array; aad: Uint8Array; plaintext: Uint8Array }): { seal: () => void; open: () => void } {
  // Typed as GCM for the overloads: ChaCha20-Poly1305 takes the same calls.
  const name = algorithm as "aes-256-gcm";
  const sealOnce = (): Uint8Array => {
    const cipher = createCipheriv(name, key, nonce, { authTagLength: 16 });
    cipher.setAAD(aad, { plaintextLength: plaintext.length });
    const body = cipher.update(plaintext);
    cipher.final();
    return Buffer.concat([body, cipher.getAuthTag()]);
  };
  const sealed = sealOnce();
  const body = sealed.subarray(0, plaintext.length);
  const tag = sealed.subarray(plaintext.length);
  return {
    seal: () => void sealOnce(),
    open: () => {
      const decipher = createDecipheriv(name, key, nonce, { authTagLength: 16 });
      decipher.setAAD(aad, { plaintextLength: body.length });
      decipher.setAuthTag(tag);
      decipher.update(body);
      decipher.final(); // throws on a bad tag
    },
  };
}

const nodeCrypto: PeerFactory = (input) => ({ name: NODE_CRYPTO, ...nodeAead("chacha20-poly1305", input) });

const noble: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const sealed = chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  return {
    name: "@noble/ciphers",
    seal: () => void chacha20poly1305(key, nonce, aad).encrypt(plaintext),
    open: () => void chacha20poly1305(key, nonce, aad).decrypt(sealed),
  };
};

const sodiumNativePeer: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const k = Buffer.from(key), n = Buffer.from(nonce), ad = Buffer.from(aad), m = Buffer.from(plaintext);
  const c = Buffer.alloc(m.length + 16);
  const out = Buffer.alloc(m.length);
  sodiumNative.crypto_aead_chacha20poly1305_ietf_encrypt(c, m, ad, null, n, k);
  return {
    name: "sodium-native",
    seal: () => void sodiumNative.crypto_aead_chacha20poly1305_ietf_encrypt(c, m, ad, null, n, k),
    open: () => {
      sodiumNative.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, c, ad, n, k); // throws on a bad tag
    },
  };
};

const libsodiumPeer: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const sealed = libsodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, aad, null, nonce, key);
  return {
    name: "libsodium-wrappers",
    seal: () => void libsodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, aad, null, nonce, key),
    open: () => void libsodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, aad, nonce, key),
  };
};

let asInstance: AsChaCha | undefined;
const asChaCha: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const impl = (asInstance ??= new AsChaCha(asNewInstance()));
  const sealed = impl.seal(key, nonce, plaintext, aad).slice();
  const dst = new Uint8Array(plaintext.length + 16);
  const opened = new Uint8Array(plaintext.length);
  return {
    name: "@chainsafe/as-chacha20poly1305",
    seal: () => void impl.seal(key, nonce, plaintext, aad, dst),
    open: () => checkOpened(impl.open(key, nonce, sealed, aad, opened), "as-chacha20poly1305"),
  };
};

/** The default call: each result a new array, as node:crypto's is. */
const sluiceOneShot: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const sealed = sluiceSeal(key, nonce, aad, plaintext);
  return {
    name: SLUICE_ONE_SHOT,
    seal: () => void sluiceSeal(key, nonce, aad, plaintext),
    open: () => checkOpened(sluiceOpen(key, nonce, aad, sealed), "sluice"),
  };
};

/** With the optional output array, as the libsodium-style peers are called. */
const sluiceOneShotOutput: PeerFactory = ({ key, nonce, aad, plaintext }) => {
  const sealed = sluiceSeal(key, nonce, aad, plaintext);
  const sealOutput = new Uint8Array(sealed.length);
  const openOutput = new Uint8Array(plaintext.length);
  return {
    name: "sluice one-shot + output",
    seal: () => void sluiceSeal(key, nonce, aad, plaintext, sealOutput),
    open: () => checkOpened(sluiceOpen(key, nonce, aad, sealed, openOutput), "sluice"),
  };
};

/** Loads what needs loading (libsodium's WASM) and returns the factories. */
export async function loadPeers(): Promise<PeerFactory[]> {
  await libsodium.ready;
  return [sluiceOneShot, sluiceOneShotOutput, nodeCrypto, sodiumNativePeer, libsodiumPeer, noble, asChaCha];
}
