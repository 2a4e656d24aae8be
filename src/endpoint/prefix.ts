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
 * A longest-prefix-match table from prefixes to values. Lookups scan the
 * prefixes longest first: selector tables are small (a few per peer).
 */
export class PrefixTable<T> {
  #entries: { prefix: Prefix; value: T }[] = [];

  /** A table of many entries, sorted once (add() sorts at every call). */
  static of<T>(entries: Iterable<{ prefix: Prefix; value: T }>): PrefixTable<T> {
    const table = new PrefixTable<T>();
    table.#entries = [...entries].sort((a, b) => b.prefix.length - a.prefix.length);
    return table;
  }

  add(prefix: Prefix, value: T): void {
    this.#entries.push({ prefix, value });
    this.#entries.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The value of the longest prefix containing the address, or undefined. */
  lookup(family: 4 | 6, bytes: Uint8Array, at: number): T | undefined {
    for (const { prefix, value } of this.#entries) {
      if (prefix.family === family && contains(prefix, bytes, at)) return value;
    }
    return undefined;
  }

  get size(): number {
    return this.#entries.length;
  }
}
