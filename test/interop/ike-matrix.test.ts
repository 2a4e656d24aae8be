// Every IKE cipher, PRF and key-exchange group sluice speaks, negotiated with
// the real strongSwan 5.9 (charon-systemd + kernel-libipsec) in network
// namespaces (test/fixtures/interop/), in both roles:
//
// - sluice initiates five single-algorithm proposals to a strongSwan that
//   accepts them all; strongSwan initiates five others to a sluice that
//   accepts them all. Together each of chacha20poly1305, aes128gcm16,
//   aes256gcm16, prfsha256/384/512 and x25519, ecp256, ecp384, modp2048,
//   modp3072 is negotiated at least once per role. Each time strongSwan's
//   `--list-sas` and `sluice status` must both name what was asked for, and
//   a ping crosses the child SA (so the keys derived from that PRF and group
//   agree on both sides).
// - ESP ciphers (RFC 7634, RFC 4106): aes128gcm16 and aes256gcm16 ESP
//   negotiated in each role (sluice's esp_proposals naming one, strongSwan's
//   naming one), both sides reporting AES_GCM_16 with that key size, and pings
//   both ways through the child (sluice's AES pass seals and opens what
//   strongSwan's libipsec opens and seals).
// - Otherwise ESP is ChaCha20-Poly1305 without ESN: libipsec has no ESN, and strongSwan
//   does not know it when it chooses. As responder, configured with
//   chacha20poly1305-esn, it selects ESP:CHACHA20_POLY1305/EXT_SEQ, fails to
//   install it ("IPsec SA: ESN not supported") and answers IKE_AUTH with
//   N(NO_PROPOSAL_CHOSEN), keeping the IKE SA (RFC 7296 §1.2); as initiator it
//   accepts sluice's ESN choice, fails the same way and sends a DELETE for
//   the child. Either way the child is refused cleanly and the IKE SA stands.
// Needs root, strongSwan, nftables, conntrack, ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs } from "../fixtures/interop/swanctl.js";
import { TwoHosts, type Host } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, noSas, onlySa, until } from "../fixtures/interop/steps.js";

const skip = bedSkip();

/** One negotiation: the proposal offered, and what each side must report. */
interface Case {
  proposal: string;
  /** strongSwan's names: encr-alg, encr-keysize ("" for ChaCha20), prf-alg, dh-group. */
  strongswan: [string, string, string, string];
  /** sluice status's `ike`. */
  sluice: string;
}

const gcm = (bits: number): [string, string] => ["AES_GCM_16", String(bits)];
const CHACHA: [string, string] = ["CHACHA20_POLY1305", ""];

/** sluice initiates these. */
const SLUICE_OFFERS: Case[] = [
  { proposal: "chacha20poly1305-prfsha256-x25519", strongswan: [...CHACHA, "PRF_HMAC_SHA2_256", "CURVE_25519"], sluice: "chacha20poly1305/prfsha256/curve25519" },
  { proposal: "aes128gcm16-prfsha384-ecp256", strongswan: [...gcm(128), "PRF_HMAC_SHA2_384", "ECP_256"], sluice: "aes128gcm16/prfsha384/ecp256" },
  { proposal: "aes256gcm16-prfsha512-ecp384", strongswan: [...gcm(256), "PRF_HMAC_SHA2_512", "ECP_384"], sluice: "aes256gcm16/prfsha512/ecp384" },
  { proposal: "aes128gcm16-prfsha256-modp2048", strongswan: [...gcm(128), "PRF_HMAC_SHA2_256", "MODP_2048"], sluice: "aes128gcm16/prfsha256/modp2048" },
  { proposal: "aes256gcm16-prfsha384-modp3072", strongswan: [...gcm(256), "PRF_HMAC_SHA2_384", "MODP_3072"], sluice: "aes256gcm16/prfsha384/modp3072" },
];

/** strongSwan initiates these: the same algorithms, paired differently. */
const STRONGSWAN_OFFERS: Case[] = [
  { proposal: "aes256gcm16-prfsha256-x25519", strongswan: [...gcm(256), "PRF_HMAC_SHA2_256", "CURVE_25519"], sluice: "aes256gcm16/prfsha256/curve25519" },
  { proposal: "chacha20poly1305-prfsha512-ecp256", strongswan: [...CHACHA, "PRF_HMAC_SHA2_512", "ECP_256"], sluice: "chacha20poly1305/prfsha512/ecp256" },
  { proposal: "aes128gcm16-prfsha384-ecp384", strongswan: [...gcm(128), "PRF_HMAC_SHA2_384", "ECP_384"], sluice: "aes128gcm16/prfsha384/ecp384" },
  { proposal: "chacha20poly1305-prfsha384-modp2048", strongswan: [...CHACHA, "PRF_HMAC_SHA2_384", "MODP_2048"], sluice: "chacha20poly1305/prfsha384/modp2048" },
  { proposal: "aes128gcm16-prfsha512-modp3072", strongswan: [...gcm(128), "PRF_HMAC_SHA2_512", "MODP_3072"], sluice: "aes128gcm16/prfsha512/modp3072" },
];

/** Everything sluice speaks, as one strongSwan proposal (strongSwan's responder then takes whatever single algorithm set is offered). */
const EVERYTHING = "aes256gcm16-aes128gcm16-chacha20poly1305-prfsha512-prfsha384-prfsha256-ecp384-ecp256-x25519-modp3072-modp2048";

describe("IKEv2 with strongSwan: the algorithm matrix", { skip }, () => {
  test("the matrix names every cipher, PRF and group in each role", () => {
    // Each role and every algorithm of each type is covered.
    for (const cases of [SLUICE_OFFERS, STRONGSWAN_OFFERS]) {
      const words = new Set(cases.flatMap((c) => c.proposal.split("-")));
      for (const word of ["chacha20poly1305", "aes128gcm16", "aes256gcm16", "prfsha256", "prfsha384", "prfsha512", "x25519", "ecp256", "ecp384", "modp2048", "modp3072"]) {
        assert.ok(words.has(word), `${word} is in the matrix`);
      }
    }
  });

  test("sluice initiates each proposal; strongSwan's list-sas and sluice status agree, and a ping crosses", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { proposals: EVERYTHING } }).responder }));
    const peers = SLUICE_OFFERS.map((c, i) => initiatorPeer(bed.b, bed.a, { name: `m${i}`, proposals: [c.proposal], start: "none" }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, peers));
    for (const [i, c] of SLUICE_OFFERS.entries()) {
      const started = Date.now();
      const answer = await sluice.initiate(`m${i}`);
      assert.equal(answer.ok, true, `${c.proposal}: ${JSON.stringify(answer)}\n${responder.logTail()}`);
      const theirs = await onlySa(responder);
      assert.deepEqual([theirs.encrAlg, String(theirs.raw["encr-keysize"] ?? ""), theirs.prfAlg, theirs.dhGroup], c.strongswan, c.proposal);
      assert.equal(theirs.children[0]!.encrAlg, "CHACHA20_POLY1305");
      const [ours] = (await sluice.status()).ike;
      assert.equal(ours!.ike, c.sluice);
      assert.equal(ours!.children[0]!.esp, "chacha20poly1305/noesn");
      await sluice.routed(bed.b.site);
      await pingThrough(bed, bed.a, bed.b, c.proposal);
      t.diagnostic(`sluice → strongSwan ${c.proposal}: ${Date.now() - started} ms to a ping through`);
      assert.equal((await sluice.terminate(`m${i}`)).ok, true);
      await noSas(responder);
    }
  });

  test("strongSwan initiates each proposal to sluice; both sides agree, and a ping crosses", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // sluice's default proposals: every cipher, PRF and group it has.
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns));
    for (const c of STRONGSWAN_OFFERS) {
      const started = Date.now();
      await initiator.load(bedConfigs(bed.a, bed.b, { initiatorOverrides: { proposals: c.proposal } }).initiator);
      const output = await initiator.initiate("net");
      assert.match(output, /CHILD_SA net\{\d+\} established/);
      const theirs = await onlySa(initiator);
      assert.deepEqual([theirs.encrAlg, String(theirs.raw["encr-keysize"] ?? ""), theirs.prfAlg, theirs.dhGroup], c.strongswan, c.proposal);
      const ours = await until(async () => (await sluice.status()).ike.find((sa) => sa.state === "established" && sa.children.length === 1), "sluice's IKE SA");
      assert.equal(ours.ike, c.sluice);
      assert.equal(ours.children[0]!.esp, "chacha20poly1305/noesn");
      await sluice.routed(bed.a.site);
      await pingThrough(bed, bed.a, bed.b, c.proposal);
      t.diagnostic(`strongSwan → sluice ${c.proposal}: ${Date.now() - started} ms to a ping through`);
      await initiator.terminate({ ike: "site" });
      await until(async () => ((await sluice.status()).ike.length === 0 ? true : undefined), "sluice to forget the IKE SA");
    }
  });

  const ESP_AES: { proposal: string; bits: string }[] = [{ proposal: "aes128gcm16", bits: "128" }, { proposal: "aes256gcm16", bits: "256" }];

  test("AES-GCM ESP from sluice: aes128gcm16 and aes256gcm16 children, as strongSwan and sluice both report, pings both ways", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: "aes256gcm16-aes128gcm16-chacha20poly1305" } }).responder }));
    const peers = ESP_AES.map((c, i) => initiatorPeer(bed.b, bed.a, { name: `e${i}`, espProposals: [c.proposal], start: "none" }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, peers));
    for (const [i, c] of ESP_AES.entries()) {
      const answer = await sluice.initiate(`e${i}`);
      assert.equal(answer.ok, true, `${c.proposal}: ${JSON.stringify(answer)}\n${responder.logTail()}`);
      const theirs = await onlySa(responder);
      assert.deepEqual([theirs.children[0]!.encrAlg, String(theirs.children[0]!.raw["encr-keysize"] ?? "")], ["AES_GCM_16", c.bits], c.proposal);
      const [ours] = (await sluice.status()).ike;
      assert.equal(ours!.children[0]!.esp, `${c.proposal}/noesn`);
      await sluice.routed(bed.b.site);
      await pingThrough(bed, bed.a, bed.b, c.proposal);
      await pingThrough(bed, bed.b, bed.a, c.proposal);
      assert.equal((await sluice.terminate(`e${i}`)).ok, true);
      await noSas(responder);
    }
  });

  test("AES-GCM ESP from strongSwan: sluice's default esp_proposals accept aes128gcm16 and aes256gcm16, pings both ways", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns));
    for (const c of ESP_AES) {
      await initiator.load(bedConfigs(bed.a, bed.b, { initiatorOverrides: { espProposals: c.proposal } }).initiator);
      const output = await initiator.initiate("net");
      assert.match(output, /CHILD_SA net\{\d+\} established/);
      const theirs = await onlySa(initiator);
      assert.deepEqual([theirs.children[0]!.encrAlg, String(theirs.children[0]!.raw["encr-keysize"] ?? "")], ["AES_GCM_16", c.bits], c.proposal);
      const ours = await until(async () => (await sluice.status()).ike.find((sa) => sa.state === "established" && sa.children.length === 1), "sluice's IKE SA");
      assert.equal(ours.children[0]!.esp, `${c.proposal}/noesn`);
      await sluice.routed(bed.a.site);
      await pingThrough(bed, bed.a, bed.b, c.proposal);
      await pingThrough(bed, bed.b, bed.a, c.proposal);
      await initiator.terminate({ ike: "site" });
      await until(async () => ((await sluice.status()).ike.length === 0 ? true : undefined), "sluice to forget the IKE SA");
    }
  });

  test("chacha20poly1305-esn from sluice: strongSwan selects it, libipsec cannot install it, and the child is refused with NO_PROPOSAL_CHOSEN", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // Even configured with -esn (so that a proposal matches), strongSwan cannot carry it.
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { espProposals: "chacha20poly1305-esn" } }).responder }));
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [initiatorPeer(bed.b, bed.a, { espProposals: ["chacha20poly1305-esn"], start: "none" })]));
    const answer = await sluice.initiate("b");
    assert.equal(answer.ok, false, JSON.stringify(answer));
    const failed = await sluice.waitForEvent("child-failed");
    assert.equal(failed.reason, "NO_PROPOSAL_CHOSEN");
    await responder.waitForLog(/selected proposal: ESP:CHACHA20_POLY1305\/EXT_SEQ/);
    await responder.waitForLog(/IPsec SA: ESN not supported/);
    await responder.waitForLog(/failed to establish CHILD_SA, keeping IKE_SA/);
    await responder.waitForLog(/generating IKE_AUTH response 1 \[ IDr AUTH N\(NO_PROP\) \]/);
    // Both keep the IKE SA (§1.2), with no child.
    const [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours!.state, ours!.children.length], ["established", 0]);
    const [theirs] = await responder.listSas();
    assert.deepEqual([theirs!.state, theirs!.children.length], ["ESTABLISHED", 0]);
  });

  test("chacha20poly1305-esn from strongSwan: sluice selects it, strongSwan cannot install it and deletes the child", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // sluice's default ESP proposal, chacha20poly1305-esn-noesn, prefers ESN.
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b)]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns, { swanctl: bedConfigs(bed.a, bed.b, { initiatorOverrides: { espProposals: "chacha20poly1305-esn" } }).initiator }));
    await assert.rejects(initiator.initiate("net"), /establishing CHILD_SA 'net' failed/);
    await initiator.waitForLog(/IPsec SA: ESN not supported/);
    await initiator.waitForLog(/sending DELETE for ESP CHILD_SA with SPI/);
    const up = await sluice.waitForEvent("child-up");
    assert.equal(up.esp, "chacha20poly1305/esn");
    const down = await sluice.waitForEvent("child-down");
    assert.equal(down.reason, "deleted by the peer");
    const [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours!.state, ours!.children.length], ["established", 0]);
  });
});

async function pingThrough(bed: TwoHosts, from: Host, to: Host, what: string): Promise<void> {
  const ping = await bed.ping(from.ns, to.inner, { from: from.inner, count: 2, interval: 0.1 });
  assert.equal(ping.received, 2, `${what}: ${ping.output}`);
}
