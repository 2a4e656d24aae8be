/**
 * Traffic selectors (RFC 7296 §2.9, §3.13): what a child SA carries, how a
 * responder narrows what it is offered, and how the result becomes the
 * prefixes the data plane routes by and checks inner sources against.
 *
 * Why address ranges only: the engine routes by destination prefix and
 * checks the inner source against the child's prefixes; it does not look at
 * protocols or ports. A selector restricted to a protocol or a port range
 * would be promised to the peer but not enforced, so narrowing keeps only
 * results that cover every protocol and port; when none are left the answer
 * is TS_UNACCEPTABLE (and an initiator refuses such an answer). Ranges that
 * are not prefixes are fine: a range becomes the few prefixes that cover it
 * exactly.
 */
import { isIP } from "node:net";
import { TsType } from "./constants.js";
import type { WireSelector } from "./codec/payloads.js";
import { addressBytes } from "../endpoint/prefix.js";

/** One selector: an address range, and the protocol and port range it covers. */
export interface Selector {
  family: 4 | 6;
  start: bigint;
  end: bigint;
  /** 0 = any protocol. */
  protocol: number;
  startPort: number;
  endPort: number;
}

const BITS = { 4: 32, 6: 128 } as const;

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function toBytes(value: bigint, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return bytes;
}

/** An address as text (RFC 5952 for IPv6: the longest run of zero groups as "::"). */
export function formatAddress(family: 4 | 6, value: bigint): string {
  const bytes = toBytes(value, family === 4 ? 4 : 16);
  if (family === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The longest run of zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLength).join(":")}`;
}

/** An address's family and value, or null when the text is not an address. */
export function addressValue(text: string): { family: 4 | 6; value: bigint } | null {
  const family = isIP(text);
  return family === 0 ? null : { family: family as 4 | 6, value: toBigInt(addressBytes(text, family as 4 | 6)) };
}

/** "10.1.0.0/16", "fd00::/64" or an address: a selector for every protocol and port. */
export function selectorFromPrefix(text: string): Selector {
  const [address = "", lengthText] = text.split("/");
  const family = isIP(address);
  if (family === 0) throw new Error(`"${text}" is not a prefix`);
  const bits = BITS[family as 4 | 6];
  const length = lengthText === undefined ? bits : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > bits) throw new Error(`"${text}": the prefix length must be 0 to ${bits}`);
  const hostBits = BigInt(bits - length);
  const base = (toBigInt(addressBytes(address, family as 4 | 6)) >> hostBits) << hostBits;
  return { family: family as 4 | 6, start: base, end: base | ((1n << hostBits) - 1n), protocol: 0, startPort: 0, endPort: 65535 };
}

/** The whole address space of a family: what an initiator asks for with `0.0.0.0/0`. */
export function anySelector(family: 4 | 6): Selector {
  return { family, start: 0n, end: (1n << BigInt(BITS[family])) - 1n, protocol: 0, startPort: 0, endPort: 65535 };
}

export function selectorToWire(s: Selector): WireSelector {
  const length = s.family === 4 ? 4 : 16;
  return {
    tsType: s.family === 4 ? TsType.IPV4_ADDR_RANGE : TsType.IPV6_ADDR_RANGE,
    protocol: s.protocol,
    startPort: s.startPort,
    endPort: s.endPort,
    start: toBytes(s.start, length),
    end: toBytes(s.end, length),
  };
}

/** A received selector, or null for a type sluice cannot represent (it is then left out of narrowing). */
export function selectorFromWire(w: WireSelector): Selector | null {
  if (w.tsType !== TsType.IPV4_ADDR_RANGE && w.tsType !== TsType.IPV6_ADDR_RANGE) return null;
  const s: Selector = {
    family: w.tsType === TsType.IPV4_ADDR_RANGE ? 4 : 6,
    start: toBigInt(w.start),
    end: toBigInt(w.end),
    protocol: w.protocol,
    startPort: w.startPort,
    endPort: w.endPort,
  };
  return s.start <= s.end && s.startPort <= s.endPort ? s : null;
}

/** The overlap of two selectors, or null. */
export function intersect(a: Selector, b: Selector): Selector | null {
  if (a.family !== b.family) return null;
  if (a.protocol !== 0 && b.protocol !== 0 && a.protocol !== b.protocol) return null;
  const start = a.start > b.start ? a.start : b.start;
  const end = a.end < b.end ? a.end : b.end;
  const startPort = Math.max(a.startPort, b.startPort);
  const endPort = Math.min(a.endPort, b.endPort);
  if (start > end || startPort > endPort) return null;
  return { family: a.family, start, end, protocol: a.protocol || b.protocol, startPort, endPort };
}

/** Every protocol and every port: what the data plane can enforce (see the top of this file). */
export function enforceable(s: Selector): boolean {
  return s.protocol === 0 && s.startPort === 0 && s.endPort === 65535;
}

function contains(outer: Selector, inner: Selector): boolean {
  return outer.family === inner.family && outer.start <= inner.start && inner.end <= outer.end
    && (outer.protocol === 0 || outer.protocol === inner.protocol) && outer.startPort <= inner.startPort && inner.endPort <= outer.endPort;
}

/**
 * §2.9: a responder narrows what it is offered to what its policy allows:
 * every enforceable overlap of an offered selector with a configured one,
 * without duplicates or selectors inside others. Empty: TS_UNACCEPTABLE.
 */
export function narrow(offered: readonly Selector[], configured: readonly Selector[]): Selector[] {
  const out: Selector[] = [];
  for (const o of offered) {
    for (const c of configured) {
      const overlap = intersect(o, c);
      if (overlap === null || !enforceable(overlap)) continue;
      if (out.some((s) => contains(s, overlap))) continue;
      for (let i = out.length - 1; i >= 0; i--) if (contains(overlap, out[i]!)) out.splice(i, 1);
      out.push(overlap);
    }
  }
  return out;
}

/** Whether every selector of `answer` lies within what was `offered` (an initiator's check of a narrowed answer). */
export function within(answer: readonly Selector[], offered: readonly Selector[]): boolean {
  return answer.every((a) => offered.some((o) => contains(o, a)));
}

/** The prefixes that cover an address range exactly, as text for the data plane ("10.0.0.0/24"). */
export function selectorPrefixes(s: Selector): string[] {
  if (s.family === 4) return ipv4Prefixes(Number(s.start), Number(s.end));
  const bits = BigInt(BITS[s.family]);
  const out: string[] = [];
  let start = s.start;
  while (start <= s.end) {
    // The largest aligned block starting at `start` that stays within the range.
    let size = 0n;
    while (size < bits) {
      const next = size + 1n;
      const mask = (1n << next) - 1n;
      if ((start & mask) !== 0n || start + mask > s.end) break;
      size = next;
    }
    out.push(`${formatAddress(s.family, start)}/${Number(bits - size)}`);
    start += 1n << size;
  }
  return out;
}

/**
 * selectorPrefixes for IPv4 in plain numbers (exact up to 2^53): every child
 * of every handshake comes here, for its routes and its log line, and the
 * BigInt arithmetic IPv6 needs allocated on each step.
 */
function ipv4Prefixes(start: number, end: number): string[] {
  const out: string[] = [];
  while (start <= end) {
    // The largest aligned block starting at `start` that stays within the range.
    let size = 0;
    while (size < 32 && start % 2 ** (size + 1) === 0 && start + 2 ** (size + 1) - 1 <= end) size++;
    out.push(`${Math.floor(start / 0x1000000)}.${(start >>> 16) & 0xff}.${(start >>> 8) & 0xff}.${start & 0xff}/${32 - size}`);
    start += 2 ** size;
  }
  return out;
}

/** For logs and status: "10.77.1.0/24", "10.0.0.1..10.0.0.5", with "[proto/ports]" when restricted. */
export function formatSelector(s: Selector): string {
  const prefixes = selectorPrefixes(s);
  const range = prefixes.length === 1 ? prefixes[0]! : `${formatAddress(s.family, s.start)}..${formatAddress(s.family, s.end)}`;
  if (enforceable(s)) return range;
  const ports = s.startPort === 0 && s.endPort === 65535 ? "" : s.startPort === s.endPort ? `/${s.startPort}` : `/${s.startPort}-${s.endPort}`;
  return `${range}[${s.protocol}${ports}]`;
}
