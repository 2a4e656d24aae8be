/**
 * Virtual IP pools (RFC 7296 §2.19): the addresses a gateway hands its
 * road-warrior clients in the CP payload.
 *
 * Why leases are kept by identity: a client that reconnects (a new IKE SA
 * after sleep, a network change, a restarted phone) must get the address it
 * had, or every connection it kept open breaks; so an address released when
 * its SA goes stays reserved for that identity (a lease that is offline)
 * until the pool runs out of never-used addresses, and only then is the
 * longest-unused offline lease taken for someone else. An exhausted pool
 * answers with INTERNAL_ADDRESS_FAILURE.
 *
 * Addresses are handed out from `first` to `last` of each range, skipping
 * the network and broadcast addresses of a prefix (and its first address,
 * which a gateway usually keeps for itself, unless the range is given as
 * explicit bounds).
 */
import { addressValue, formatAddress } from "./trafficSelectors.js";

export interface PoolRange {
  family: 4 | 6;
  first: bigint;
  last: bigint;
}

interface Lease {
  address: bigint;
  identity: string;
  /** How many IKE SAs hold it now (a client may briefly have two during a reconnect). */
  holders: number;
  /** When it was last released (for taking the longest-unused offline lease). */
  releasedAt: number;
}

/** "10.9.0.0/24" (first usable to last usable) or "10.9.0.10-10.9.0.99" (exactly those). */
export function parsePoolRange(text: string): PoolRange {
  const dash = text.split("-");
  if (dash.length === 2) {
    const first = addressValue(dash[0]!.trim());
    const last = addressValue(dash[1]!.trim());
    if (first === null || last === null || first.family !== last.family) throw new Error(`"${text}" is not a range of two addresses of one family`);
    if (first.value > last.value) throw new Error(`"${text}": the first address is above the last`);
    return { family: first.family, first: first.value, last: last.value };
  }
  const [address = "", lengthText] = text.split("/");
  const base = addressValue(address);
  if (base === null || lengthText === undefined) throw new Error(`"${text}" is neither a prefix ("10.9.0.0/24") nor a range ("10.9.0.10-10.9.0.99")`);
  const bits = base.family === 4 ? 32 : 128;
  const length = Number(lengthText);
  if (!Number.isInteger(length) || length < 1 || length > bits - 2) throw new Error(`"${text}": a pool prefix length must be 1 to ${bits - 2}`);
  const host = BigInt(bits - length);
  const network = (base.value >> host) << host;
  // The network address, the gateway's customary first address, and (IPv4) the broadcast address stay out.
  return { family: base.family, first: network + 2n, last: network + (1n << host) - (base.family === 4 ? 2n : 1n) };
}

export class AddressPool {
  readonly #ranges: PoolRange[];
  /** Next never-used address per range. */
  readonly #cursor: bigint[];
  readonly #byIdentity = new Map<string, Lease>();
  readonly #byAddress = new Map<bigint, Lease>();

  /** @example new AddressPool("clients", ["10.9.0.0/24", "fd09::/112"]) */
  constructor(readonly name: string, ranges: readonly string[]) {
    this.#ranges = ranges.map(parsePoolRange);
    this.#cursor = this.#ranges.map((r) => r.first);
  }

  get families(): Set<4 | 6> {
    return new Set(this.#ranges.map((r) => r.family));
  }

  /** The address of `identity` in `family`: its own lease again, a never-used one, or the longest-unused offline one; undefined when exhausted. */
  acquire(identity: string, family: 4 | 6, now: number): string | undefined {
    const key = `${family}|${identity}`;
    const own = this.#byIdentity.get(key);
    if (own) {
      own.holders++;
      return formatAddress(family, own.address);
    }
    for (const [i, range] of this.#ranges.entries()) {
      if (range.family !== family) continue;
      while (this.#cursor[i]! <= range.last) {
        const address = this.#cursor[i]!;
        this.#cursor[i] = address + 1n;
        if (!this.#byAddress.has(address)) return this.#lease(key, family, address);
      }
    }
    let oldest: Lease | undefined;
    for (const lease of this.#byIdentity.values()) {
      if (lease.holders === 0 && lease.identity.startsWith(`${family}|`) && (oldest === undefined || lease.releasedAt < oldest.releasedAt)) oldest = lease;
    }
    if (oldest === undefined) return undefined;
    this.#byIdentity.delete(oldest.identity);
    this.#byAddress.delete(oldest.address);
    return this.#lease(key, family, oldest.address);
  }

  #lease(key: string, family: 4 | 6, address: bigint): string {
    const lease: Lease = { address, identity: key, holders: 1, releasedAt: 0 };
    this.#byIdentity.set(key, lease);
    this.#byAddress.set(address, lease);
    return formatAddress(family, address);
  }

  /** The SA that held `identity`'s address went: the lease stays the identity's while it is offline. */
  release(identity: string, family: 4 | 6, now: number): void {
    const lease = this.#byIdentity.get(`${family}|${identity}`);
    if (lease === undefined || lease.holders === 0) return;
    lease.holders--;
    if (lease.holders === 0) lease.releasedAt = now;
  }

  /** Addresses held by a live SA, and the pool's size, for metrics. */
  usage(): { online: number; offline: number; size: number } {
    let online = 0;
    for (const lease of this.#byIdentity.values()) if (lease.holders > 0) online++;
    const size = this.#ranges.reduce((n, r) => n + Number(r.last - r.first + 1n), 0);
    return { online, offline: this.#byIdentity.size - online, size };
  }
}
