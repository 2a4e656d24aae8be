// IKE_AUTH with certificates between two sluice cores (one process,
// simulated network and clock; certificates from a PKI the openssl command
// makes for this run): every key type as initiator and as responder, RSA
// with PKCS#1 v1.5 and with PSS, a chain through an intermediate; CERTREQ
// and CERT on the wire; PSK one way and certificates the other; and each bad
// certificate (expired, another CA's, revoked, an identity it does not
// hold) refused with AUTHENTICATION_FAILED and a log line naming the
// reason, on either side.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers, type PeerSpec } from "../fixtures/ikeBed.js";
import { createPki, pkiSkip, type EeName, type TestPki } from "../fixtures/pki.js";
import { loadLocalCredential, loadPeerTrust } from "../../src/endpoint/credentials.js";
import type { LocalAuth, RemoteAuth } from "../../src/ike/config.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Notify, Payload } from "../../src/ike/constants.js";
import { findNotify, findPayload } from "../../src/ike/codec/payloads.js";

const skip = pkiSkip();

describe("certificate authentication between two cores", { skip }, () => {
  let pki: TestPki;
  before(() => {
    pki = createPki();
  });
  after(() => pki?.destroy());

  function local(name: EeName, options: { rsaPss?: boolean; sendCert?: "always" | "ifasked" | "never" } = {}): { auth: LocalAuth; id: string } {
    const ee = pki.ee[name];
    const { credential } = loadLocalCredential({ certFile: ee.chain, keyFile: ee.key, rsaPss: options.rsaPss ?? false, sendCert: options.sendCert ?? "ifasked" });
    return { auth: { method: "pubkey", credential }, id: ee.id };
  }

  function remote(crl = true): RemoteAuth {
    return { method: "pubkey", trust: loadPeerTrust([pki.root.cert], crl ? pki.crl : undefined) };
  }

  /** a (initiator) authenticates with `a`'s certificate, b (responder) with `b`'s; both trust the root (and its CRL). */
  function run(a: EeName, b: EeName, extra: { a?: Partial<PeerSpec>; b?: Partial<PeerSpec> } = {}): IkeBed {
    const ia = local(a);
    const ib = local(b);
    const peers = sitePeers({
      a: { localId: ia.id, remoteId: ib.id, localAuth: ia.auth, remoteAuth: remote(), ...extra.a },
      b: { localId: ib.id, remoteId: "%any", localAuth: ib.auth, remoteAuth: remote(), ...extra.b },
    });
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    bed.runUntil(() => bed.established() || bed.events(bed.a, "ike-failed").length > 0, 60_000);
    return bed;
  }

  const kinds: [EeName, string][] = [["p256", "ECDSA with SHA-256"], ["p384", "ECDSA with SHA-384"], ["rsa", "RSA PKCS#1 v1.5 with SHA-256"], ["ed25519", "Ed25519"]];
  for (const [name, scheme] of kinds) {
    test(`${name} as initiator: established, the responder logs ${scheme} and the certificate`, () => {
      const bed = run(name, "gw");
      assert.ok(bed.established(), JSON.stringify(bed.events(bed.b, "ike-failed").map((e) => e.message)));
      const [line] = bed.events(bed.b, "ike-authenticated");
      assert.match(line!.message, new RegExp(`authentication of '${pki.ee[name].id}' with ${scheme.replace(/[#.()]/g, "\\$&")} successful \\(certificate "C=CH, O=sluice test, CN=${pki.ee[name].id}"`));
      assert.match(bed.events(bed.a, "ike-authenticated")[0]!.message, /authentication of 'gw\.sluice\.test' with ECDSA with SHA-256 successful/);
      assert.equal(bed.b.core.list()[0]!.remoteId, pki.ee[name].id);
    });
    test(`${name} as responder: established, the initiator logs ${scheme}`, () => {
      const bed = run("gw", name);
      assert.ok(bed.established(), JSON.stringify(bed.events(bed.a, "ike-failed").map((e) => e.message)));
      assert.match(bed.events(bed.a, "ike-authenticated")[0]!.message, new RegExp(`with ${scheme.replace(/[#.()]/g, "\\$&")} successful`));
    });
  }

  test("RSA with PSS, both roles", () => {
    const pss = local("rsa", { rsaPss: true });
    for (const side of ["a", "b"] as const) {
      const bed = run(side === "a" ? "rsa" : "gw", side === "b" ? "rsa" : "gw", { [side]: { localAuth: pss.auth } });
      assert.ok(bed.established(), side);
      const verifier = side === "a" ? bed.b : bed.a;
      assert.match(bed.events(verifier, "ike-authenticated")[0]!.message, /with RSASSA-PSS with SHA-256 successful/);
    }
  });

  test("a chain through the intermediate is sent and followed (2 CA(s) up to the root)", () => {
    const bed = run("p256", "ed25519");
    assert.ok(bed.established());
    for (const side of [bed.a, bed.b]) assert.match(bed.events(side, "ike-authenticated")[0]!.message, /2 CA\(s\) up to "C=CH, O=sluice test, CN=sluice test Root CA"/);
  });

  test("CERTREQ: the responder's IKE_SA_INIT names the root by its key hash; with send_cert ifasked and no CERTREQ, no CERT goes out", () => {
    const bed = run("p256", "gw");
    const init = decodeMessage(bed.wire[1]!.datagram).payloads;
    const certreq = findPayload(init, Payload.CERTREQ);
    assert.ok(certreq, "CERTREQ in the IKE_SA_INIT response");
    const hashes = loadPeerTrust([pki.root.cert], undefined).caKeyHashes;
    assert.equal(Buffer.from(certreq.data).toString("hex"), Buffer.from(hashes[0]!).toString("hex"));
    assert.ok(findNotify(init, Notify.SIGNATURE_HASH_ALGORITHMS));
    // b does not expect a certificate (PSK from a): b sends no CERTREQ, a (ifasked) sends no CERT; a still
    // verifies b's certificate (b sends it: a's IKE_AUTH request carries a CERTREQ).
    const mixed = sitePeers({
      a: { localAuth: { method: "psk" }, remoteAuth: remote(), remoteId: "gw.sluice.test" },
      b: { localId: "gw.sluice.test", localAuth: local("gw").auth, remoteAuth: { method: "psk" } },
    });
    const bed2 = new IkeBed(mixed.a, mixed.b);
    bed2.start();
    assert.ok(bed2.runUntil(() => bed2.established(), 60_000), JSON.stringify(bed2.events(bed2.a, "ike-failed").map((e) => e.message)));
    assert.equal(findPayload(decodeMessage(bed2.wire[1]!.datagram).payloads, Payload.CERTREQ), undefined, "no CERTREQ from a PSK-only responder");
    assert.match(bed2.events(bed2.a, "ike-authenticated")[0]!.message, /gw\.sluice\.test/);
  });

  test("PSK one way, certificate the other, both ways round", () => {
    // a proves itself with its certificate, b with the PSK.
    const one = run("p256", "gw", { a: { remoteAuth: { method: "psk" } }, b: { localAuth: { method: "psk" }, remoteId: "p256.sluice.test" } });
    assert.ok(one.established(), JSON.stringify(one.events(one.b, "ike-failed").map((e) => e.message)));
    assert.equal(one.events(one.b, "ike-authenticated").length, 1, "b checked a's signature");
    assert.equal(one.events(one.a, "ike-authenticated").length, 0, "a checked b's PSK MAC (no signature)");
    // A PSK where a certificate is required: refused, named.
    const bad = run("p256", "gw", { a: { localAuth: { method: "psk" } } });
    assert.equal(bad.established(), false);
    assert.match(bad.events(bad.b, "ike-failed")[0]!.message, /authenticates with a pre-shared key; a certificate is required/);
    // A signature where a PSK is configured: refused, named.
    const bad2 = run("p256", "gw", { b: { remoteAuth: { method: "psk" }, remoteId: "p256.sluice.test" } });
    assert.match(bad2.events(bad2.b, "ike-failed")[0]!.message, /authenticates with DIGITAL_SIGNATURE; a pre-shared key is configured/);
  });

  test("a responder with a PSK road warrior and a certificate road warrior on %any picks by the AUTH method", () => {
    const ia = local("p256");
    const peers = sitePeers({ a: { localId: ia.id, remoteId: "gw.sluice.test", localAuth: ia.auth, remoteAuth: remote() } });
    const b = sitePeers({ b: { name: "psk-clients", remoteId: "%any", localId: "gw.sluice.test" } }).b[0]!;
    const certs = sitePeers({ b: { name: "cert-clients", remoteId: "%any", localId: "gw.sluice.test", localAuth: local("gw").auth, remoteAuth: remote() } }).b[0]!;
    const bed = new IkeBed(peers.a, [b, certs]);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established(), 60_000));
    assert.equal(bed.b.core.list()[0]!.peer, "cert-clients");
  });

  test("DN identities: the certificate's subject as local ID, a DN pattern as remote ID", () => {
    const ia = local("p256");
    const ib = local("gw");
    const peers = sitePeers({
      a: { localId: pki.ee.p256.dn, remoteId: "C=CH, O=sluice test, CN=*", localAuth: ia.auth, remoteAuth: remote() },
      b: { localId: pki.ee.gw.dn, remoteId: "C=CH, O=sluice test, CN=*", localAuth: ib.auth, remoteAuth: remote() },
    });
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established(), 60_000), JSON.stringify(bed.events(bed.b, "ike-failed").map((e) => e.message)));
    assert.equal(bed.b.core.list()[0]!.remoteId, "C=CH, O=sluice test, CN=p256.sluice.test");
    assert.equal(bed.a.core.list()[0]!.remoteId, "C=CH, O=sluice test, CN=gw.sluice.test");
  });

  // Each bad certificate on the initiator's side (the responder refuses) and on the responder's (the initiator refuses and tells it).
  const bad: [string, EeName, string | undefined, RegExp][] = [
    ["an expired certificate", "expired", undefined, /expired on 2021-01-01T00:00:00Z/],
    ["a certificate from another CA", "other", undefined, /was not issued by a trusted CA \(issuer "C=CH, O=somebody else, CN=Other CA"\)/],
    ["a revoked certificate (CRL)", "revoked", undefined, /is revoked since .* \(CRL of "C=CH, O=sluice test, CN=sluice test Root CA"\)/],
    ["an identity the certificate does not hold", "gw", "p384.sluice.test", /the ID p384\.sluice\.test is not in certificate "C=CH, O=sluice test, CN=gw\.sluice\.test"/],
  ];
  for (const [what, name, claimedId, reason] of bad) {
    test(`refused as responder: ${what}: AUTHENTICATION_FAILED, the reason logged on the responder`, () => {
      const id = claimedId ?? pki.ee[name].id;
      const bed = run(name, "p256", { a: { localId: id } });
      assert.equal(bed.established(), false);
      const failed = bed.events(bed.b, "ike-failed");
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!.fields.reason, "AUTHENTICATION_FAILED");
      assert.match(failed[0]!.message, reason);
      // The answer on the wire: an IKE_AUTH response with N(AUTHENTICATION_FAILED), which the initiator logs.
      assert.deepEqual(bed.events(bed.a, "ike-failed").map((e) => e.fields.reason), ["AUTHENTICATION_FAILED"]);
      assert.equal(bed.a.core.list().length + bed.b.core.list().length, 0, "no SA left on either side");
    });
    test(`refused as initiator: ${what}: the initiator names the reason and tells the responder`, () => {
      const id = claimedId ?? pki.ee[name].id;
      const bed = run("p256", name, { b: { localId: id }, a: { remoteId: "%any" } });
      assert.equal(bed.established(), false);
      bed.runUntil(() => bed.events(bed.b, "ike-failed").length > 0, 60_000);
      const failed = bed.events(bed.a, "ike-failed");
      assert.equal(failed[0]!.fields.reason, "AUTHENTICATION_FAILED");
      assert.match(failed[0]!.message, reason);
      assert.deepEqual(bed.events(bed.b, "ike-failed").map((e) => e.fields.reason), ["AUTHENTICATION_FAILED"], "the INFORMATIONAL with AUTHENTICATION_FAILED reached the responder");
      assert.equal(bed.a.children.size + bed.b.children.size, 0);
    });
  }

  test("a signature made over other octets does not verify (the AUTH is bound to this exchange)", () => {
    const ia = local("p256");
    const sign = (ia.auth as Extract<LocalAuth, { method: "pubkey" }>).credential.sign;
    const tampered: LocalAuth = { method: "pubkey", credential: { ...(ia.auth as Extract<LocalAuth, { method: "pubkey" }>).credential, sign: (m, s, octets) => sign(m, s, octets.map((b, i) => (i === 0 ? b ^ 1 : b))) } };
    const bed = run("p256", "gw", { a: { localAuth: tampered } });
    assert.equal(bed.established(), false);
    assert.match(bed.events(bed.b, "ike-failed")[0]!.message, /the ECDSA with SHA-256 signature of p256\.sluice\.test does not verify with the key of certificate "C=CH, O=sluice test, CN=p256\.sluice\.test"/);
  });

  test("send_cert never: the peer has nothing to validate, and says so", () => {
    const bed = run("p256", "gw", { a: { localAuth: local("p256", { sendCert: "never" }).auth } });
    assert.equal(bed.established(), false);
    assert.match(bed.events(bed.b, "ike-failed")[0]!.message, /the peer sent no certificate/);
  });
});
