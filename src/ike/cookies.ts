/**
 * Stateless IKE cookies (RFC 7296 §2.6): what a responder under load asks an
 * initiator to send back before it spends a Diffie-Hellman or a byte of
 * state on its IKE_SA_INIT request.
 *
 *   Cookie = generation (4 bytes) | HMAC-SHA256(secret_generation, generation | Ni | IPi | SPIi), first 16 bytes
 *
 * Why this shape: §2.6 suggests <VersionIDofSecret> | Hash(Ni | IPi | SPIi |
 * <secret>); a keyed MAC is that hash done properly, the generation names
 * the secret, and 20 bytes fit the 1–64 every initiator must echo. An
 * initiator that spoofs its address never sees the cookie, so it can never
 * send a request that passes; one at a real address can, and is then
 * counted like any other source (dosGuard.ts).
 *
 * Why two secrets: the secret changes every `lifetimeMs` (RFC 7296 §2.6: "the
 * secret should be changed frequently"), and a cookie handed out just
 * before a change must still work on the retry that follows it, so the
 * previous secret is accepted for one more lifetime; anything older is
 * refused. A cookie therefore lives between one and two lifetimes. The
 * clock is the core's (the time of each call); nothing here runs on a timer.
 * Secrets are drawn from the core's randomness when first needed, so a core
 * that never sees a flood never draws them, and are wiped when replaced.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import { addressBytes } from "../endpoint/prefix.js";

/** Bytes of a cookie: the 4-byte generation and a 16-byte MAC. */
export const COOKIE_BYTES = 20;
const MAC_BYTES = 16;
const SECRET_BYTES = 32;

/**
 * The current and the previous cookie secret.
 *
 * @example
 * ```ts
 * const cookies = new CookieSecrets(core.random, 60_000);
 * const cookie = cookies.make(spiI, ni, "192.0.2.7", now);   // sent in N(COOKIE)
 * cookies.verify(cookie, spiI, ni, "192.0.2.7", later);      // true within one to two lifetimes
 * ```
 */
export class CookieSecrets {
  #generation = 0;
  #current: Uint8Array | undefined;
  #previous: Uint8Array | undefined;
  #since = 0;

  constructor(private readonly random: (length: number) => Uint8Array, readonly lifetimeMs: number) {
    if (!(lifetimeMs > 0)) throw new RangeError(`cookie secret lifetime must be positive, got ${lifetimeMs}`);
  }

  /** The generation cookies are made with now (for tests and logs). */
  generation(now: number): number {
    this.#rotate(now);
    return this.#generation;
  }

  /** A cookie for this request (§2.6: bound to Ni, the source address and SPIi). */
  make(spiI: bigint, ni: Uint8Array, address: string, now: number): Uint8Array {
    this.#rotate(now);
    const cookie = new Uint8Array(COOKIE_BYTES);
    new DataView(cookie.buffer).setUint32(0, this.#generation);
    cookie.set(mac(this.#current!, this.#generation, spiI, ni, address), 4);
    return cookie;
  }

  /** Whether `cookie` is one this responder made for this request under the current or the previous secret. */
  verify(cookie: Uint8Array, spiI: bigint, ni: Uint8Array, address: string, now: number): boolean {
    if (cookie.length !== COOKIE_BYTES) return false;
    this.#rotate(now);
    const generation = new DataView(cookie.buffer, cookie.byteOffset, 4).getUint32(0);
    const secret = generation === this.#generation ? this.#current : generation === ((this.#generation - 1) >>> 0) ? this.#previous : undefined;
    if (secret === undefined) return false;
    return timingSafeEqual(mac(secret, generation, spiI, ni, address), cookie.subarray(4));
  }

  /** Forgets both secrets (shutdown). */
  wipe(): void {
    this.#current?.fill(0);
    this.#previous?.fill(0);
    this.#current = undefined;
    this.#previous = undefined;
  }

  #rotate(now: number): void {
    if (this.#current === undefined) {
      this.#current = this.random(SECRET_BYTES);
      this.#since = now;
      return;
    }
    const elapsed = Math.floor((now - this.#since) / this.lifetimeMs);
    if (elapsed < 1) return;
    this.#previous?.fill(0);
    // After two lifetimes or more the old current secret is stale too: nothing made before may pass.
    if (elapsed === 1) this.#previous = this.#current;
    else {
      this.#current.fill(0);
      this.#previous = undefined;
    }
    this.#current = this.random(SECRET_BYTES);
    this.#generation = (this.#generation + elapsed) >>> 0;
    this.#since += elapsed * this.lifetimeMs;
  }
}

function mac(secret: Uint8Array, generation: number, spiI: bigint, ni: Uint8Array, address: string): Uint8Array {
  const head = new Uint8Array(12);
  const view = new DataView(head.buffer);
  view.setUint32(0, generation);
  view.setBigUint64(4, spiI);
  const family = isIP(address) === 6 ? 6 : 4;
  const digest = createHmac("sha256", secret).update(head).update(ni).update(addressBytes(address, family)).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, MAC_BYTES);
}
