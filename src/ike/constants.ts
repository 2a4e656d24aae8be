/**
 * The numbers of IKEv2 (RFC 7296 §3 and the IANA "IKEv2 Parameters"
 * registry) that sluice sends, reads or refuses by name.
 *
 * Why plain `const` objects and not TypeScript enums: the codec reads these
 * numbers off the wire, where any value may appear; a lookup table of
 * names (for logs) and numeric constants compile to plain numbers and keep
 * unknown values representable.
 */

/** RFC 7296 §3.1: Exchange Type. */
export const Exchange = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
} as const;

/** RFC 7296 §3.1: Flags. */
export const Flag = {
  INITIATOR: 0x08,
  VERSION: 0x10,
  RESPONSE: 0x20,
} as const;

/** RFC 7296 §3.2 and IANA: Next Payload / payload types. */
export const Payload = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  /** RFC 7383: Encrypted and Authenticated Fragment. */
  SKF: 53,
} as const;

/** RFC 7296 §3.3.1: Protocol ID. */
export const Protocol = {
  IKE: 1,
  AH: 2,
  ESP: 3,
} as const;

/** RFC 7296 §3.3.2: Transform Type. */
export const TransformType = {
  ENCR: 1,
  PRF: 2,
  INTEG: 3,
  /** "Diffie-Hellman Group", renamed Key Exchange Method by RFC 9370. */
  KE: 4,
  ESN: 5,
} as const;

/** Transform IDs sluice knows by name (IANA). */
export const Encr = {
  AES_GCM_16: 20,
  CHACHA20_POLY1305: 28,
} as const;

export const Prf = {
  HMAC_SHA2_256: 5,
  HMAC_SHA2_384: 6,
  HMAC_SHA2_512: 7,
} as const;

export const KeGroup = {
  NONE: 0,
  MODP_2048: 14,
  MODP_3072: 15,
  ECP_256: 19,
  ECP_384: 20,
  CURVE25519: 31,
} as const;

export const Esn = {
  NO: 0,
  YES: 1,
} as const;

/** RFC 7296 §3.3.5: the Key Length attribute (TV format). */
export const ATTRIBUTE_KEY_LENGTH = 14;

/** RFC 7296 §3.5: ID Type. */
export const IdType = {
  IPV4_ADDR: 1,
  FQDN: 2,
  RFC822_ADDR: 3,
  IPV6_ADDR: 5,
  DER_ASN1_DN: 9,
  DER_ASN1_GN: 10,
  KEY_ID: 11,
} as const;

/** RFC 7296 §3.8 and RFC 7427: Auth Method. */
export const AuthMethod = {
  RSA_SIG: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIG: 3,
  ECDSA_256: 9,
  ECDSA_384: 10,
  ECDSA_521: 11,
  DIGITAL_SIGNATURE: 14,
} as const;

/** RFC 7296 §3.6: Certificate Encoding (CERT and CERTREQ payloads). */
export const CertEncoding = {
  /** DER certificate; in a CERTREQ: SHA-1 hashes of trusted CAs' SubjectPublicKeyInfo. */
  X509_SIGNATURE: 4,
} as const;

/** RFC 7296 §3.13.1: TS Type. */
export const TsType = {
  IPV4_ADDR_RANGE: 7,
  IPV6_ADDR_RANGE: 8,
} as const;

/** RFC 7296 §3.10.1 and IANA: Notify Message Types. Below 16384: errors. */
export const Notify = {
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396,
  MULTIPLE_AUTH_SUPPORTED: 16404,
  REDIRECT_SUPPORTED: 16406,
  CHILDLESS_IKEV2_SUPPORTED: 16418,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  SIGNATURE_HASH_ALGORITHMS: 16431,
} as const;

/** Notify types below this are errors (RFC 7296 §3.10.1). */
export const FIRST_STATUS_NOTIFY = 16384;

/** RFC 7427 §7 (IANA "Hash Algorithms"): what SIGNATURE_HASH_ALGORITHMS lists. */
export const SignatureHash = {
  SHA2_256: 2,
  SHA2_384: 3,
  SHA2_512: 4,
  IDENTITY: 5,
} as const;

/** The size of the fixed IKE header (RFC 7296 §3.1). */
export const IKE_HEADER_BYTES = 28;
/** The generic payload header (RFC 7296 §3.2). */
export const PAYLOAD_HEADER_BYTES = 4;
/** RFC 3948 §2.2: the four zero bytes before an IKE message on the NAT-T port. */
export const NON_ESP_MARKER_BYTES = 4;

/** A table's key for a value, for logs ("NO_PROPOSAL_CHOSEN"), or the number itself. */
export function nameOf(table: Readonly<Record<string, number>>, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return String(value);
}
