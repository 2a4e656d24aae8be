// sluice's certificate authentication against the real strongSwan 5.9 in
// network namespaces (test/fixtures/interop/), on a PKI the openssl command
// makes for this run (test/fixtures/pki.ts):
//
// 1. every key type sluice signs with (ECDSA P-256 through an intermediate,
//    P-384, RSA PKCS#1 v1.5, RSA PSS, Ed25519) as initiator to a strongSwan
//    gateway, and strongSwan initiating with the same key type to a sluice
//    gateway: child SA up, each side logs the other's signature scheme;
// 2. strongSwan's classic methods (signature_authentication = no: ECDSA
//    method 9, RSA method 1) both ways;
// 3. refusals by sluice in both roles (strongSwan presents an expired
//    certificate, one from another CA, a revoked one, or proves an identity
//    that is not the configured one): AUTHENTICATION_FAILED and a log line
//    naming the reason; and strongSwan refusing sluice's expired, other-CA
//    and revoked certificates and an identity it does not expect.
//    (A certificate that does not hold the ID its owner claims cannot be
//    sent by either implementation, both refuse such a config; the core
//    tests, test/ike/certificates.test.ts, forge that case.)
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { siteToSite } from "../fixtures/interop/swanctl.js";
import { TwoHosts, type Host, type Topology } from "../fixtures/interop/topology.js";
import { SluiceDaemon, type SluiceIkePeer } from "../fixtures/interop/sluice.js";
import { createPki, pkiSkip, type EeFiles, type EeName, type TestPki } from "../fixtures/pki.js";

const skip = bedSkip() || pkiSkip();
/** strongSwan's plugins for certificates, beyond the bed's. */
const CERT_PLUGINS = ["pem", "x509", "pkcs1", "pkcs8", "pubkey", "revocation", "constraints"];

function cleanUpAfter<T extends Topology | Charon | SluiceDaemon>(t: TestContext, thing: T): T {
  t.after(() => ("destroy" in thing ? thing.destroy() : thing.stop()));
  return thing;
}

interface CharonSide {
  ee: EeFiles;
  remoteId: string;
  crl?: boolean;
  settings?: string[];
}

/** A charon in `host` with `side.ee` as its certificate, trusting the root (and its CRL), connected to `other`. */
async function charon(t: TestContext, pki: TestPki, host: Host, other: Host, side: CharonSide, role: "initiator" | "responder"): Promise<Charon> {
  const c = cleanUpAfter(t, await Charon.start(host.ns, { plugins: CERT_PLUGINS, settings: side.settings, logLevels: { cfg: 2, ike: 2, lib: 1 } }));
  for (const sub of ["x509", "x509ca", "x509crl", "private"]) mkdirSync(join(c.dir, sub), { recursive: true });
  copyFileSync(side.ee.cert, join(c.dir, "x509", "local.pem"));
  copyFileSync(side.ee.key, join(c.dir, "private", "local.pem"));
  chmodSync(join(c.dir, "private", "local.pem"), 0o600);
  copyFileSync(pki.root.cert, join(c.dir, "x509ca", "root.pem"));
  // The intermediate as a CA certificate: strongSwan sends it with a leaf it issued.
  copyFileSync(pki.intermediate.cert, join(c.dir, "x509ca", "intermediate.pem"));
  if (side.crl !== false) copyFileSync(pki.crl, join(c.dir, "x509crl", "root.crl"));
  await c.load(siteToSite({
    local: host.address,
    remote: role === "responder" ? "%any" : other.address,
    localId: side.ee.id,
    remoteId: side.remoteId,
    localTs: host.site,
    remoteTs: other.site,
    localAuth: ["auth = pubkey", "certs = local.pem"],
    remoteAuth: ["auth = pubkey", "cacerts = root.pem"],
  }));
  return c;
}

/** sluice's peer with `ee`'s certificate, trusting the root and its CRL. */
function sluicePeer(pki: TestPki, ee: EeFiles, me: Host, other: Host, role: "initiator" | "responder", extra: Partial<SluiceIkePeer> = {}): SluiceIkePeer {
  return {
    name: "peer",
    ...(role === "initiator" ? { endpoint: other.address, start: "start" as const } : { start: "none" as const }),
    selectors: [other.site],
    localSelectors: [me.site],
    localId: ee.id,
    remoteId: "%any",
    psk: null,
    ...extra,
    ike: { cert_file: ee.chain, key_file: ee.key, ca_files: [pki.root.cert], crl_file: pki.crl, ...extra.ike },
  };
}

const SCHEMES: Record<string, { strongSwan: RegExp; sluice: RegExp }> = {
  p256: { strongSwan: /ECDSA_WITH_SHA256_DER/, sluice: /ECDSA with SHA-256/ },
  p384: { strongSwan: /ECDSA_WITH_SHA384_DER/, sluice: /ECDSA with SHA-384/ },
  rsa: { strongSwan: /RSA_EMSA_PKCS1_SHA2_256/, sluice: /RSA PKCS#1 v1\.5 with SHA-256/ },
  "rsa-pss": { strongSwan: /RSA_EMSA_PSS_SHA2_256_SALT_32/, sluice: /RSASSA-PSS with SHA-256/ },
  ed25519: { strongSwan: /ED25519/, sluice: /Ed25519/ },
};

describe("IKEv2 certificates with strongSwan", { skip }, () => {
  let pki: TestPki;
  before(() => {
    pki = createPki();
  });
  after(() => pki?.destroy());

  for (const kind of Object.keys(SCHEMES)) {
    const name: EeName = kind === "rsa-pss" ? "rsa" : (kind as EeName);
    const pss = kind === "rsa-pss";
    test(`sluice (${kind}) initiator → strongSwan gateway: up, each verifies the other's signature`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const ee = pki.ee[name];
      const gateway = await charon(t, pki, bed.b, bed.a, { ee: pki.ee.gw, remoteId: ee.id }, "responder");
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [sluicePeer(pki, ee, bed.a, bed.b, "initiator", { remoteId: "gw.sluice.test", ike: pss ? { rsa_pss: true } : {} })]));
      await sluice.waitForEvent("child-up", 15_000);
      await gateway.waitForLog(new RegExp(`authentication of '${ee.id.replaceAll(".", "\\.")}' with ${SCHEMES[kind]!.strongSwan.source} successful`), { timeoutMs: 5000 });
      const [line] = sluice.events("ike-authenticated");
      assert.match(String(line!.msg), /authentication of 'gw\.sluice\.test' with ECDSA with SHA-256 successful/);
      const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 3, interval: 0.1 });
      assert.equal(ping.received, 3, ping.output);
    });

    test(`strongSwan (${kind}) initiator → sluice gateway: up, sluice logs ${kind}`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const ee = pki.ee[name];
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [sluicePeer(pki, pki.ee.gw, bed.b, bed.a, "responder")]));
      const client = await charon(t, pki, bed.a, bed.b, { ee, remoteId: "gw.sluice.test", settings: pss ? ["rsa_pss = yes"] : [] }, "initiator");
      const output = await client.initiate("net");
      assert.match(output, /CHILD_SA net\{\d+\} established/);
      const [line] = await sluice.waitForEvents("ike-authenticated", 1);
      assert.match(String(line!.msg), new RegExp(`authentication of '${ee.id.replaceAll(".", "\\.")}' with ${SCHEMES[kind]!.sluice.source} successful`));
      assert.match(client.log(), /authentication of 'gw\.sluice\.test' with ECDSA_WITH_SHA256_DER successful/);
    });
  }

  for (const name of ["gw", "rsa"] as const) {
    test(`classic methods (strongSwan's signature_authentication = no, ${name}): both verify, both ways`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const ee = pki.ee[name];
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [sluicePeer(pki, pki.ee.gw, bed.b, bed.a, "responder")]));
      const client = await charon(t, pki, bed.a, bed.b, { ee, remoteId: "gw.sluice.test", settings: ["signature_authentication = no"] }, "initiator");
      await client.initiate("net");
      const [line] = await sluice.waitForEvents("ike-authenticated", 1);
      assert.match(String(line!.msg), name === "gw" ? /with ECDSA with SHA-256 \(classic method 9\) successful/ : /with RSA PKCS#1 v1\.5 with SHA-1 \(classic method 1\) successful/);
      // strongSwan announced no hashes: sluice answered with the classic method of its P-256 key.
      assert.match(client.log(), /authentication of 'gw\.sluice\.test' with ECDSA-256 signature successful/);
    });
  }

  // strongSwan presents a bad certificate: sluice refuses it as responder and as initiator.
  const bad: [EeName, RegExp][] = [
    ["expired", /certificate "C=CH, O=sluice test, CN=expired\.sluice\.test" expired on 2021-01-01T00:00:00Z/],
    ["other", /was not issued by a trusted CA \(issuer "C=CH, O=somebody else, CN=Other CA"\)/],
    ["revoked", /CN=revoked\.sluice\.test" \(serial [0-9A-F]+\) is revoked since .* \(CRL of "C=CH, O=sluice test, CN=sluice test Root CA"\)/],
  ];
  for (const [name, reason] of bad) {
    test(`sluice as responder refuses strongSwan's ${name} certificate: AUTHENTICATION_FAILED, the reason logged`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [sluicePeer(pki, pki.ee.gw, bed.b, bed.a, "responder")]));
      const client = await charon(t, pki, bed.a, bed.b, { ee: pki.ee[name], remoteId: "gw.sluice.test" }, "initiator");
      await assert.rejects(client.initiate("net", { timeoutS: 10 }));
      const [failed] = await sluice.waitForEvents("ike-failed", 1);
      assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
      assert.match(String(failed!.msg), reason);
      assert.match(client.log(), /received AUTHENTICATION_FAILED notify error/);
    });

    test(`sluice as initiator refuses a strongSwan gateway's ${name} certificate and tells it`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const gateway = await charon(t, pki, bed.b, bed.a, { ee: pki.ee[name], remoteId: "p256.sluice.test" }, "responder");
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [sluicePeer(pki, pki.ee.p256, bed.a, bed.b, "initiator")]));
      const [failed] = await sluice.waitForEvents("ike-failed", 1, 15_000);
      assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
      assert.match(String(failed!.msg), reason);
      // strongSwan takes the INFORMATIONAL with AUTHENTICATION_FAILED as the end of the IKE SA.
      await gateway.waitForLog(/parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]/, { timeoutMs: 5000 });
    });
  }

  // An identity that is not the one configured: the certificate is good, the peer is someone else.
  test("sluice as responder refuses an identity no peer config names (remote_id p384, strongSwan proves p256): AUTHENTICATION_FAILED, the reason logged", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [sluicePeer(pki, pki.ee.gw, bed.b, bed.a, "responder", { remoteId: pki.ee.p384.id })]));
    const client = await charon(t, pki, bed.a, bed.b, { ee: pki.ee.p256, remoteId: "gw.sluice.test" }, "initiator");
    await assert.rejects(client.initiate("net", { timeoutS: 10 }));
    const [failed] = await sluice.waitForEvents("ike-failed", 1);
    assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
    assert.match(String(failed!.msg), /no peer config matches p256\.sluice\.test/);
    assert.match(client.log(), /received AUTHENTICATION_FAILED notify error/);
  });

  test("sluice as initiator refuses a gateway whose certified identity is not remote_id, and tells it", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const gateway = await charon(t, pki, bed.b, bed.a, { ee: pki.ee.p384, remoteId: pki.ee.p256.id }, "responder");
    // A pattern (sluice sends no IDr for it, so strongSwan answers with its own ID): only the gateways of "gateways.sluice.test".
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [sluicePeer(pki, pki.ee.p256, bed.a, bed.b, "initiator", { remoteId: "C=CH, O=gateways.sluice.test, CN=*" })]));
    const [failed] = await sluice.waitForEvents("ike-failed", 1, 15_000);
    assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
    assert.match(String(failed!.msg), /the responder's ID p384\.sluice\.test is not C=CH, O=gateways\.sluice\.test, CN=\*/);
    await gateway.waitForLog(/parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]/, { timeoutMs: 5000 });
  });

  // strongSwan refusing sluice: its certificate expired, from another CA, or an identity the gateway does not expect.
  const refusedBySwan: [EeName, string, RegExp][] = [
    ["expired", "%any", /certificate invalid|not valid|expired/i],
    ["other", "%any", /no trusted .*found|no issuer certificate found/i],
    ["p256", "p384.sluice.test", /no matching peer config found|looking for peer configs matching/],
  ];
  for (const [name, expect, swanReason] of refusedBySwan) {
    test(`strongSwan gateway refuses sluice (${name === "p256" ? "an identity it does not expect" : `${name} certificate`}): sluice logs AUTHENTICATION_FAILED`, async (t) => {
      const bed = cleanUpAfter(t, await TwoHosts.create());
      const gateway = await charon(t, pki, bed.b, bed.a, { ee: pki.ee.gw, remoteId: expect }, "responder");
      const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [sluicePeer(pki, pki.ee[name], bed.a, bed.b, "initiator", { remoteId: "gw.sluice.test" })]));
      const [failed] = await sluice.waitForEvents("ike-failed", 1, 15_000);
      assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
      assert.match(String(failed!.msg), /the responder refused our authentication/);
      assert.match(gateway.log(), swanReason);
      assert.match(gateway.log(), /generating IKE_AUTH response \d+ \[ N\(AUTH_FAILED\) \]/);
    });
  }

  test("strongSwan refuses sluice's revoked certificate (its CRL), and sluice logs the refusal", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const gateway = await charon(t, pki, bed.b, bed.a, { ee: pki.ee.gw, remoteId: "%any" }, "responder");
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [sluicePeer(pki, pki.ee.revoked, bed.a, bed.b, "initiator", { remoteId: "gw.sluice.test" })]));
    await gateway.waitForLog(/certificate was revoked/, { timeoutMs: 15_000 });
    const [failed] = await sluice.waitForEvents("ike-failed", 1, 5000);
    assert.equal(failed!.reason, "AUTHENTICATION_FAILED");
  });
});
