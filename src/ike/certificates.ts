/**
 * X.509 for IKE (RFC 7296 §3.6, §3.7; RFC 4945's profile; RFC 5280's path
 * validation, the part IKE needs): certificates and CRLs parsed, a peer's
 * chain validated to the configured CAs, and its IKE identity checked
 * against the certificate.
 *
 * Why two libraries: node:crypto does the cryptography (X509Certificate
 * checks a certificate's signature with its issuer's key, and gives the
 * public key as a KeyObject), but it cannot read a certificate's key usage
 * bits, path length constraint, subjectAltName entries as typed values or
 * the subject's DER, nor a CRL at all. @peculiar/asn1-x509 (PeculiarVentures'
 * ASN.1 schemas of RFC 5280, maintained, used by their @peculiar/x509 and
 * pkijs's successors) reads exactly those structures and does no crypto of
 * its own: every signature here is verified by OpenSSL through node:crypto.
 * The higher-level @peculiar/x509 was not taken: it verifies through
 * WebCrypto (asynchronous; the IKE core is synchronous) and needs a
 * reflect-metadata polyfill.
 *
 * Pure: the time of validation is a parameter (the shell's wall clock;
 * validity is about real dates, unlike the core's monotonic clock), and
 * nothing here reads a file.
 *
 * Validation, in the order the reasons are reported: the peer sent a
 * certificate; it parses; a path leads from it through the certificates the
 * peer sent (intermediates) to one of the configured CAs, each signature
 * verified; every certificate of the path is within its validity period;
 * each issuer is a CA (basicConstraints cA), within its pathLenConstraint,
 * with keyCertSign when it has a keyUsage; the end entity has
 * digitalSignature (or nonRepudiation) when it has a keyUsage; no
 * certificate carries a critical extension sluice does not process; none is
 * on its issuer's CRL when one was given; and the IKE identity is in the
 * certificate (subjectAltName dNSName, iPAddress or rfc822Name, or the
 * subject DN).
 */
import { X509Certificate, createHash, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicConstraints, Certificate, CertificateList, KeyUsage, KeyUsageFlags, SubjectAlternativeName } from "@peculiar/asn1-x509";
import { IdType } from "./constants.js";
import { dnEquals, formatDn } from "./distinguishedName.js";
import { formatIdentity, type Identity } from "./identity.js";
import { addressBytes } from "../endpoint/prefix.js";
import { equalBytes } from "./codec/bytes.js";
import { keyKind, schemeFromAlgorithmIdentifier, verifyOctets, type KeyKind } from "./signatures.js";
import { AuthMethod } from "./constants.js";
import { isIP } from "node:net";

/** A parsed certificate: what validation and identity matching read. */
export interface ParsedCertificate {
  der: Uint8Array;
  /** SHA-256 of the DER, hex: the certificate's name in the caches here. */
  fingerprint: string;
  x509: X509Certificate;
  subject: Uint8Array;
  /** The subject as text (formatDn), made once: logs name the certificate at every handshake. */
  subjectText: string;
  issuer: Uint8Array;
  /** Upper-case hex without leading zeros. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints, when present. */
  ca: boolean;
  pathLen: number | undefined;
  /** keyUsage bits (KeyUsageFlags), when present. */
  keyUsage: number | undefined;
  dnsNames: string[];
  emails: string[];
  addresses: Uint8Array[];
  /** Critical extensions sluice does not process (their OIDs). */
  unknownCritical: string[];
  publicKey: KeyObject;
  /** SHA-1 of the SubjectPublicKeyInfo: how a CERTREQ names a CA (§3.7). */
  keyHash: Uint8Array;
}

/** A parsed CRL, its signature already checked against its issuer. */
export interface ParsedCrl {
  issuer: Uint8Array;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials (as ParsedCertificate.serial) and when. */
  revoked: Map<string, Date>;
}

export type Validation =
  | { ok: true; certificate: ParsedCertificate; kind: KeyKind; path: ParsedCertificate[] }
  | { ok: false; reason: string };

/** Extensions whose meaning sluice applies, or may ignore though critical (policies: no policy processing is asked for). */
const HANDLED_EXTENSIONS = new Set([
  "2.5.29.19", // basicConstraints
  "2.5.29.15", // keyUsage
  "2.5.29.37", // extKeyUsage (IKE does not require one, RFC 4945 §5.1.3.12)
  "2.5.29.17", // subjectAltName
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.35", // authorityKeyIdentifier
  "2.5.29.32", // certificatePolicies
]);
const MAX_PATH = 8;
/** Verified issuer links a TrustStore remembers (see #verifiedLinks). */
const VERIFIED_LINKS_MAX = 4096;

function normalSerial(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex").toUpperCase().replace(/^0+(?=.)/, "");
}

/** The DER elements of a SEQUENCE's body (for the signed part of a CRL exactly as sent). */
function derChildren(der: Uint8Array): Uint8Array[] {
  const element = (bytes: Uint8Array, at: number): [number, number] => {
    if (at + 2 > bytes.length) throw new Error("truncated DER");
    let length = bytes[at + 1]!;
    let header = 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0 || n > 4 || at + 2 + n > bytes.length) throw new Error("bad DER length");
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + bytes[at + 2 + i]!;
      header += n;
    }
    if (at + header + length > bytes.length) throw new Error("truncated DER");
    return [header, length];
  };
  const [header, length] = element(der, 0);
  const body = der.subarray(header, header + length);
  const children: Uint8Array[] = [];
  for (let at = 0; at < body.length;) {
    const [h, l] = element(body, at);
    children.push(body.subarray(at, at + h + l));
    at += h + l;
  }
  return children;
}

/**
 * Certificates parsed before, by the SHA-256 of their DER: the ASN.1
 * library takes about 2 ms per certificate, more than the signatures of a
 * handshake, and peers present the same certificates again (CAs, returning
 * road warriors). Only the parse is kept; validation runs every time.
 */
const parsedCertificates = new Map<string, ParsedCertificate>();
const PARSED_MAX = 1024;

/**
 * Parses a DER certificate (or returns the same certificate parsed before).
 * @throws Error naming what is wrong with it
 */
export function parseCertificate(der: Uint8Array): ParsedCertificate {
  const key = createHash("sha256").update(der).digest("hex");
  const known = parsedCertificates.get(key);
  if (known !== undefined) return known;
  const parsed = parseNew(der.slice(), key);
  if (parsedCertificates.size >= PARSED_MAX) parsedCertificates.delete(parsedCertificates.keys().next().value!);
  parsedCertificates.set(key, parsed);
  return parsed;
}

function parseNew(der: Uint8Array, fingerprint: string): ParsedCertificate {
  let x509: X509Certificate;
  let cert: Certificate;
  try {
    x509 = new X509Certificate(der);
    cert = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw new Error(`not an X.509 certificate in DER (${(error as Error).message.slice(0, 80)})`);
  }
  const tbs = cert.tbsCertificate;
  const subject = new Uint8Array(AsnConvert.serialize(tbs.subject));
  const parsed: ParsedCertificate = {
    der,
    fingerprint,
    x509,
    subject,
    subjectText: formatDn(subject),
    issuer: new Uint8Array(AsnConvert.serialize(tbs.issuer)),
    serial: normalSerial(new Uint8Array(tbs.serialNumber)),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    ca: false,
    pathLen: undefined,
    keyUsage: undefined,
    dnsNames: [],
    emails: [],
    addresses: [],
    unknownCritical: [],
    publicKey: x509.publicKey,
    keyHash: new Uint8Array(createHash("sha1").update(x509.publicKey.export({ type: "spki", format: "der" })).digest()),
  };
  for (const extension of tbs.extensions ?? []) {
    const value = extension.extnValue.buffer;
    switch (extension.extnID) {
      case "2.5.29.19": {
        const bc = AsnConvert.parse(value, BasicConstraints);
        parsed.ca = bc.cA;
        parsed.pathLen = bc.pathLenConstraint;
        break;
      }
      case "2.5.29.15":
        parsed.keyUsage = AsnConvert.parse(value, KeyUsage).toNumber();
        break;
      case "2.5.29.17":
        for (const name of AsnConvert.parse(value, SubjectAlternativeName)) {
          if (name.dNSName !== undefined) parsed.dnsNames.push(name.dNSName);
          if (name.rfc822Name !== undefined) parsed.emails.push(name.rfc822Name);
          if (name.iPAddress !== undefined) {
            const family = isIP(name.iPAddress);
            if (family !== 0) parsed.addresses.push(addressBytes(name.iPAddress, family as 4 | 6));
          }
        }
        break;
      default:
        if (extension.critical && !HANDLED_EXTENSIONS.has(extension.extnID)) parsed.unknownCritical.push(extension.extnID);
    }
  }
  return parsed;
}

/**
 * Parses a DER CRL and checks its signature with the CA that issued it
 * (one of `cas`, by subject and signature).
 * @throws Error naming the problem (not a CRL, no CA among `cas` signed it)
 */
export function parseCrl(der: Uint8Array, cas: readonly ParsedCertificate[]): ParsedCrl {
  let crl: CertificateList;
  let parts: Uint8Array[];
  try {
    crl = AsnConvert.parse(der, CertificateList);
    parts = derChildren(der);
  } catch (error) {
    throw new Error(`not an X.509 CRL in DER (${(error as Error).message.slice(0, 80)})`);
  }
  const tbs = crl.tbsCertList;
  const issuer = new Uint8Array(AsnConvert.serialize(tbs.issuer));
  const scheme = schemeFromAlgorithmIdentifier(parts[1]!);
  if ("error" in scheme) throw new Error(`the CRL of ${formatDn(issuer)}: ${scheme.error}`);
  const signature = new Uint8Array(crl.signature).subarray(0);
  const signer = cas.find((ca) => dnEquals(ca.subject, issuer) && verifyOctets(ca.publicKey, AuthMethod.DIGITAL_SIGNATURE, scheme, parts[0]!, signature));
  if (signer === undefined) throw new Error(`the CRL of ${formatDn(issuer)} is not signed by any configured CA`);
  const revoked = new Map<string, Date>();
  for (const entry of tbs.revokedCertificates ?? []) revoked.set(normalSerial(new Uint8Array(entry.userCertificate)), entry.revocationDate.getTime());
  return { issuer, thisUpdate: tbs.thisUpdate.getTime(), nextUpdate: tbs.nextUpdate?.getTime(), revoked };
}

/** The DER blocks of PEM text of one kind ("CERTIFICATE", "X509 CRL"); DER input is returned as is. */
export function pemBlocks(data: Uint8Array, label: string): Uint8Array[] {
  const text = Buffer.from(data).toString("latin1");
  if (!text.includes("-----BEGIN")) return [data];
  const blocks: Uint8Array[] = [];
  const pattern = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`, "g");
  for (const match of text.matchAll(pattern)) blocks.push(new Uint8Array(Buffer.from(match[1]!.replace(/\s+/g, ""), "base64")));
  return blocks;
}

/** A certificate as logs name it: its subject. */
export function describeCertificate(cert: ParsedCertificate): string {
  return `"${cert.subjectText}"`;
}

/** Whether the certificate proves `id` (RFC 4945 §5.1.2: subjectAltName of the ID's type, or the subject DN). */
export function certificateHasIdentity(cert: ParsedCertificate, id: Identity): boolean {
  const text = (): string => Buffer.from(id.data).toString("utf8").toLowerCase();
  switch (id.type) {
    case IdType.FQDN:
      return cert.dnsNames.some((name) => name.toLowerCase() === text());
    case IdType.RFC822_ADDR:
      return cert.emails.some((email) => email.toLowerCase() === text());
    case IdType.IPV4_ADDR:
    case IdType.IPV6_ADDR:
      return cert.addresses.some((address) => equalBytes(address, id.data));
    case IdType.DER_ASN1_DN:
      return dnEquals(cert.subject, id.data);
    default:
      return false;
  }
}

function subjectAltNames(cert: ParsedCertificate): string {
  const names = [...cert.dnsNames.map((n) => `DNS:${n}`), ...cert.emails.map((e) => `email:${e}`), ...cert.addresses.map((a) => `IP:${formatIdentity({ type: a.length === 4 ? IdType.IPV4_ADDR : IdType.IPV6_ADDR, data: a })}`)];
  return names.length === 0 ? "no subjectAltName" : `subjectAltName ${names.join(", ")}`;
}

function day(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

/**
 * The configured trust of one peer: CA certificates (trust anchors) and
 * CRLs. `validate` takes what the peer sent and the identity it claims.
 * @example
 * ```ts
 * const trust = new TrustStore([parseCertificate(caDer)], []);
 * const result = trust.validate([eeDer, intermediateDer], parseIdentity("gw.sluice.test"), new Date());
 * if (!result.ok) console.log(result.reason);   // e.g. 'certificate "CN=gw" expired on 2021-01-01T00:00:00Z'
 * ```
 */
export class TrustStore {
  /** SHA-1 of each CA's SubjectPublicKeyInfo, for our CERTREQ (§3.7). */
  readonly caKeyHashes: Uint8Array[];
  /**
   * Links whose signature verified: "certificate fingerprint > issuer
   * fingerprint". Checking a certificate's signature with its issuer's key
   * gives the same answer every time for the same two certificates, and it
   * was the dearest step of a returning client's validation; strongSwan
   * keeps such a cache too. Dates, constraints, CRLs and the identity are
   * still checked at every validation. Only successes are kept, at most
   * VERIFIED_LINKS_MAX, the oldest forgotten first.
   */
  readonly #verifiedLinks = new Set<string>();

  constructor(readonly cas: readonly ParsedCertificate[], readonly crls: readonly ParsedCrl[]) {
    this.caKeyHashes = cas.map((ca) => ca.keyHash);
  }

  validate(chain: readonly Uint8Array[], id: Identity, now: Date): Validation {
    if (chain.length === 0) return { ok: false, reason: "the peer sent no certificate (CERT payload)" };
    const sent: ParsedCertificate[] = [];
    for (const [i, der] of chain.entries()) {
      try {
        sent.push(parseCertificate(der));
      } catch (error) {
        return { ok: false, reason: `certificate ${i + 1} the peer sent is ${(error as Error).message}` };
      }
    }
    const leaf = sent[0]!;
    const path = this.#path(leaf, sent.slice(1));
    if (typeof path === "string") return { ok: false, reason: path };
    for (const cert of path) {
      if (now < cert.notBefore) return { ok: false, reason: `certificate ${describeCertificate(cert)} is not valid before ${day(cert.notBefore)}` };
      if (now > cert.notAfter) return { ok: false, reason: `certificate ${describeCertificate(cert)} expired on ${day(cert.notAfter)}` };
      if (cert.unknownCritical.length > 0) return { ok: false, reason: `certificate ${describeCertificate(cert)} has critical extensions sluice does not process (${cert.unknownCritical.join(", ")})` };
    }
    for (const [i, issuer] of path.entries()) {
      if (i === 0) continue;
      if (!issuer.ca) return { ok: false, reason: `certificate ${describeCertificate(issuer)} issued ${describeCertificate(path[i - 1]!)} but is not a CA (basicConstraints)` };
      if (issuer.pathLen !== undefined && i - 1 > issuer.pathLen) return { ok: false, reason: `CA ${describeCertificate(issuer)} allows ${issuer.pathLen} intermediate CA(s) below it (pathLenConstraint), the path has ${i - 1}` };
      if (issuer.keyUsage !== undefined && (issuer.keyUsage & KeyUsageFlags.keyCertSign) === 0) return { ok: false, reason: `CA ${describeCertificate(issuer)} may not sign certificates (keyUsage lacks keyCertSign)` };
    }
    if (leaf.keyUsage !== undefined && (leaf.keyUsage & (KeyUsageFlags.digitalSignature | KeyUsageFlags.nonRepudiation)) === 0) {
      return { ok: false, reason: `certificate ${describeCertificate(leaf)} may not sign (keyUsage lacks digitalSignature)` };
    }
    for (let i = 0; i + 1 < path.length; i++) {
      const cert = path[i]!;
      const crl = this.crls.find((c) => dnEquals(c.issuer, path[i + 1]!.subject));
      const revokedAt = crl?.revoked.get(cert.serial);
      if (revokedAt !== undefined) return { ok: false, reason: `certificate ${describeCertificate(cert)} (serial ${cert.serial}) is revoked since ${day(revokedAt)} (CRL of ${describeCertificate(path[i + 1]!)})` };
    }
    if (!certificateHasIdentity(leaf, id)) {
      return { ok: false, reason: `the ID ${formatIdentity(id)} is not in certificate ${describeCertificate(leaf)} (${subjectAltNames(leaf)})` };
    }
    const kind = keyKind(leaf.publicKey);
    if (kind === undefined) return { ok: false, reason: `certificate ${describeCertificate(leaf)} has a ${leaf.publicKey.asymmetricKeyType} key, which sluice does not verify` };
    return { ok: true, certificate: leaf, kind, path };
  }

  /** From the leaf through the sent intermediates to a configured CA, each link's signature verified; or why there is none. */
  #path(leaf: ParsedCertificate, intermediates: ParsedCertificate[]): ParsedCertificate[] | string {
    const path = [leaf];
    for (let current = leaf; path.length <= MAX_PATH;) {
      const issuedBy = (candidate: ParsedCertificate): boolean => dnEquals(candidate.subject, current.issuer) && this.#signedBy(current, candidate);
      const anchor = this.cas.find(issuedBy);
      if (anchor !== undefined) {
        if (anchor !== current) path.push(anchor);
        return path;
      }
      const next = intermediates.find((c) => !path.includes(c) && issuedBy(c));
      if (next === undefined) {
        const known = this.cas.some((ca) => dnEquals(ca.subject, current.issuer));
        return known
          ? `certificate ${describeCertificate(current)} claims issuer "${formatDn(current.issuer)}", but its signature does not verify with that CA's key`
          : `certificate ${describeCertificate(current)} was not issued by a trusted CA (issuer "${formatDn(current.issuer)}")`;
      }
      path.push(next);
      current = next;
    }
    return `no path to a trusted CA within ${MAX_PATH} certificates`;
  }

  /** Whether `issuer`'s key verifies `cert`'s signature (asked of OpenSSL once per pair while remembered). */
  #signedBy(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
    const link = `${cert.fingerprint}>${issuer.fingerprint}`;
    if (this.#verifiedLinks.has(link)) return true;
    if (!cert.x509.verify(issuer.publicKey)) return false;
    if (this.#verifiedLinks.size >= VERIFIED_LINKS_MAX) this.#verifiedLinks.delete(this.#verifiedLinks.values().next().value!);
    this.#verifiedLinks.add(link);
    return true;
  }
}
