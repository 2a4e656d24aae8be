/**
 * Peer addresses of a UDP batch are kept as raw Linux socket addresses, 28
 * bytes per packet, so that recvmmsg writes them and sendmmsg reads them in
 * place (no object per packet). This module is the one place JavaScript reads
 * or writes that encoding; the native and the portable path share it.
 *
 * Encoding of one entry (struct sockaddr_in / sockaddr_in6 as Linux lays them out):
 *   bytes 0-1   family, native-endian u16: 2 = IPv4, 10 = IPv6, 0 = none
 *               ("none" sends on a connected socket)
 *   bytes 2-3   port, big-endian
 *   IPv4        bytes 4-7 address; bytes 8-27 zero
 *   IPv6        bytes 4-7 flow info (big-endian); 8-23 address;
 *               24-27 scope id (native-endian u32)
 */
import { endianness } from "node:os";

export const ADDRESS_BYTES = 28;
/** Linux's AF_INET and AF_INET6. */
export const AF_INET = 2;
export const AF_INET6 = 10;

const LITTLE = endianness() === "LE";

export interface SocketAddress {
  family: 4 | 6;
  /** Text form: dotted quad, or RFC 5952 IPv6 (IPv4-mapped as ::ffff:a.b.c.d). */
  address: string;
  port: number;
  /** IPv6 only. */
  flowInfo?: number;
  /** IPv6 only: interface index of a link-local address. */
  scopeId?: number;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function parseIPv4(text: string, into: Uint8Array, at: number): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return false;
    const n = Number(p);
    if (n > 255) return false;
    into[at + i] = n;
  }
  return true;
}

/** Parses an IPv6 address (with :: and an optional dotted IPv4 tail) into 16 bytes. */
function parseIPv6(text: string, into: Uint8Array, at: number): boolean {
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = (s: string): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    const items = s.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = new Uint8Array(4);
        if (!parseIPv4(item, v4, 0)) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return false;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return false;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    into[at + 2 * i] = all[i]! >> 8;
    into[at + 2 * i + 1] = all[i]! & 0xff;
  }
  return true;
}

function formatIPv6(bytes: Uint8Array, at: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[at + 2 * i]! << 8) | bytes[at + 2 * i + 1]!);
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${bytes[at + 12]}.${bytes[at + 13]}.${bytes[at + 14]}.${bytes[at + 15]}`;
  }
  // RFC 5952: compress the longest run (of two or more) of zero groups, the first on a tie.
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Writes `address` as entry `index` of `into` (28 bytes per entry). Throws on a malformed address. */
export function encodeAddress(into: Uint8Array, index: number, address: SocketAddress): void {
  const at = index * ADDRESS_BYTES;
  if (!Number.isInteger(index) || index < 0 || at + ADDRESS_BYTES > into.length) {
    throw new RangeError(`address entry ${index} is outside an array of ${into.length} bytes`);
  }
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > 65535) {
    throw new RangeError(`port must be an integer in [0, 65535], got ${address.port}`);
  }
  const dv = view(into);
  into.fill(0, at, at + ADDRESS_BYTES);
  if (address.family === 4) {
    if (!parseIPv4(address.address, into, at + 4)) throw new TypeError(`not an IPv4 address: ${address.address}`);
    dv.setUint16(at, AF_INET, LITTLE);
  } else if (address.family === 6) {
    if (!parseIPv6(address.address, into, at + 8)) throw new TypeError(`not an IPv6 address: ${address.address}`);
    dv.setUint16(at, AF_INET6, LITTLE);
    dv.setUint32(at + 4, address.flowInfo ?? 0, false);
    dv.setUint32(at + 24, address.scopeId ?? 0, LITTLE);
  } else {
    throw new TypeError(`family must be 4 or 6`);
  }
  dv.setUint16(at + 2, address.port, false);
}

/** Marks entry `index` as "no address" (send on a connected socket). */
export function clearAddress(into: Uint8Array, index: number): void {
  into.fill(0, index * ADDRESS_BYTES, (index + 1) * ADDRESS_BYTES);
}

/** Reads entry `index` of `from`; null when the entry holds no address. */
export function decodeAddress(from: Uint8Array, index: number): SocketAddress | null {
  const at = index * ADDRESS_BYTES;
  if (!Number.isInteger(index) || index < 0 || at + ADDRESS_BYTES > from.length) {
    throw new RangeError(`address entry ${index} is outside an array of ${from.length} bytes`);
  }
  const dv = view(from);
  const family = dv.getUint16(at, LITTLE);
  const port = dv.getUint16(at + 2, false);
  if (family === AF_INET) {
    return { family: 4, address: `${from[at + 4]}.${from[at + 5]}.${from[at + 6]}.${from[at + 7]}`, port };
  }
  if (family === AF_INET6) {
    return {
      family: 6, address: formatIPv6(from, at + 8), port,
      flowInfo: dv.getUint32(at + 4, false), scopeId: dv.getUint32(at + 24, LITTLE),
    };
  }
  return null;
}

/** "1.2.3.4:500" or "[2001:db8::1]:4500", for logs. */
export function formatAddress(address: SocketAddress): string {
  return address.family === 6 ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
}

/**
 * Whether entry `i` of `a` and entry `j` of `b` are the same socket address
 * (family, port, address and, for IPv6, scope; flow info is ignored). Reads
 * bytes in place: the receive path compares every ESP datagram's source with
 * its peer's address, so this allocates nothing.
 */
export function sameAddress(a: Uint8Array, i: number, b: Uint8Array, j: number): boolean {
  const x = i * ADDRESS_BYTES;
  const y = j * ADDRESS_BYTES;
  // Family and port first: they differ first when a NAT rebinds.
  for (let k = 0; k < 4; k++) if (a[x + k] !== b[y + k]) return false;
  const family = a[x]! | (a[x + 1]! << 8);
  const v6 = family === AF_INET6 || (family >> 8) === AF_INET6;
  const from = v6 ? 8 : 4;
  const to = v6 ? ADDRESS_BYTES : 8;
  for (let k = from; k < to; k++) if (a[x + k] !== b[y + k]) return false;
  return true;
}

/** Copies entry `j` of `from` into entry `i` of `into` (28 bytes, no view allocated). */
export function copyAddress(into: Uint8Array, i: number, from: Uint8Array, j: number): void {
  const x = i * ADDRESS_BYTES;
  const y = j * ADDRESS_BYTES;
  for (let k = 0; k < ADDRESS_BYTES; k++) into[x + k] = from[y + k]!;
}
