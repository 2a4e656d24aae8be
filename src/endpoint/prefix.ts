/**
 * IP prefixes and longest-prefix match, for traffic selectors: which peer an
 * inner destination is routed to, and whether an inner source may come from
 * a peer. Addresses are handled as bytes (4 or 16), so matching a packet
 * needs no string parsing on the hot path.
 */
import { isIP } from "node:net";

export interface Prefix {
  family: 4 | 6;
  /** Network address bytes (host bits zero). */
  bytes: Uint8Array;
  length: number;
  text: string;
}

/** Parses "10.1.0.0/16", "fd00::/64" or a bare address (a host prefix). Throws a message naming the problem. */
export function parsePrefix(text: string): Prefix {
  if (typeof text !== "string") throw new TypeError(`a prefix must be a string like "10.0.0.0/24", got ${typeof text}`);
  const [address = "", lengthText, extra] = text.split("/");
  if (extra !== undefined) throw new RangeError(`"${text}" is not a prefix: more than one "/"`);
  const family = isIP(address);
  if (family === 0) throw new RangeError(`"${text}" is not a prefix: "${address}" is not an IP address`);
  const bits = family === 4 ? 32 : 128;
  const length = lengthText === undefined ? bits : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > bits || (lengthText !== undefined && !/^\d+$/.test(lengthText))) {
    throw new RangeError(`"${text}" is not a prefix: the length must be 0 to ${bits}`);
  }
  const bytes = addressBytes(address, family as 4 | 6);
  for (let bit = length; bit < bits; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family: family as 4 | 6, bytes, length, text };
}

/** The bytes of a valid IPv4 or IPv6 address. */
export function addressBytes(address: string, family: 4 | 6): Uint8Array {
  if (family === 4) return Uint8Array.from(address.split(".").map(Number));
  const out = new Uint8Array(16);
  let [head = "", tail] = address.split("::");
  // An embedded IPv4 tail ("::ffff:1.2.3.4") becomes two groups.
  const toGroups = (part: string): number[] => part === "" ? [] : part.split(":").flatMap((group) => {
    if (group.includes(".")) {
      const v4 = group.split(".").map(Number);
      return [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    }
    return [parseInt(group, 16)];
  });
  const first = toGroups(head);
  const last = tail === undefined ? [] : toGroups(tail);
  const groups = tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  groups.forEach((group, i) => {
    out[2 * i] = group >> 8;
    out[2 * i + 1] = group & 0xff;
  });
  return out;
}

/** Whether the address at bytes[at…] (4 or 16 bytes, per the prefix's family) lies in the prefix. */
export function contains(prefix: Prefix, bytes: Uint8Array, at: number): boolean {
  const whole = prefix.length >> 3;
  for (let i = 0; i < whole; i++) if (bytes[at + i] !== prefix.bytes[i]) return false;
  const rest = prefix.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[at + whole]! ^ prefix.bytes[whole]!) & mask) === 0;
}

/**
 * A longest-prefix-match table from prefixes to values.
 *
 * Why hashed by length: a gateway routes to a child SA per road-warrior
 * client, a /32 (or /128) each, and looks a route up per packet; scanning a
 * thousand prefixes per packet would cost more than sealing it. So each
 * prefix length present has a map from the masked address to the value
 * (IPv4: the masked address as a number; IPv6: a hash of the masked bytes,
 * checked against the prefix on a hit), and a lookup tries the lengths
 * present, longest first: a handful of map lookups, no allocation.
 * On equal prefixes the first one added wins.
 */
export class PrefixTable<T> {
  /** IPv4: by prefix length, masked address → value; the lengths present, longest first. */
  readonly #v4 = new Map<number, Map<number, T>>();
  #v4Lengths: number[] = [];
  /** IPv6: by prefix length, hash of the masked bytes → the entries with that hash. */
  readonly #v6 = new Map<number, Map<number, { prefix: Prefix; value: T }[]>>();
  #v6Lengths: number[] = [];
  #size = 0;

  /** A table of many entries. */
  static of<T>(entries: Iterable<{ prefix: Prefix; value: T }>): PrefixTable<T> {
    const table = new PrefixTable<T>();
    for (const { prefix, value } of entries) table.add(prefix, value);
    return table;
  }

  add(prefix: Prefix, value: T): void {
    if (prefix.family === 4) {
      let byAddress = this.#v4.get(prefix.length);
      if (byAddress === undefined) {
        this.#v4.set(prefix.length, (byAddress = new Map()));
        this.#v4Lengths = [...this.#v4.keys()].sort((a, b) => b - a);
      }
      const key = v4Key(prefix.bytes, 0, prefix.length);
      if (byAddress.has(key)) return;
      byAddress.set(key, value);
    } else {
      let byHash = this.#v6.get(prefix.length);
      if (byHash === undefined) {
        this.#v6.set(prefix.length, (byHash = new Map()));
        this.#v6Lengths = [...this.#v6.keys()].sort((a, b) => b - a);
      }
      const key = v6Key(prefix.bytes, 0, prefix.length);
      const bucket = byHash.get(key);
      if (bucket === undefined) byHash.set(key, [{ prefix, value }]);
      else if (bucket.some((entry) => contains(entry.prefix, prefix.bytes, 0))) return;
      else bucket.push({ prefix, value });
    }
    this.#size++;
  }

  /** The value of the longest prefix containing the address at bytes[at…], or undefined. */
  lookup(family: 4 | 6, bytes: Uint8Array, at: number): T | undefined {
    if (family === 4) {
      for (const length of this.#v4Lengths) {
        const value = this.#v4.get(length)!.get(v4Key(bytes, at, length));
        if (value !== undefined) return value;
      }
      return undefined;
    }
    for (const length of this.#v6Lengths) {
      const bucket = this.#v6.get(length)!.get(v6Key(bytes, at, length));
      if (bucket === undefined) continue;
      for (const entry of bucket) if (contains(entry.prefix, bytes, at)) return entry.value;
    }
    return undefined;
  }

  get size(): number {
    return this.#size;
  }
}

/** An IPv4 address's first `length` bits as a number. */
function v4Key(bytes: Uint8Array, at: number, length: number): number {
  if (length === 0) return 0;
  const address = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
  return address >>> (32 - length);
}

/** A hash (FNV-1a) of an IPv6 address's first `length` bits. */
function v6Key(bytes: Uint8Array, at: number, length: number): number {
  let hash = 0x811c9dc5;
  const whole = length >> 3;
  for (let i = 0; i < whole; i++) hash = Math.imul(hash ^ bytes[at + i]!, 0x01000193);
  const rest = length & 7;
  if (rest !== 0) hash = Math.imul(hash ^ (bytes[at + whole]! & ((0xff << (8 - rest)) & 0xff)), 0x01000193);
  return hash >>> 0;
}
