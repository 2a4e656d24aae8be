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
import { dnEquals, dnHasWildcard, dnMatches, formatDn, parseDn } from "./distinguishedName.js";

export interface Identity {
  type: number;
  data: Uint8Array;
}

/** A remote ID as configured: one identity, or a pattern. */
export type IdentityPattern =
  | { kind: "exact"; id: Identity }
  | { kind: "any" }
  | { kind: "suffix"; type: number; suffix: string }
  /** A DN with `*` values. */
  | { kind: "dn"; der: Uint8Array };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Parses a config identity; throws an Error naming the problem. */
export function parseIdentity(text: string): Identity {
  if (typeof text !== "string" || text === "") throw new Error("an identity must be a non-empty string");
  const prefixed = /^(fqdn|email|rfc822|ipv4|ipv6|keyid|asn1dn):(.*)$/i.exec(text);
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
      case "asn1dn": {
        if (!value.startsWith("#")) return { type: IdType.DER_ASN1_DN, data: parseDn(value) };
        if (!/^([0-9a-f]{2})+$/i.test(value.slice(1))) throw new Error(`"${text}": asn1dn:# must be followed by hex digits`);
        const data = Uint8Array.from(Buffer.from(value.slice(1), "hex"));
        formatDn(data); // throws when the bytes are not a DN
        return { type: IdType.DER_ASN1_DN, data };
      }
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
  // strongSwan's rule: text with "=" in it is a distinguished name.
  if (text.includes("=")) return { type: IdType.DER_ASN1_DN, data: parseDn(text) };
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
  if (text.includes("=")) {
    const id = parseIdentity(text);
    return id.type === IdType.DER_ASN1_DN && dnHasWildcard(id.data) ? { kind: "dn", der: id.data } : { kind: "exact", id };
  }
  if (text.includes("*")) throw new Error(`"${text}": a wildcard may only be "%any", "*@domain", "*.domain" or a DN value ("CN=*")`);
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
    case "dn":
      return id.type === IdType.DER_ASN1_DN && dnMatches(pattern.der, id.data);
  }
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  if (a.type !== b.type) return false;
  if (a.type === IdType.FQDN || a.type === IdType.RFC822_ADDR) return decoder.decode(a.data).toLowerCase() === decoder.decode(b.data).toLowerCase();
  if (a.type === IdType.DER_ASN1_DN) return equalBytes(a.data, b.data) || dnEquals(a.data, b.data);
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
    case IdType.DER_ASN1_DN:
      try {
        return printable(formatDn(id.data));
      } catch {
        return `asn1dn:#${Buffer.from(id.data).toString("hex")}`;
      }
    default:
      return `id${id.type}:#${Buffer.from(id.data).toString("hex")}`;
  }
}

export function formatPattern(pattern: IdentityPattern): string {
  switch (pattern.kind) {
    case "any":
      return "%any";
    case "suffix":
      return `*${pattern.suffix}`;
    case "dn":
      return formatIdentity({ type: IdType.DER_ASN1_DN, data: pattern.der });
    case "exact":
      return formatIdentity(pattern.id);
  }
}

/** A peer's ID is attacker-chosen text: control characters never reach a log line. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?").slice(0, 255);
}
