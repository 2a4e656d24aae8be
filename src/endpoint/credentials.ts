/**
 * Certificates and private keys for IKE peers (`auth = "pubkey"`,
 * `remote_auth = "pubkey"`): the files read, checked, and turned into what
 * the IKE core calls (src/ike/config.ts's LocalCredential and PeerTrust).
 *
 * - `cert_file`: PEM (or DER) certificates, ours first, then intermediates
 *   to send with it. `key_file`: its private key (PKCS#8, PKCS#1 or SEC1
 *   PEM, or DER), read through readKeyFile, so a key file that group or
 *   others may read is refused. The key must belong to the certificate.
 * - `ca_files`: the CAs a peer's certificate must lead to (trust anchors,
 *   strongSwan's `cacerts`); `crl_file`: CRLs, each checked against the CA
 *   that signed it when loaded.
 *
 * Why the wall clock here: certificate and CRL dates are real dates, so
 * validation runs at `new Date()`, not at the core's monotonic clock. Files
 * are read when the endpoint starts and on every reload (SIGHUP), so a new
 * CRL takes effect with a reload. Errors name the file and the problem; the
 * private key is never in one.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseCertificate, parseCrl, pemBlocks, TrustStore, describeCertificate, type ParsedCertificate, type ParsedCrl } from "../ike/certificates.js";
import type { LocalCredential, PeerTrust } from "../ike/config.js";
import { IdType } from "../ike/constants.js";
import type { Identity } from "../ike/identity.js";
import { keyKind, signOctets } from "../ike/signatures.js";
import { readKeyFile } from "./keys.js";

function readPublic(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (error) {
    throw new Error(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

function certificatesIn(path: string, what: string): ParsedCertificate[] {
  const blocks = pemBlocks(readPublic(path, what), "CERTIFICATE");
  if (blocks.length === 0) throw new Error(`${what} ${path} holds no certificate (PEM "BEGIN CERTIFICATE" or DER)`);
  return blocks.map((der, i) => {
    try {
      return parseCertificate(der);
    } catch (error) {
      throw new Error(`${what} ${path}${blocks.length > 1 ? `, certificate ${i + 1}` : ""}: ${(error as Error).message}`);
    }
  });
}

function privateKey(path: string): KeyObject {
  const bytes = readKeyFile(path);
  try {
    const pem = bytes.includes("-----BEGIN");
    for (const type of pem ? [undefined] : (["pkcs8", "pkcs1", "sec1"] as const)) {
      try {
        return type === undefined ? createPrivateKey(bytes) : createPrivateKey({ key: bytes, format: "der", type });
      } catch {
        // the next DER form
      }
    }
    throw new Error(`key file ${path} holds no private key sluice can read (PKCS#8, PKCS#1 or SEC1, PEM or DER; not encrypted)`);
  } finally {
    bytes.fill(0);
  }
}

/** What `[peer.ike]` says about our certificate. */
export interface LocalCredentialFiles {
  certFile: string;
  keyFile: string;
  rsaPss: boolean;
  sendCert: LocalCredential["sendCert"];
}

/**
 * Loads our certificate (and intermediates) and private key, checks that
 * they belong together and that sluice can sign with the key.
 * @returns the credential, and the certificate's subject DN: our identity when `local_id` is not set
 * @throws Error naming the file and the problem
 * @example
 * ```ts
 * const { credential, subject } = loadLocalCredential({ certFile: "gw.pem", keyFile: "gw.key", rsaPss: false, sendCert: "ifasked" });
 * ```
 */
export function loadLocalCredential(files: LocalCredentialFiles): { credential: LocalCredential; subject: Identity; certificate: ParsedCertificate } {
  const certs = certificatesIn(files.certFile, "cert_file");
  const ours = certs[0]!;
  const key = privateKey(files.keyFile);
  const spki = (k: KeyObject): string => k.export({ type: "spki", format: "der" }).toString("hex");
  if (spki(createPublicKey(key)) !== spki(ours.publicKey)) throw new Error(`key_file ${files.keyFile} is not the key of the certificate in ${files.certFile} (${describeCertificate(ours)})`);
  const kind = keyKind(key);
  if (kind === undefined) throw new Error(`key_file ${files.keyFile}: a ${key.asymmetricKeyType} key; sluice signs with ECDSA P-256/P-384/P-521, RSA and Ed25519`);
  if (files.rsaPss && kind !== "rsa") throw new Error(`rsa_pss is set, but the key in ${files.keyFile} is ${kind}, not RSA`);
  return {
    credential: {
      chain: certs.map((c) => c.der),
      kind,
      rsaPss: files.rsaPss,
      sendCert: files.sendCert,
      sign: (method, scheme, octets) => signOctets(key, method, scheme, octets),
    },
    subject: { type: IdType.DER_ASN1_DN, data: ours.subject },
    certificate: ours,
  };
}

/**
 * Loads the CA certificates and the CRLs a peer's certificate is checked
 * against; `now` is the clock validation runs at (the wall clock; tests
 * pass their own).
 * @throws Error naming the file and the problem (not a CA, a CRL no configured CA signed)
 * @example
 * ```ts
 * const trust = loadPeerTrust(["/etc/sluice/ca.pem"], "/etc/sluice/ca.crl");
 * trust.validate(chainFromCertPayloads, peerId);   // { ok, … } or { ok: false, reason }
 * ```
 */
export function loadPeerTrust(caFiles: readonly string[], crlFile: string | undefined, now: () => Date = () => new Date()): PeerTrust & { store: TrustStore } {
  const cas = caFiles.flatMap((file) => certificatesIn(file, "ca_files entry"));
  for (const ca of cas) if (!ca.ca) throw new Error(`ca_files: ${describeCertificate(ca)} is not a CA certificate (no basicConstraints cA)`);
  const crls: ParsedCrl[] = [];
  if (crlFile !== undefined) {
    const blocks = pemBlocks(readPublic(crlFile, "crl_file"), "X509 CRL");
    if (blocks.length === 0) throw new Error(`crl_file ${crlFile} holds no CRL (PEM "BEGIN X509 CRL" or DER)`);
    for (const der of blocks) {
      try {
        crls.push(parseCrl(der, cas));
      } catch (error) {
        throw new Error(`crl_file ${crlFile}: ${(error as Error).message}`);
      }
    }
  }
  const store = new TrustStore(cas, crls);
  return { store, caKeyHashes: store.caKeyHashes, validate: (chain, id) => store.validate(chain, id, now()) };
}
