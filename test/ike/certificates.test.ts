// Certificate validation (src/ike/certificates.ts through the endpoint's
// loader, src/endpoint/credentials.ts), RFC 7427 signatures
// (src/ike/signatures.ts) and DN identities (src/ike/distinguishedName.ts),
// on a PKI the openssl command makes afresh for this run
// (test/fixtures/pki.ts): every key type, chains through an intermediate,
// and each way a certificate must be refused, with the reason named.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { createPki, pkiSkip, type TestPki } from "../fixtures/pki.js";
import { loadLocalCredential, loadPeerTrust } from "../../src/endpoint/credentials.js";
import { pemBlocks } from "../../src/ike/certificates.js";
import { parseIdentity, parseIdentityPattern, formatIdentity, identityMatches, sameIdentity } from "../../src/ike/identity.js";
import { algorithmIdentifier, chooseScheme, decodeSignatureAuth, encodeSignatureAuth, schemeFitsKey, signOctets, verifyOctets, type SignatureScheme } from "../../src/ike/signatures.js";
import { AuthMethod, SignatureHash, IdType } from "../../src/ike/constants.js";
import { formatDn, parseDn } from "../../src/ike/distinguishedName.js";

const skip = pkiSkip();

function chainOf(path: string): Uint8Array[] {
  return pemBlocks(new Uint8Array(readFileSync(path)), "CERTIFICATE");
}

describe("certificate validation", { skip }, () => {
  let pki: TestPki;
  before(() => {
    pki = createPki();
  });
  after(() => pki?.destroy());

  const trust = (crl = true) => loadPeerTrust([pki.root.cert], crl ? pki.crl : undefined);

  test("every key type validates, directly under the root or through the intermediate the peer sends", () => {
    for (const name of ["p256", "p384", "rsa", "ed25519", "gw"] as const) {
      const ee = pki.ee[name];
      const result = trust().validate(chainOf(ee.chain), parseIdentity(ee.id));
      assert.ok(result.ok, `${name}: ${result.ok ? "" : result.reason}`);
      assert.equal(result.kind, ee.keyType === "rsa" ? "rsa" : ee.keyType);
      assert.equal(result.path.length, name === "p256" || name === "ed25519" ? 3 : 2, "leaf, [intermediate,] root");
    }
  });

  test("each identity type the certificate holds: DNS, e-mail, IP address (subjectAltName) and the subject DN", () => {
    const ee = pki.ee.gw;
    for (const id of [ee.id, `admin@${ee.id}`, "192.0.2.12", ee.dn, "cn=gw.sluice.test, o=SLUICE TEST, c=ch".split(", ").reverse().join(", ")]) {
      const result = trust().validate(chainOf(ee.chain), parseIdentity(id));
      assert.ok(result.ok, `${id}: ${result.ok ? "" : result.reason}`);
    }
  });

  const refusals: [string, (p: TestPki) => { chain: Uint8Array[]; id: string }, RegExp][] = [
    ["an expired certificate", (p) => ({ chain: chainOf(p.ee.expired.chain), id: p.ee.expired.id }), /certificate "C=CH, O=sluice test, CN=expired\.sluice\.test" expired on 2021-01-01T00:00:00Z/],
    ["a certificate not yet valid", (p) => ({ chain: chainOf(p.ee.notYetValid.chain), id: p.ee.notYetValid.id }), /is not valid before 2099-01-01/],
    ["a certificate from another CA", (p) => ({ chain: chainOf(p.ee.other.chain), id: p.ee.other.id }), /was not issued by a trusted CA \(issuer "C=CH, O=somebody else, CN=Other CA"\)/],
    ["a revoked certificate (CRL)", (p) => ({ chain: chainOf(p.ee.revoked.chain), id: p.ee.revoked.id }), /CN=revoked\.sluice\.test" \(serial [0-9A-F]+\) is revoked since .* \(CRL of "C=CH, O=sluice test, CN=sluice test Root CA"\)/],
    ["an identity that is not in the certificate", (p) => ({ chain: chainOf(p.ee.gw.chain), id: "p256.sluice.test" }), /the ID p256\.sluice\.test is not in certificate "C=CH, O=sluice test, CN=gw\.sluice\.test" \(subjectAltName DNS:gw\.sluice\.test, email:admin@gw\.sluice\.test, IP:192\.0\.2\.12\)/],
    ["a name only in the CN (no subjectAltName)", (p) => ({ chain: chainOf(p.ee.noSan.chain), id: p.ee.noSan.id }), /the ID nosan\.sluice\.test is not in certificate .* \(no subjectAltName\)/],
    ["a chain without its intermediate", (p) => ({ chain: chainOf(p.ee.p256.cert), id: p.ee.p256.id }), /was not issued by a trusted CA \(issuer "C=CH, O=sluice test, CN=sluice test Intermediate CA"\)/],
    ["no certificate at all", () => ({ chain: [], id: "gw.sluice.test" }), /sent no certificate/],
    ["bytes that are no certificate", () => ({ chain: [new Uint8Array([0x30, 0x03, 1, 2, 3])], id: "gw.sluice.test" }), /certificate 1 the peer sent is not an X\.509 certificate/],
  ];
  for (const [what, make, reason] of refusals) {
    test(`refused: ${what}, with the reason`, () => {
      const { chain, id } = make(pki);
      const result = trust().validate(chain, parseIdentity(id));
      assert.equal(result.ok, false);
      assert.match(result.ok ? "" : result.reason, reason);
    });
  }

  test("the revoked certificate is accepted without the CRL (the CRL is what refuses it)", () => {
    const result = trust(false).validate(chainOf(pki.ee.revoked.chain), parseIdentity(pki.ee.revoked.id));
    assert.ok(result.ok);
  });

  test("the subject DN is an identity even without subjectAltName; a forged issuer name does not pass", () => {
    assert.ok(trust().validate(chainOf(pki.ee.noSan.chain), parseIdentity(pki.ee.noSan.dn)).ok);
    // The other CA's certificate offered as if it were the intermediate: the names do not match, the signature would not either.
    const forged = [chainOf(pki.ee.p256.cert)[0]!, chainOf(pki.other.cert)[0]!];
    assert.equal(trust().validate(forged, parseIdentity(pki.ee.p256.id)).ok, false);
  });

  test("the intermediate's pathlen:0 and the CA flag are enforced: the intermediate is trusted as a CA, an end entity is not", () => {
    // An end entity offered as a CA file is refused at load.
    assert.throws(() => loadPeerTrust([pki.ee.gw.cert], undefined), /is not a CA certificate/);
    // The intermediate alone as trust anchor: its own leaves validate.
    assert.ok(loadPeerTrust([pki.intermediate.cert], undefined).validate(chainOf(pki.ee.ed25519.cert), parseIdentity(pki.ee.ed25519.id)).ok);
  });

  test("a CRL that no configured CA signed is refused at load; so is a certificate file without certificates", () => {
    assert.throws(() => loadPeerTrust([pki.other.cert], pki.crl), /crl_file .*: the CRL of C=CH, O=sluice test, CN=sluice test Root CA is not signed by any configured CA/);
    const empty = join(pki.dir, "empty.pem");
    writeFileSync(empty, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n");
    assert.throws(() => loadPeerTrust([empty], undefined), /holds no certificate/);
  });

  test("a link verified once is remembered by both certificates' bytes: a tampered copy of the leaf is still refused, dates still checked", () => {
    let now = new Date();
    const store = loadPeerTrust([pki.root.cert], undefined, () => now);
    const chain = chainOf(pki.ee.gw.chain);
    const id = parseIdentity(pki.ee.gw.id);
    assert.ok(store.validate(chain, id).ok);
    assert.ok(store.validate(chain, id).ok, "again, from what it remembers");
    // The same certificate with one byte of its signature changed: same subject, same issuer, other bytes.
    const tampered = chain[0]!.slice();
    tampered[tampered.length - 1]! ^= 0x01;
    const refused = store.validate([tampered, ...chain.slice(1)], id);
    assert.equal(refused.ok, false);
    assert.match(refused.ok ? "" : refused.reason, /signature does not verify with that CA's key/);
    // Validity is checked at every validation, whatever is remembered.
    now = new Date(Date.now() + 10 * 365 * 86_400_000);
    const late = store.validate(chain, id);
    assert.equal(late.ok, false);
    assert.match(late.ok ? "" : late.reason, /expired on/);
  });

  test("the validation clock is the one handed in", () => {
    const then = loadPeerTrust([pki.root.cert], undefined, () => new Date("2020-06-01T00:00:00Z"));
    // In 2020 the expired certificate was valid, but the root (made today) was not yet.
    const result = then.validate(chainOf(pki.ee.expired.chain), parseIdentity(pki.ee.expired.id));
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : result.reason, /Root CA" is not valid before/);
  });

  test("our credential: the key must belong to the certificate and be readable by its owner only", () => {
    const loaded = loadLocalCredential({ certFile: pki.ee.p256.chain, keyFile: pki.ee.p256.key, rsaPss: false, sendCert: "ifasked" });
    assert.equal(loaded.credential.chain.length, 2, "the certificate and its intermediate");
    assert.equal(loaded.credential.kind, "ecdsa-p256");
    assert.equal(formatIdentity(loaded.subject), "C=CH, O=sluice test, CN=p256.sluice.test");
    assert.throws(() => loadLocalCredential({ certFile: pki.ee.p256.cert, keyFile: pki.ee.gw.key, rsaPss: false, sendCert: "ifasked" }), /is not the key of the certificate/);
    assert.throws(() => loadLocalCredential({ certFile: pki.ee.p256.cert, keyFile: pki.ee.p256.key, rsaPss: true, sendCert: "ifasked" }), /rsa_pss is set, but the key .* is ecdsa-p256/);
    chmodSync(pki.ee.gw.key, 0o644);
    try {
      assert.throws(() => loadLocalCredential({ certFile: pki.ee.gw.cert, keyFile: pki.ee.gw.key, rsaPss: false, sendCert: "ifasked" }), /mode 0644, readable by group and others: run chmod 600/);
    } finally {
      chmodSync(pki.ee.gw.key, 0o600);
    }
  });

  test("signatures: every key type and scheme signs and verifies; tampered octets, another key, another scheme do not", () => {
    const octets = new TextEncoder().encode("RealMessage | Nonce | prf(SK_p, ID)");
    const all = [SignatureHash.SHA2_256, SignatureHash.SHA2_384, SignatureHash.SHA2_512, SignatureHash.IDENTITY];
    const cases: [keyof TestPki["ee"], boolean, number[] | undefined, number, string][] = [
      ["p256", false, all, AuthMethod.DIGITAL_SIGNATURE, "ecdsa/sha256"],
      ["p384", false, all, AuthMethod.DIGITAL_SIGNATURE, "ecdsa/sha384"],
      ["rsa", false, all, AuthMethod.DIGITAL_SIGNATURE, "rsa/sha256"],
      ["rsa", true, all, AuthMethod.DIGITAL_SIGNATURE, "rsa-pss/sha256"],
      ["rsa", false, [SignatureHash.SHA2_512], AuthMethod.DIGITAL_SIGNATURE, "rsa/sha512"],
      ["ed25519", false, all, AuthMethod.DIGITAL_SIGNATURE, "ed25519/-"],
      ["p256", false, undefined, AuthMethod.ECDSA_256, "ecdsa/sha256"],
      ["p384", false, undefined, AuthMethod.ECDSA_384, "ecdsa/sha384"],
      ["rsa", false, undefined, AuthMethod.RSA_SIG, "rsa/sha1"],
    ];
    for (const [name, pss, hashes, method, expected] of cases) {
      const ee = pki.ee[name];
      const { credential } = loadLocalCredential({ certFile: ee.chain, keyFile: ee.key, rsaPss: pss, sendCert: "always" });
      const chosen = chooseScheme(credential.kind, hashes, pss);
      assert.ok(!("error" in chosen), `${name}: ${JSON.stringify(chosen)}`);
      assert.equal(chosen.method, method, name);
      const scheme = chosen.scheme;
      assert.equal(`${scheme.algorithm}/${"hash" in scheme ? scheme.hash : "-"}`, expected);
      const data = encodeSignatureAuth(method, scheme, credential.sign(method, scheme, octets));
      const decoded = decodeSignatureAuth(method, data);
      assert.ok(!("error" in decoded), name);
      const publicKey = loadPeerTrust([pki.root.cert, pki.intermediate.cert], undefined).validate(chainOf(ee.chain), parseIdentity(ee.id));
      assert.ok(publicKey.ok);
      const key = publicKey.certificate.publicKey;
      assert.ok(schemeFitsKey(publicKey.kind, method, decoded.scheme));
      assert.equal(verifyOctets(key, method, decoded.scheme, octets, decoded.signature), true, `${name} verifies`);
      const tampered = octets.slice();
      tampered[3]! ^= 1;
      assert.equal(verifyOctets(key, method, decoded.scheme, tampered, decoded.signature), false, `${name}: tampered octets`);
      const bad = decoded.signature.slice();
      bad[bad.length - 1]! ^= 1;
      assert.equal(verifyOctets(key, method, decoded.scheme, octets, bad), false, `${name}: tampered signature`);
    }
    assert.ok("error" in chooseScheme("ed25519", undefined, false), "Ed25519 needs RFC 7427");
    assert.ok("error" in chooseScheme("ed25519", [SignatureHash.SHA2_256], false), "and the Identity hash");
    assert.equal(schemeFitsKey("ecdsa-p384", AuthMethod.ECDSA_256, { algorithm: "ecdsa", hash: "sha256" }), false, "a classic method fixes the curve");
    assert.equal(schemeFitsKey("rsa", AuthMethod.DIGITAL_SIGNATURE, { algorithm: "ecdsa", hash: "sha256" }), false);
  });
});

describe("RFC 7427 wire forms and DN identities (no PKI needed)", () => {
  test("algorithm identifiers are RFC 7427 Appendix A's bytes", () => {
    const hex = (s: SignatureScheme): string => Buffer.from(algorithmIdentifier(s)).toString("hex");
    assert.equal(hex({ algorithm: "rsa", hash: "sha256" }), "300d06092a864886f70d01010b0500");
    assert.equal(hex({ algorithm: "rsa", hash: "sha512" }), "300d06092a864886f70d01010d0500");
    assert.equal(hex({ algorithm: "ecdsa", hash: "sha256" }), "300a06082a8648ce3d040302");
    assert.equal(hex({ algorithm: "ecdsa", hash: "sha384" }), "300a06082a8648ce3d040303");
    assert.equal(hex({ algorithm: "ed25519" }), "300506032b6570");
    // RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32 (trailer field left at its DER default).
    assert.equal(hex({ algorithm: "rsa-pss", hash: "sha256" }), "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120");
  });

  test("identifiers kept for reuse: an encoding handed out cannot change the next, a refused decoding is refused again", () => {
    const first = algorithmIdentifier({ algorithm: "ecdsa", hash: "sha256" });
    first.fill(0);
    assert.equal(Buffer.from(algorithmIdentifier({ algorithm: "ecdsa", hash: "sha256" })).toString("hex"), "300a06082a8648ce3d040302");
    const sha1Ecdsa = Uint8Array.from(Buffer.from("0b300906072a8648ce3d0401", "hex"));
    for (let i = 0; i < 2; i++) assert.match(JSON.stringify(decodeSignatureAuth(AuthMethod.DIGITAL_SIGNATURE, sha1Ecdsa)), /not one sluice verifies/);
    const sha256Ecdsa = Uint8Array.from(Buffer.from("0c300a06082a8648ce3d040302", "hex"));
    for (let i = 0; i < 2; i++) assert.deepEqual((decodeSignatureAuth(AuthMethod.DIGITAL_SIGNATURE, sha256Ecdsa) as { scheme: SignatureScheme }).scheme, { algorithm: "ecdsa", hash: "sha256" });
  });

  test("AUTH data that is not a signature sluice verifies is refused with a reason", () => {
    assert.match(JSON.stringify(decodeSignatureAuth(AuthMethod.DIGITAL_SIGNATURE, new Uint8Array([40, 1, 2]))), /shorter than its algorithm identifier/);
    const sha1Ecdsa = Uint8Array.from(Buffer.from("0b300906072a8648ce3d0401", "hex"));
    assert.match(JSON.stringify(decodeSignatureAuth(AuthMethod.DIGITAL_SIGNATURE, sha1Ecdsa)), /not one sluice verifies/);
    assert.match(JSON.stringify(decodeSignatureAuth(AuthMethod.DSS_SIG, new Uint8Array(40))), /method 3 is not a signature/);
  });

  test("DNs: parsed like strongSwan, compared by structure (case, string type, spacing), printed back", () => {
    const id = parseIdentity("C=CH, O=sluice test, CN=gw.sluice.test");
    assert.equal(id.type, IdType.DER_ASN1_DN);
    assert.equal(formatIdentity(id), "C=CH, O=sluice test, CN=gw.sluice.test");
    assert.ok(sameIdentity(id, parseIdentity("/C=ch/O=SLUICE TEST/CN=gw.sluice.test")));
    assert.ok(!sameIdentity(id, parseIdentity("C=CH, O=sluice test, CN=gw2.sluice.test")));
    assert.ok(!sameIdentity(id, parseIdentity("O=sluice test, C=CH, CN=gw.sluice.test")), "order matters");
    assert.ok(sameIdentity(id, parseIdentity(`asn1dn:#${Buffer.from(parseDn("C=CH,O=sluice test,CN=gw.sluice.test")).toString("hex")}`)));
    assert.equal(formatDn(parseDn("CN=a\\, b, O=x")), "CN=a\\, b, O=x");
    const pattern = parseIdentityPattern("C=CH, O=sluice test, CN=*");
    assert.equal(pattern.kind, "dn");
    assert.ok(identityMatches(pattern, id));
    assert.ok(!identityMatches(pattern, parseIdentity("C=CH, O=other, CN=gw")));
    assert.ok(!identityMatches(pattern, parseIdentity("gw.sluice.test")), "patterns never match across types");
    // A peer's own "CN=*" is no wildcard.
    assert.ok(!sameIdentity(parseIdentity("C=CH, O=sluice test, CN=*"), id));
    assert.throws(() => parseIdentity("XX=1, CN=a"), /"XX" .* is not a DN attribute/);
    assert.throws(() => parseIdentity("CN=a, , O=b"), /empty part/);
  });
});
