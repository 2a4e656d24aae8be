/**
 * IKE identities (RFC 7296 §3.5): how a config names one, how it looks on
 * the wire, and whether a peer's ID matches what a config expects.
 *
 * Config syntax follows strongSwan's where it can: an IP address is an
 * ID_IPV4_ADDR / ID_IPV6_ADDR, `user@example.org` an ID_RFC822_ADDR, a name
 * an ID_FQDN (`@name` or `fqdn:name` force it), `keyid:…` an ID_KEY_ID (hex
 * after `keyid:#`, else the text's bytes), `email:…`, `ipv4:…`, `ipv6:…`
 * force a type. A remote ID may be a pattern: `%any` matches every ID,
 * `*@example.org` every e-mail address at that domain, `*.example.org`
 * every name below it; patterns never match across types.
 */
import { isIP } from "node:net";
import { IdType } from "./constants.js";
import { addressBytes } from "../endpoint/prefix.js";
import { equalBytes } from "./codec/bytes.js";

export interface Identity {
  type: number;
  data: Uint8Array;
}

/** A remote ID as configured: one identity, or a pattern. */
export type IdentityPattern =
  | { kind: "exact"; id: Identity }
  | { kind: "any" }
  | { kind: "suffix"; type: number; suffix: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Parses a config identity; throws an Error naming the problem. */
export function parseIdentity(text: string): Identity {
  if (typeof text !== "string" || text === "") throw new Error("an identity must be a non-empty string");
  const prefixed = /^(fqdn|email|rfc822|ipv4|ipv6|keyid):(.*)$/i.exec(text);
  if (prefixed) {
    const [, kind, value = ""] = prefixed;
    if (value === "") throw new Error(`"${text}" has nothing after "${kind}:"`);
    switch (kind!.toLowerCase()) {
      case "fqdn":
        return { type: IdType.FQDN, data: encoder.encode(value) };
      case "email":
      case "rfc822":
        return { type: IdType.RFC822_ADDR, data: encoder.encode(value) };
      case "ipv4":
        if (isIP(value) !== 4) throw new Error(`"${value}" is not an IPv4 address`);
        return { type: IdType.IPV4_ADDR, data: addressBytes(value, 4) };
      case "ipv6":
        if (isIP(value) !== 6) throw new Error(`"${value}" is not an IPv6 address`);
        return { type: IdType.IPV6_ADDR, data: addressBytes(value, 6) };
      default: {
        if (value.startsWith("#")) {
          const hex = value.slice(1);
          if (!/^([0-9a-f]{2})+$/i.test(hex)) throw new Error(`"${text}": keyid:# must be followed by hex digits`);
          return { type: IdType.KEY_ID, data: Uint8Array.from(Buffer.from(hex, "hex")) };
        }
        return { type: IdType.KEY_ID, data: encoder.encode(value) };
      }
    }
  }
  const family = isIP(text);
  if (family !== 0) return { type: family === 4 ? IdType.IPV4_ADDR : IdType.IPV6_ADDR, data: addressBytes(text, family as 4 | 6) };
  if (text.startsWith("@")) {
    if (text.length === 1) throw new Error(`"@" needs a name after it`);
    return { type: IdType.FQDN, data: encoder.encode(text.slice(1)) };
  }
  if (text.includes("@")) return { type: IdType.RFC822_ADDR, data: encoder.encode(text) };
  return { type: IdType.FQDN, data: encoder.encode(text) };
}

/** Parses a remote ID, which may be a pattern (`%any`, `*@domain`, `*.domain`). */
export function parseIdentityPattern(text: string): IdentityPattern {
  if (text === "%any" || text === "*") return { kind: "any" };
  if (/^\*@[^@*]+$/.test(text)) return { kind: "suffix", type: IdType.RFC822_ADDR, suffix: text.slice(1).toLowerCase() };
  if (/^\*\.[^@*]+$/.test(text)) return { kind: "suffix", type: IdType.FQDN, suffix: text.slice(1).toLowerCase() };
  if (text.includes("*")) throw new Error(`"${text}": a wildcard may only be "%any", "*@domain" or "*.domain"`);
  return { kind: "exact", id: parseIdentity(text) };
}

/** Names and addresses compare without case (RFC 7296 §3.5 leaves it open; strongSwan does the same). */
export function identityMatches(pattern: IdentityPattern, id: Identity): boolean {
  switch (pattern.kind) {
    case "any":
      return true;
    case "exact":
      return sameIdentity(pattern.id, id);
    case "suffix":
      return id.type === pattern.type && decoder.decode(id.data).toLowerCase().endsWith(pattern.suffix);
  }
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  if (a.type !== b.type) return false;
  if (a.type === IdType.FQDN || a.type === IdType.RFC822_ADDR) return decoder.decode(a.data).toLowerCase() === decoder.decode(b.data).toLowerCase();
  return equalBytes(a.data, b.data);
}

/** Text for logs and status ("b.sluice.test", "192.0.2.1", "keyid:#0a0b"). Never secret. */
export function formatIdentity(id: Identity): string {
  switch (id.type) {
    case IdType.IPV4_ADDR:
      return id.data.length === 4 ? id.data.join(".") : `ipv4:#${Buffer.from(id.data).toString("hex")}`;
    case IdType.IPV6_ADDR: {
      if (id.data.length !== 16) return `ipv6:#${Buffer.from(id.data).toString("hex")}`;
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(((id.data[i]! << 8) | id.data[i + 1]!).toString(16));
      return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
    }
    case IdType.FQDN:
    case IdType.RFC822_ADDR:
      return printable(decoder.decode(id.data));
    case IdType.KEY_ID:
      return `keyid:#${Buffer.from(id.data).toString("hex")}`;
    default:
      return `id${id.type}:#${Buffer.from(id.data).toString("hex")}`;
  }
}

export function formatPattern(pattern: IdentityPattern): string {
  return pattern.kind === "any" ? "%any" : pattern.kind === "suffix" ? `*${pattern.suffix}` : formatIdentity(pattern.id);
}

/** A peer's ID is attacker-chosen text: control characters never reach a log line. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?").slice(0, 255);
}
