/**
 * SA lifetimes, as strongSwan has them: an SA is rekeyed at `rekey` minus a
 * random part of `rand` (so that two peers with the same settings do not
 * rekey at the same instant, and a gateway's thousand clients not in one
 * burst), and deleted at `life` if the rekey did not happen. Child SAs are
 * also rekeyed on volume (bytes, packets, from the engine's counters) and,
 * whatever the settings, long before their ESP sequence number could run
 * out, so the data plane never reaches "seq-exhausted".
 */

export interface Lifetime {
  /** Rekey after this long (0: never on time). */
  rekeyMs: number;
  /** Delete after this long (0: never). */
  lifeMs: number;
  /** Up to this much is taken off rekeyMs at random. */
  randMs: number;
}

export interface ChildLifetime extends Lifetime {
  /** Rekey / delete after this many bytes or packets, in and out together (0: no limit). */
  rekeyBytes: number;
  lifeBytes: number;
  rekeyPackets: number;
  lifePackets: number;
}

/** strongSwan's defaults: IKE SAs rekeyed every 4 h, child SAs every hour, each with 10% over time and jitter. */
export const DEFAULT_IKE_LIFETIME: Lifetime = { rekeyMs: 4 * 3600_000, lifeMs: 4.4 * 3600_000, randMs: 0.4 * 3600_000 };
export const DEFAULT_CHILD_LIFETIME: ChildLifetime = { rekeyMs: 3600_000, lifeMs: 3960_000, randMs: 360_000, rekeyBytes: 0, lifeBytes: 0, rekeyPackets: 0, lifePackets: 0 };

/**
 * How many packets an SA may send before it is rekeyed regardless of its
 * settings: 2^32 − 1 sequence numbers without ESN (RFC 4303 §3.3.3), of
 * which a quarter is left as margin for the rekey to complete at full
 * speed (about 20 minutes at a million packets a second); with ESN the
 * 64-bit counter cannot run out in practice, but the same bound keeps
 * rekeying regular.
 */
export function sequenceRekeyPackets(esn: boolean): number {
  return esn ? 2 ** 48 : Math.floor(0.75 * 2 ** 32);
}

/** When to rekey and when to delete an SA made at `now` (undefined: never). */
export function schedule(now: number, lifetime: Lifetime, random: (length: number) => Uint8Array): { rekeyAt?: number; expireAt?: number } {
  const bytes = random(4);
  const fraction = (((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0) / 2 ** 32;
  const rekeyAt = lifetime.rekeyMs > 0 ? now + Math.max(0, lifetime.rekeyMs - fraction * lifetime.randMs) : undefined;
  const expireAt = lifetime.lifeMs > 0 ? now + lifetime.lifeMs : undefined;
  return { rekeyAt, expireAt };
}
