/**
 * Distinguished names (X.501) as IKE identities: ID_DER_ASN1_DN (RFC 7296
 * §3.5) carries a certificate subject's DER, and a config writes one as
 * text the way strongSwan does: `C=CH, O=sluice, CN=gw.sluice.test`.
 *
 * Why DNs are compared by their DER structure and not by text: the same
 * name has many spellings (spaces, attribute aliases, string types), while
 * what a certificate proves is its DER. Two DNs are the same when they have
 * the same RDNs in the same order, each with the same attribute OID and the
 * same value; values compare without case and whatever string type carries
 * them (PrintableString in one, UTF8String in the other), as strongSwan's
 * compare_dn does. A value `*` in a configured DN matches any value of that
 * attribute (strongSwan's DN wildcards): `C=CH, O=sluice, CN=*`.
 *
 * Parsing and encoding use @peculiar/asn1-x509 (see certificates.ts for why
 * that library); nothing here reads a file or a clock.
 */
import { AttributeTypeAndValue, AttributeValue, Name, RelativeDistinguishedName } from "@peculiar/asn1-x509";
import { AsnConvert } from "@peculiar/asn1-schema";

/** Attribute names a config may use (strongSwan's x501rdns, the common part), by OID. */
const ATTRIBUTES: readonly (readonly [string[], string])[] = [
  [["C"], "2.5.4.6"],
  [["ST", "S"], "2.5.4.8"],
  [["L"], "2.5.4.7"],
  [["O"], "2.5.4.10"],
  [["OU"], "2.5.4.11"],
  [["CN"], "2.5.4.3"],
  [["SN", "serialNumber"], "2.5.4.5"],
  [["surname"], "2.5.4.4"],
  [["T", "title"], "2.5.4.12"],
  [["G", "givenName"], "2.5.4.42"],
  [["I", "initials"], "2.5.4.43"],
  [["dnQualifier"], "2.5.4.46"],
  [["pseudonym"], "2.5.4.65"],
  [["DC"], "0.9.2342.19200300.100.1.25"],
  [["UID"], "0.9.2342.19200300.100.1.1"],
  [["E", "Email", "emailAddress"], "1.2.840.113549.1.9.1"],
];

const OID_BY_NAME = new Map(ATTRIBUTES.flatMap(([names, oid]) => names.map((n) => [n.toLowerCase(), oid] as const)));
const NAME_BY_OID = new Map(ATTRIBUTES.map(([names, oid]) => [oid, names[0]!] as const));
/** Attributes whose values are IA5String (RFC 5280 Appendix A). */
const IA5_OIDS = new Set(["1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.25"]);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** One attribute of a DN: its OID and its value as text. */
export interface DnAttribute {
  oid: string;
  value: string;
}

/** A DN as RDNs in order, each a set of attributes (almost always one). */
export type DnRdns = DnAttribute[][];

/**
 * Parses `C=CH, O=sluice, CN=a.sluice.test` (or `/C=CH/O=sluice/CN=a`, as
 * strongSwan also reads) into DER. `\,` puts a comma into a value; an
 * attribute may also be written as its dotted OID (`2.5.4.3=a`).
 * @throws Error naming the part that is not `NAME=value` or the unknown name
 * @example
 * ```ts
 * const der = parseDn("C=CH, O=sluice, CN=gw.sluice.test");
 * formatDn(der); // "C=CH, O=sluice, CN=gw.sluice.test"
 * ```
 */
export function parseDn(text: string): Uint8Array {
  const slash = text.trimStart().startsWith("/");
  const parts = (slash ? text.trim().slice(1).split("/") : text.split(/(?<!\\),/)).map((p) => p.trim().replaceAll("\\,", ","));
  if (parts.length === 0 || parts.some((p) => p === "")) throw new Error(`"${text}" has an empty part: write NAME=value, NAME=value…`);
  const rdns = parts.map((part) => {
    const at = part.indexOf("=");
    if (at <= 0) throw new Error(`"${part}" in "${text}" is not NAME=value`);
    const name = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    const oid = /^\d+(\.\d+)+$/.test(name) ? name : OID_BY_NAME.get(name.toLowerCase());
    if (oid === undefined) throw new Error(`"${name}" in "${text}" is not a DN attribute sluice knows (C, ST, L, O, OU, CN, SN, T, G, I, DC, UID, E, or a dotted OID)`);
    if (value === "") throw new Error(`"${part}" in "${text}" has no value`);
    return new RelativeDistinguishedName([new AttributeTypeAndValue({ type: oid, value: attributeValue(oid, value) })]);
  });
  return new Uint8Array(AsnConvert.serialize(new Name(rdns)));
}

function attributeValue(oid: string, value: string): AttributeValue {
  if (IA5_OIDS.has(oid)) return new AttributeValue({ ia5String: value });
  return PRINTABLE.test(value) ? new AttributeValue({ printableString: value }) : new AttributeValue({ utf8String: value });
}

/** Parsed DNs by their DER (hex): the same few names (CAs, peers) are compared at every handshake, and parsing one costs a fraction of a millisecond. */
const parsed = new Map<string, DnRdns>();
const PARSED_MAX = 1024;

/** The RDNs of a DN's DER. @throws Error when the bytes are not a DN */
export function dnRdns(der: Uint8Array): DnRdns {
  const key = Buffer.from(der).toString("hex");
  const known = parsed.get(key);
  if (known !== undefined) return known;
  const name = AsnConvert.parse(der, Name);
  const rdns = name.map((rdn) => rdn.map((attribute) => ({ oid: attribute.type, value: attribute.value.toString() })));
  if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value!);
  parsed.set(key, rdns);
  return rdns;
}

/** A DN as strongSwan prints it: `C=CH, O=sluice, CN=a.sluice.test`; unknown attributes by OID, commas in values as `\,` (parseDn reads it back). */
export function formatDn(der: Uint8Array): string {
  return dnRdns(der).map((rdn) => rdn.map((a) => `${NAME_BY_OID.get(a.oid) ?? a.oid}=${a.value.replaceAll(",", "\\,")}`).join(" + ")).join(", ");
}

/**
 * Whether DN `der` matches `pattern` (both DER): the same RDNs in order,
 * values without case; a pattern value `*` matches any value. Bytes that
 * are not a DN match nothing.
 */
export function dnMatches(pattern: Uint8Array, der: Uint8Array): boolean {
  return compare(pattern, der, true);
}

/** Whether two DNs (DER) name the same: dnMatches with `*` an ordinary value (a peer's `CN=*` is no wildcard). */
export function dnEquals(a: Uint8Array, b: Uint8Array): boolean {
  return compare(a, b, false);
}

function compare(pattern: Uint8Array, der: Uint8Array, wildcards: boolean): boolean {
  if (!wildcards && pattern.length === der.length && Buffer.from(pattern).equals(der)) return true;
  let a: DnRdns;
  let b: DnRdns;
  try {
    a = dnRdns(pattern);
    b = dnRdns(der);
  } catch {
    return false;
  }
  if (a.length !== b.length) return false;
  return a.every((rdn, i) => {
    const other = b[i]!;
    return rdn.length === other.length && rdn.every((attribute, j) => {
      const theirs = other[j]!;
      return attribute.oid === theirs.oid && ((wildcards && attribute.value === "*") || attribute.value.toLowerCase() === theirs.value.toLowerCase());
    });
  });
}

/** Whether a DN has a `*` value (a pattern, not one name). */
export function dnHasWildcard(der: Uint8Array): boolean {
  try {
    return dnRdns(der).some((rdn) => rdn.some((a) => a.value === "*"));
  } catch {
    return false;
  }
}
