// Certificates in the endpoint (no root: the portable path over loopback):
// `[peer.ike]`'s authentication keys checked key by key, the files checked
// when the endpoint starts (a key others may read, a key of another
// certificate, a local_id the certificate does not hold), and two
// endpoints that authenticate with certificates (one with the PSK the other
// way) and carry packets; a reload with a CRL that revokes the initiator's
// certificate refuses its next handshake. The PKI is made by openssl for
// this run (test/fixtures/pki.ts).
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import { ikePeerConfig } from "../../src/endpoint/ikeShell.js";
import { LogSink, waitUntil } from "../fixtures/observe.js";
import { createPki, pkiSkip, type TestPki } from "../fixtures/pki.js";
import { freePorts, ipv4Udp as ipv4, loopbackIkeHeader } from "../fixtures/loopback.js";

const skip = pkiSkip();
const PSK = "sluice-cert-test-psk-0123456789";

function config(ike: string, dir = "/tmp"): string {
  return `
[local]
address = "127.0.0.1"
port = 4500
[state]
dir = "${dir}"
[control]
socket = false
[[peer]]
name = "b"
endpoint = "127.0.0.1"
selectors = ["10.77.2.0/24"]
local_selectors = ["10.77.1.0/24"]
[peer.ike]
${ike}
`;
}

describe("certificates in sluice.toml", { skip }, () => {
  let pki: TestPki;
  let dir: string;
  before(() => {
    pki = createPki();
    dir = mkdtempSync(join(tmpdir(), "sluice-certcfg-"));
    writeFileSync(join(dir, "psk"), PSK, { mode: 0o600 });
  });
  after(() => {
    pki?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test("each key checked, each problem named by its key", () => {
    const cases: [string, RegExp][] = [
      [`auth = "pubkey"\nremote_id = "b"\npsk_file = "x"`, /peer\[0\]\.ike\.cert_file: is required with auth = "pubkey"/],
      [`cert_file = "c.pem"\nremote_id = "b"\npsk_file = "x"`, /peer\[0\]\.ike\.key_file: is required with auth = "pubkey"/],
      [`remote_auth = "pubkey"\nlocal_id = "a"\npsk_file = "x"`, /peer\[0\]\.ike\.ca_files: is required with remote_auth = "pubkey"/],
      [`local_id = "a"\nremote_id = "b"\npsk_file = "x"\ncert_file = "c.pem"\nauth = "psk"`, /peer\[0\]\.ike\.cert_file: is only for auth = "pubkey"/],
      [`local_id = "a"\nremote_id = "b"\npsk_file = "x"\ncrl_file = "c.crl"`, /peer\[0\]\.ike\.crl_file: is only for remote_auth = "pubkey"/],
      [`auth = "rsa"\nlocal_id = "a"\nremote_id = "b"\npsk_file = "x"`, /peer\[0\]\.ike\.auth: must be one of "psk", "pubkey", got "rsa"/],
      [`cert_file = "c"\nkey_file = "k"\nca_files = ["ca"]\nsend_cert = "sometimes"`, /peer\[0\]\.ike\.send_cert: must be one of "ifasked", "always", "never"/],
      [`cert_file = "c"\nkey_file = "k"\nca_files = ["ca"]\nrsa_pss = "yes"`, /peer\[0\]\.ike\.rsa_pss/],
      [`cert_file = "c"\nkey_file = "k"\nremote_id = "b"`, /peer\[0\]\.ike\.psk_file: is required/],
      [`cert_file = "c"\nkey_file = "k"\nca_files = ["ca"]\nremote_id = "C=CH, XX=1"`, /peer\[0\]\.ike\.remote_id: "XX" .* is not a DN attribute/],
    ];
    for (const [ike, error] of cases) assert.throws(() => parseConfig(config(ike)), error, ike);
    // Certificates both ways need no PSK, no local_id (the certificate's subject) and no remote_id (%any, the CA decides).
    const parsed = parseConfig(config(`cert_file = "c"\nkey_file = "k"\nca_files = ["ca"]`));
    const entry = parsed.ikePeers[0]!;
    assert.deepEqual([entry.auth, entry.remoteAuth, entry.localId, entry.remoteId, entry.psk, entry.sendCert, entry.rsaPss], ["pubkey", "pubkey", undefined, "%any", undefined, "ifasked", false]);
  });

  test("files checked at start: key mode, key of another certificate, a local_id the certificate lacks, a CRL of another CA", () => {
    const entry = (ike: string) => parseConfig(config(ike, dir)).ikePeers[0]!;
    const gw = pki.ee.gw;
    const ok = ikePeerConfig(entry(`cert_file = "${gw.cert}"\nkey_file = "${gw.key}"\nca_files = ["${pki.root.cert}"]\ncrl_file = "${pki.crl}"`));
    assert.equal(ok.localAuth?.method, "pubkey");
    assert.equal(ok.remoteAuth?.method, "pubkey");
    chmodSync(gw.key, 0o640);
    try {
      assert.throws(() => ikePeerConfig(entry(`cert_file = "${gw.cert}"\nkey_file = "${gw.key}"\nca_files = ["${pki.root.cert}"]`)), /key file .* is mode 0640, readable by group: run chmod 600/);
    } finally {
      chmodSync(gw.key, 0o600);
    }
    assert.throws(() => ikePeerConfig(entry(`cert_file = "${gw.cert}"\nkey_file = "${pki.ee.p256.key}"\nca_files = ["${pki.root.cert}"]`)), /key_file .* is not the key of the certificate/);
    assert.throws(() => ikePeerConfig(entry(`cert_file = "${gw.cert}"\nkey_file = "${gw.key}"\nca_files = ["${pki.root.cert}"]\nlocal_id = "p256.sluice.test"`)), /local_id p256\.sluice\.test is not in the certificate/);
    assert.throws(() => ikePeerConfig(entry(`cert_file = "${gw.cert}"\nkey_file = "${gw.key}"\nca_files = ["${pki.other.cert}"]\ncrl_file = "${pki.crl}"`)), /crl_file .* is not signed by any configured CA/);
    assert.throws(() => ikePeerConfig(entry(`cert_file = "${join(dir, "missing.pem")}"\nkey_file = "${gw.key}"\nca_files = ["${pki.root.cert}"]`)), /cannot read cert_file .*missing\.pem: ENOENT/);
  });

  test("two endpoints: the initiator's certificate one way, the PSK the other; packets cross; a CRL reload refuses the next handshake", async () => {
    const [ikeA, natA, ikeB, natB] = await freePorts(4);
    const common = (ike: number, nat: number): string => loopbackIkeHeader(dir, ike, nat, 2);
    const p256 = pki.ee.p256;
    const configA = `${common(ikeA!, natA!)}
[[peer]]
name = "b"
endpoint = "127.0.0.1:${ikeB}"
selectors = ["10.77.2.0/24"]
local_selectors = ["10.77.1.0/24"]
[peer.ike]
cert_file = "${p256.chain}"
key_file = "${p256.key}"
local_id = "${p256.id}"
remote_id = "gw.sluice.test"
psk_file = "${join(dir, "psk")}"
nat_t_port = ${natB}
start = "start"
dpd = 0
`;
    const configB = (crl: boolean): string => `${common(ikeB!, natB!)}
[[peer]]
name = "a"
selectors = ["10.77.1.0/24"]
local_selectors = ["10.77.2.0/24"]
[peer.ike]
local_id = "gw.sluice.test"
psk_file = "${join(dir, "psk")}"
ca_files = ["${pki.root.cert}"]
${crl ? `crl_file = "${join(dir, "crl.pem")}"` : ""}
remote_id = "*.sluice.test"
start = "none"
dpd = 0
`;
    const logA = new LogSink();
    const logB = new LogSink();
    const received: Buffer[] = [];
    const b = await Endpoint.start(parseConfig(configB(false)), { path: "portable", reason: "test" }, pino({}, logB), { processMetrics: false, onInnerPacket: (p) => received.push(Buffer.from(p)) });
    const a = await Endpoint.start(parseConfig(configA), { path: "portable", reason: "test" }, pino({}, logA), { processMetrics: false });
    try {
      await waitUntil(() => logB.events("child-up").length > 0 && logA.events("child-up").length > 0, "child SA up on both", 10_000);
      for (let i = 0; i < 10; i++) assert.equal(a.sendInner(ipv4("10.77.1.1", "10.77.2.1", 64)), true);
      await waitUntil(() => received.length === 10, "10 packets reach b through the tunnel", 5000);
      const authLine = logB.events("ike-authenticated")[0]!;
      assert.match(String(authLine.msg), /authentication of 'p256\.sluice\.test' with ECDSA with SHA-256 successful \(certificate "C=CH, O=sluice test, CN=p256\.sluice\.test", 2 CA\(s\)/);
      // A CRL that revokes the initiator's certificate: the peer config changes, its SAs go, the next attempt is refused.
      const { execFileSync } = await import("node:child_process");
      execFileSync("openssl", ["ca", "-batch", "-config", join(pki.intermediate.dir, "ca.cnf"), "-revoke", p256.cert], { stdio: "ignore" });
      execFileSync("openssl", ["ca", "-batch", "-config", join(pki.intermediate.dir, "ca.cnf"), "-gencrl", "-out", join(dir, "crl.pem")], { stdio: "ignore" });
      const withIntermediate = configB(true).replace(`ca_files = ["${pki.root.cert}"]`, `ca_files = ["${pki.root.cert}", "${pki.intermediate.cert}"]`);
      await b.reload(parseConfig(withIntermediate));
      await waitUntil(() => logA.events("ike-down").length > 0, "the changed peer's SA deleted", 5000);
      const again = await a.initiate("b");
      assert.equal(again.ok, false, JSON.stringify(again));
      await waitUntil(() => logB.events("ike-failed").some((e) => /is revoked since/.test(String(e.msg))), "the revoked certificate refused", 5000);
      const refused = logB.events("ike-failed").find((e) => /is revoked since/.test(String(e.msg)))!;
      assert.equal(refused.reason, "AUTHENTICATION_FAILED");
      assert.match(String(refused.msg), /certificate "C=CH, O=sluice test, CN=p256\.sluice\.test" \(serial [0-9A-F]+\) is revoked since .* \(CRL of "C=CH, O=sluice test, CN=sluice test Intermediate CA"\)/);
      assert.ok(logA.events("ike-failed").some((e) => e.reason === "AUTHENTICATION_FAILED"), "the initiator was told");
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
