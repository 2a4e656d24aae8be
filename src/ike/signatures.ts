/**
 * Digital signatures in the AUTH payload (RFC 7296 §2.15, §3.8; RFC 7427;
 * RFC 8420 for Ed25519): which scheme to sign with, how the AUTH data is
 * laid out, and signing and verifying with node:crypto.
 *
 *   method 14 (RFC 7427):  AUTH data = len ‖ AlgorithmIdentifier (DER) ‖ signature
 *                          ECDSA signatures DER-encoded; RSA PKCS#1 v1.5 or
 *                          PSS (salt = hash length, MGF1 with the same hash);
 *                          Ed25519 over the octets themselves ("Identity" hash)
 *   method 1 (RSA):        PKCS#1 v1.5 with SHA-1 (RFC 7296's classic form)
 *   methods 9/10/11:       ECDSA P-256/SHA-256, P-384/SHA-384, P-521/SHA-512,
 *                          r ‖ s of fixed length (RFC 4754)
 *
 * Why sluice signs with method 14 whenever the peer announced hashes in
 * SIGNATURE_HASH_ALGORITHMS, and with the classic methods only when it did
 * not: this is strongSwan's rule, so both pick the same scheme for the same
 * key. The hash for a key follows strongSwan's order too: ECDSA the hash of
 * its curve's size first, RSA SHA-256 first. Verification accepts every
 * scheme here, each only with a key of its type (and a classic ECDSA method
 * only with its curve); SHA-1 only in the classic RSA method, where RFC 7296
 * fixes it. Nothing here reads a file or a clock.
 */
import { sign, verify, constants, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { RsaSaPssParams, id_RSASSA_PSS, id_mgf1 } from "@peculiar/asn1-rsa";
import { AuthMethod, SignatureHash } from "./constants.js";

export type HashName = "sha1" | "sha256" | "sha384" | "sha512";

/** The kinds of key sluice signs and verifies with. */
export type KeyKind = "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521" | "rsa" | "ed25519";

/** One signature scheme: the algorithm and its hash (none for Ed25519). */
export type SignatureScheme =
  | { algorithm: "ecdsa" | "rsa" | "rsa-pss"; hash: HashName }
  | { algorithm: "ed25519" };

/** What sits in an AUTH payload signed with a key. */
export interface SignedAuth {
  method: number;
  scheme: SignatureScheme;
  signature: Uint8Array;
}

const HASH_OIDS: Record<HashName, string> = {
  sha1: "1.3.14.3.2.26",
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  sha512: "2.16.840.1.101.3.4.2.3",
};
const HASH_BY_OID = new Map(Object.entries(HASH_OIDS).map(([name, oid]) => [oid, name as HashName]));
const HASH_BYTES: Record<HashName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };
/** SIGNATURE_HASH_ALGORITHMS numbers (RFC 7427 §7). */
const HASH_NUMBERS: Record<HashName, number> = { sha1: 1, sha256: SignatureHash.SHA2_256, sha384: SignatureHash.SHA2_384, sha512: SignatureHash.SHA2_512 };

/** Signature algorithm OIDs without parameters (RFC 7427 Appendix A, RFC 8420). */
const SCHEME_OIDS: readonly [string, SignatureScheme][] = [
  ["1.2.840.113549.1.1.11", { algorithm: "rsa", hash: "sha256" }],
  ["1.2.840.113549.1.1.12", { algorithm: "rsa", hash: "sha384" }],
  ["1.2.840.113549.1.1.13", { algorithm: "rsa", hash: "sha512" }],
  ["1.2.840.10045.4.3.2", { algorithm: "ecdsa", hash: "sha256" }],
  ["1.2.840.10045.4.3.3", { algorithm: "ecdsa", hash: "sha384" }],
  ["1.2.840.10045.4.3.4", { algorithm: "ecdsa", hash: "sha512" }],
  ["1.3.101.112", { algorithm: "ed25519" }],
];

/** A key's kind, or undefined for a key sluice does not sign with (DSA, P-224, Ed448, …). */
export function keyKind(key: KeyObject): KeyKind | undefined {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return "rsa";
    case "ed25519":
      return "ed25519";
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === "prime256v1" ? "ecdsa-p256" : curve === "secp384r1" ? "ecdsa-p384" : curve === "secp521r1" ? "ecdsa-p521" : undefined;
    }
    default:
      return undefined;
  }
}

/** For logs: "ECDSA-256 with SHA-384", "RSASSA-PSS with SHA-256", "Ed25519". */
export function describeScheme(scheme: SignatureScheme, method = AuthMethod.DIGITAL_SIGNATURE as number): string {
  if (scheme.algorithm === "ed25519") return "Ed25519";
  const hash = scheme.hash.toUpperCase().replace("SHA", "SHA-");
  const name = scheme.algorithm === "ecdsa" ? "ECDSA" : scheme.algorithm === "rsa" ? "RSA PKCS#1 v1.5" : "RSASSA-PSS";
  return `${name} with ${hash}${method === AuthMethod.DIGITAL_SIGNATURE ? "" : ` (classic method ${method})`}`;
}

const CLASSIC_ECDSA: Record<"ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521", [number, HashName]> = {
  "ecdsa-p256": [AuthMethod.ECDSA_256, "sha256"],
  "ecdsa-p384": [AuthMethod.ECDSA_384, "sha384"],
  "ecdsa-p521": [AuthMethod.ECDSA_521, "sha512"],
};

/**
 * The method and scheme to sign with: RFC 7427 when the peer announced
 * hashes (`peerHashes`, from its SIGNATURE_HASH_ALGORITHMS), else the
 * classic method of the key. Returns a reason when there is none.
 */
export function chooseScheme(kind: KeyKind, peerHashes: readonly number[] | undefined, rsaPss: boolean): { method: number; scheme: SignatureScheme } | { error: string } {
  if (peerHashes === undefined) {
    if (kind === "rsa") return rsaPss ? { error: "RSASSA-PSS needs RFC 7427, and the peer sent no SIGNATURE_HASH_ALGORITHMS" } : { method: AuthMethod.RSA_SIG, scheme: { algorithm: "rsa", hash: "sha1" } };
    if (kind === "ed25519") return { error: "Ed25519 needs RFC 7427, and the peer sent no SIGNATURE_HASH_ALGORITHMS" };
    const [method, hash] = CLASSIC_ECDSA[kind];
    return { method, scheme: { algorithm: "ecdsa", hash } };
  }
  if (kind === "ed25519") {
    return peerHashes.includes(SignatureHash.IDENTITY) ? { method: AuthMethod.DIGITAL_SIGNATURE, scheme: { algorithm: "ed25519" } } : { error: "the peer's SIGNATURE_HASH_ALGORITHMS lacks Identity (5), which Ed25519 needs" };
  }
  const order: HashName[] = kind === "ecdsa-p384" ? ["sha384", "sha256", "sha512"] : kind === "ecdsa-p521" ? ["sha512", "sha384", "sha256"] : ["sha256", "sha384", "sha512"];
  const hash = order.find((h) => peerHashes.includes(HASH_NUMBERS[h]));
  if (hash === undefined) return { error: `the peer's SIGNATURE_HASH_ALGORITHMS (${peerHashes.join(", ")}) has no SHA-2 hash` };
  const algorithm = kind === "rsa" ? (rsaPss ? "rsa-pss" : "rsa") : "ecdsa";
  return { method: AuthMethod.DIGITAL_SIGNATURE, scheme: { algorithm, hash } };
}

/**
 * Encoded and decoded AlgorithmIdentifiers, kept: the ASN.1 library took
 * longer over these few bytes than the ECDSA signature they name, for every
 * AUTH payload signed or checked, and a gateway meets the same handful of
 * identifiers all day. Decodings are kept for schemes sluice verifies only,
 * and only so many: a peer's odd encodings must not fill memory.
 */
const encodedIdentifiers = new Map<string, Uint8Array>();
const decodedIdentifiers = new Map<string, SignatureScheme>();
const DECODED_MAX = 64;

function schemeKey(scheme: SignatureScheme): string {
  return scheme.algorithm === "ed25519" ? "ed25519" : `${scheme.algorithm}/${scheme.hash}`;
}

/** The DER AlgorithmIdentifier of a scheme (RFC 7427 §3; PSS with its parameters, as strongSwan writes them): the caller's own copy. */
export function algorithmIdentifier(scheme: SignatureScheme): Uint8Array {
  return keptIdentifier(scheme).slice();
}

/** The kept encoding itself, for callers here that only read it. */
function keptIdentifier(scheme: SignatureScheme): Uint8Array {
  const key = schemeKey(scheme);
  let der = encodedIdentifiers.get(key);
  if (der === undefined) {
    der = encodeIdentifier(scheme);
    encodedIdentifiers.set(key, der);
  }
  return der;
}

function encodeIdentifier(scheme: SignatureScheme): Uint8Array {
  if (scheme.algorithm === "rsa-pss") {
    const hash = new AlgorithmIdentifier({ algorithm: HASH_OIDS[scheme.hash], parameters: null });
    const params = new RsaSaPssParams({
      hashAlgorithm: hash,
      maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: id_mgf1, parameters: AsnConvert.serialize(hash) }),
      saltLength: HASH_BYTES[scheme.hash],
    });
    return new Uint8Array(AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: id_RSASSA_PSS, parameters: AsnConvert.serialize(params) })));
  }
  const entry = SCHEME_OIDS.find(([, s]) => s.algorithm === scheme.algorithm && (s.algorithm === "ed25519" || (scheme.algorithm !== "ed25519" && s.hash === scheme.hash)));
  if (entry === undefined) throw new Error(`no algorithm identifier for ${describeScheme(scheme)}`);
  // RSA's identifiers carry NULL parameters; ECDSA's and Ed25519's none (RFC 7427 Appendix A).
  return new Uint8Array(AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: entry[0], parameters: scheme.algorithm === "rsa" ? null : undefined })));
}

/** A scheme from a DER AlgorithmIdentifier (a signature's in RFC 7427, a certificate's or a CRL's); a reason when sluice does not verify it. */
export function schemeFromAlgorithmIdentifier(der: Uint8Array): SignatureScheme | { error: string } {
  const key = Buffer.from(der.buffer, der.byteOffset, der.length).toString("hex");
  const known = decodedIdentifiers.get(key);
  if (known !== undefined) return known;
  const scheme = decodeIdentifier(der);
  if (!("error" in scheme) && decodedIdentifiers.size < DECODED_MAX) decodedIdentifiers.set(key, scheme);
  return scheme;
}

function decodeIdentifier(der: Uint8Array): SignatureScheme | { error: string } {
  let id: AlgorithmIdentifier;
  try {
    id = AsnConvert.parse(der, AlgorithmIdentifier);
  } catch {
    return { error: "the signature algorithm identifier is not DER" };
  }
  const known = SCHEME_OIDS.find(([oid]) => oid === id.algorithm);
  if (known) return known[1];
  if (id.algorithm !== id_RSASSA_PSS) return { error: `signature algorithm ${id.algorithm} is not one sluice verifies` };
  if (!id.parameters) return { error: "RSASSA-PSS without parameters (SHA-1 defaults) is not accepted" };
  let params: RsaSaPssParams;
  try {
    params = AsnConvert.parse(id.parameters, RsaSaPssParams);
  } catch {
    return { error: "RSASSA-PSS parameters are not DER" };
  }
  const hash = HASH_BY_OID.get(params.hashAlgorithm.algorithm);
  let mgfHash: string | undefined;
  try {
    mgfHash = params.maskGenAlgorithm.parameters ? AsnConvert.parse(params.maskGenAlgorithm.parameters, AlgorithmIdentifier).algorithm : undefined;
  } catch {
    mgfHash = undefined;
  }
  if (hash === undefined || hash === "sha1") return { error: `RSASSA-PSS with hash ${params.hashAlgorithm.algorithm} is not accepted (SHA-2 only)` };
  if (params.maskGenAlgorithm.algorithm !== id_mgf1 || mgfHash !== HASH_OIDS[hash]) return { error: "RSASSA-PSS with a mask generation other than MGF1 with the same hash is not supported" };
  if (params.saltLength !== HASH_BYTES[hash] || params.trailerField !== 1) return { error: `RSASSA-PSS with salt length ${params.saltLength} (not ${HASH_BYTES[hash]}) or trailer ${params.trailerField} is not supported` };
  return { algorithm: "rsa-pss", hash };
}

/** The AUTH payload's data for a signature (§3.8; RFC 7427 §3 for method 14). */
export function encodeSignatureAuth(method: number, scheme: SignatureScheme, signature: Uint8Array): Uint8Array {
  if (method !== AuthMethod.DIGITAL_SIGNATURE) return signature;
  const id = keptIdentifier(scheme);
  const data = new Uint8Array(1 + id.length + signature.length);
  data[0] = id.length;
  data.set(id, 1);
  data.set(signature, 1 + id.length);
  return data;
}

/** An AUTH payload's method and data as a signature, or why it is not one sluice verifies. */
export function decodeSignatureAuth(method: number, data: Uint8Array): SignedAuth | { error: string } {
  switch (method) {
    case AuthMethod.RSA_SIG:
      return { method, scheme: { algorithm: "rsa", hash: "sha1" }, signature: data };
    case AuthMethod.ECDSA_256:
    case AuthMethod.ECDSA_384:
    case AuthMethod.ECDSA_521: {
      const hash = method === AuthMethod.ECDSA_256 ? "sha256" : method === AuthMethod.ECDSA_384 ? "sha384" : "sha512";
      return { method, scheme: { algorithm: "ecdsa", hash }, signature: data };
    }
    case AuthMethod.DIGITAL_SIGNATURE: {
      if (data.length < 1 || data.length < 1 + data[0]!) return { error: "the AUTH data is shorter than its algorithm identifier" };
      const scheme = schemeFromAlgorithmIdentifier(data.subarray(1, 1 + data[0]!));
      if ("error" in scheme) return scheme;
      return { method, scheme, signature: data.subarray(1 + data[0]!) };
    }
    default:
      return { error: `authentication method ${method} is not a signature sluice verifies` };
  }
}

/** node:crypto's options for a scheme and key. */
function options(key: KeyObject, scheme: SignatureScheme, method: number): { algorithm: string | null; key: { key: KeyObject; padding?: number; saltLength?: number; dsaEncoding?: "der" | "ieee-p1363" } } {
  switch (scheme.algorithm) {
    case "ed25519":
      return { algorithm: null, key: { key } };
    case "rsa":
      return { algorithm: scheme.hash, key: { key, padding: constants.RSA_PKCS1_PADDING } };
    case "rsa-pss":
      return { algorithm: scheme.hash, key: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: HASH_BYTES[scheme.hash] } };
    case "ecdsa":
      return { algorithm: scheme.hash, key: { key, dsaEncoding: method === AuthMethod.DIGITAL_SIGNATURE ? "der" : "ieee-p1363" } };
  }
}

/** Signs `octets` with a private key. */
export function signOctets(key: KeyObject, method: number, scheme: SignatureScheme, octets: Uint8Array): Uint8Array {
  const o = options(key, scheme, method);
  return new Uint8Array(sign(o.algorithm, octets, o.key));
}

/** Whether a scheme can be verified with a public key of this kind (and a classic ECDSA method with its curve only). */
export function schemeFitsKey(kind: KeyKind, method: number, scheme: SignatureScheme): boolean {
  switch (scheme.algorithm) {
    case "ed25519":
      return kind === "ed25519";
    case "rsa":
    case "rsa-pss":
      return kind === "rsa";
    case "ecdsa":
      if (method === AuthMethod.DIGITAL_SIGNATURE) return kind.startsWith("ecdsa");
      return CLASSIC_ECDSA[kind as keyof typeof CLASSIC_ECDSA]?.[0] === method;
  }
}

/** Whether `signature` over `octets` verifies with a public key; false (never a throw) for any malformed signature. */
export function verifyOctets(key: KeyObject, method: number, scheme: SignatureScheme, octets: Uint8Array, signature: Uint8Array): boolean {
  const o = options(key, scheme, method);
  try {
    return verify(o.algorithm, octets, o.key, signature);
  } catch {
    return false;
  }
}
