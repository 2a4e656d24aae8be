// Refusals between sluice's IKEv2 and the real strongSwan 5.9
// (test/fixtures/interop/), both roles. Each case must put the notify
// strongSwan expects on the wire (as its log names it: generated when it
// refuses, parsed when sluice does) and leave a line naming the reason on
// both sides (strongSwan's own wording; sluice's "ike-failed",
// "ike-refused" or "child-failed" event with a `reason` field):
//
//   wrong PSK            AUTHENTICATION_FAILED in IKE_AUTH; no SA left
//   unknown ID           AUTHENTICATION_FAILED in IKE_AUTH; no SA left
//   no common IKE prop.  NO_PROPOSAL_CHOSEN in IKE_SA_INIT; no SA left
//   no common ESP prop.  NO_PROPOSAL_CHOSEN for the child; the IKE SA stands (§1.2)
//   TS unacceptable      TS_UNACCEPTABLE for the child; the IKE SA stands
//   INVALID_KE           the initiator's first group (x25519) is not the
//                        responder's (ecp256 only): INVALID_KE_PAYLOAD naming
//                        ecp256, a second IKE_SA_INIT with it, and the tunnel
//                        comes up (a ping crosses)
//
// sluice as initiator: one daemon with a peer per case against one strongSwan
// responder; sluice as responder: one daemon, strongSwan's initiator loaded
// with each case's config in turn.
// Needs root, strongSwan, nftables, conntrack, ping: .ci/run installs them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Charon } from "../fixtures/interop/charon.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { bedConfigs, type SiteToSite } from "../fixtures/interop/swanctl.js";
import { TwoHosts } from "../fixtures/interop/topology.js";
import { SluiceDaemon, initiatorPeer, responderPeer, type SluiceIkePeer } from "../fixtures/interop/sluice.js";
import { cleanUpAfter, noSas, until } from "../fixtures/interop/steps.js";

const skip = bedSkip();

/** Every case's IKE proposal but INVALID_KE's (and the responders' only one): ecp256 alone. */
const ECP256 = "chacha20poly1305-prfsha256-ecp256";
/** INVALID_KE: x25519 first, so the first KE payload is x25519's. */
const X25519_FIRST = "chacha20poly1305-prfsha256-x25519-ecp256";
const WRONG_PSK = "not-the-bed-psk-0123456789";
const UNKNOWN_ID = "x.sluice.test";
const NO_COMMON_IKE = "aes256gcm16-prfsha512-modp3072";
/** An ESP proposal strongSwan takes and sluice's data plane cannot carry (AES-CBC, HMAC-SHA-256: not an AEAD). */
const NO_COMMON_ESP = "aes256-sha256";
/** A selector outside what the other side allows for the bed's site (10.77.1.0/24). */
const FOREIGN_SITE = "10.99.1.0/24";

describe("IKEv2 with strongSwan: refusals", { skip }, () => {
  test("sluice initiator, strongSwan responder: each refusal's notify and reason on both sides; INVALID_KE retried", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    // The bed's responder with ecp256 only; the ESP case, last, reloads it with an ESP proposal sluice lacks.
    const responder = cleanUpAfter(t, await Charon.start(bed.b.ns, { swanctl: bedConfigs(bed.a, bed.b, { responderOverrides: { proposals: ECP256 } }).responder }));
    const peer = (name: string, overrides: Partial<SluiceIkePeer>): SluiceIkePeer => initiatorPeer(bed.b, bed.a, { name, proposals: [ECP256], start: "none", ...overrides });
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.a, [
      peer("psk", { psk: WRONG_PSK }),
      peer("id", { localId: UNKNOWN_ID }),
      peer("ike", { proposals: [NO_COMMON_IKE] }),
      peer("esp", {}),
      peer("ts", { localSelectors: [FOREIGN_SITE] }),
      peer("ke", { proposals: [X25519_FIRST] }),
    ]));

    /** Initiates `name`; returns sluice's answer and the mark in strongSwan's log before it. */
    const attempt = async (name: string): Promise<{ ok: boolean; from: number }> => {
      const from = responder.logLines();
      const answer = await sluice.initiate(name);
      return { ok: answer.ok, from };
    };
    const failure = (event: string, name: string): Promise<Record<string, unknown>> =>
      until(() => sluice.events(event).find((e) => e.peer === name), `sluice's ${event} for ${name}`, 5000);

    // Wrong PSK: strongSwan cannot verify sluice's AUTH.
    let run = await attempt("psk");
    assert.equal(run.ok, false);
    assert.equal((await failure("ike-failed", "psk")).reason, "AUTHENTICATION_FAILED");
    await responder.waitForLog(/tried 1 shared key for 'b\.sluice\.test' - 'a\.sluice\.test', but MAC mismatched/, { fromLine: run.from });
    await responder.waitForLog(/generating IKE_AUTH response 1 \[ N\(AUTH_FAILED\) \]/, { fromLine: run.from });
    await noSas(responder);

    // Unknown ID.
    run = await attempt("id");
    assert.equal(run.ok, false);
    assert.equal((await failure("ike-failed", "id")).reason, "AUTHENTICATION_FAILED");
    await responder.waitForLog(/no matching peer config found/, { fromLine: run.from });
    await responder.waitForLog(/generating IKE_AUTH response 1 \[ N\(AUTH_FAILED\) \]/, { fromLine: run.from });
    await noSas(responder);

    // No common IKE proposal.
    run = await attempt("ike");
    assert.equal(run.ok, false);
    assert.equal((await failure("ike-failed", "ike")).reason, "NO_PROPOSAL_CHOSEN");
    await responder.waitForLog(/no acceptable ENCRYPTION_ALGORITHM found/, { fromLine: run.from });
    await responder.waitForLog(/received proposals unacceptable/, { fromLine: run.from });
    await responder.waitForLog(/generating IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]/, { fromLine: run.from });
    await noSas(responder);

    // TS unacceptable: the IKE SA stands on both sides, without a child.
    run = await attempt("ts");
    assert.equal(run.ok, false);
    assert.equal((await failure("child-failed", "ts")).reason, "TS_UNACCEPTABLE");
    await responder.waitForLog(new RegExp(`traffic selectors ${bed.b.site} === ${FOREIGN_SITE} unacceptable`.replaceAll(".", "\\.")), { fromLine: run.from });
    await responder.waitForLog(/generating IKE_AUTH response 1 \[ IDr AUTH N\(TS_UNACCEPT\) \]/, { fromLine: run.from });
    const ts = (await sluice.status()).ike.find((sa) => sa.peer === "ts");
    assert.deepEqual([ts?.state, ts?.children.length], ["established", 0]);
    const [theirs] = await responder.listSas();
    assert.deepEqual([theirs?.state, theirs?.children.length], ["ESTABLISHED", 0]);
    await sluice.terminate("ts");
    await noSas(responder);

    // INVALID_KE: strongSwan asks for ecp256, sluice retries with it, the tunnel comes up.
    run = await attempt("ke");
    assert.equal(run.ok, true);
    await sluice.routed(bed.b.site);
    const retry = await failure("ike-invalid-ke", "ke");
    assert.equal(retry.group, "ecp256");
    await responder.waitForLog(/DH group CURVE_25519 unacceptable, requesting ECP_256/, { fromLine: run.from });
    await responder.waitForLog(/generating IKE_SA_INIT response 0 \[ N\(INVAL_KE\) \]/, { fromLine: run.from });
    const [ke] = await responder.listSas();
    assert.deepEqual([ke?.state, ke?.dhGroup, ke?.children.length], ["ESTABLISHED", "ECP_256", 1]);
    assert.equal((await sluice.status()).ike.find((sa) => sa.peer === "ke")?.ike, "chacha20poly1305/prfsha256/ecp256");
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 2, interval: 0.1 });
    assert.equal(ping.received, 2, ping.output);
    await sluice.terminate("ke");
    await noSas(responder);

    // No common ESP proposal: strongSwan wants AES-CBC with HMAC-SHA-256 for ESP, which sluice's data plane lacks (it has AEADs only).
    await responder.load(bedConfigs(bed.a, bed.b, { responderOverrides: { proposals: ECP256, espProposals: NO_COMMON_ESP } }).responder);
    run = await attempt("esp");
    assert.equal(run.ok, false);
    assert.equal((await failure("child-failed", "esp")).reason, "NO_PROPOSAL_CHOSEN");
    await responder.waitForLog(/no acceptable proposal found/, { fromLine: run.from });
    await responder.waitForLog(/generating IKE_AUTH response 1 \[ IDr AUTH N\(NO_PROP\) \]/, { fromLine: run.from });
    const [esp] = await responder.listSas();
    assert.deepEqual([esp?.state, esp?.children.length], ["ESTABLISHED", 0]);
  });

  test("strongSwan initiator, sluice responder: each refusal's notify and reason on both sides; INVALID_KE retried", async (t) => {
    const bed = cleanUpAfter(t, await TwoHosts.create());
    const sluice = cleanUpAfter(t, await SluiceDaemon.start(bed.b, [responderPeer(bed.a, bed.b, { proposals: [ECP256] })]));
    const initiator = cleanUpAfter(t, await Charon.start(bed.a.ns));

    /** Loads the initiator with the case's config and initiates; returns what swanctl said and the marks before it. */
    const attempt = async (overrides: Partial<SiteToSite>): Promise<{ ok: boolean; output: string; from: number; events: number }> => {
      await initiator.load(bedConfigs(bed.a, bed.b, { initiatorOverrides: { proposals: ECP256, ...overrides } }).initiator);
      const from = initiator.logLines();
      const events = sluice.jsonLines().length;
      const result = await initiator.initiate("net").then((output) => ({ ok: true, output }), (error: Error) => ({ ok: false, output: error.message }));
      return { ...result, from, events };
    };
    /** sluice's first `event` logged since the attempt began. */
    const since = (events: number, event: string): Promise<Record<string, unknown>> =>
      until(() => sluice.jsonLines().slice(events).find((e) => e.event === event), `sluice's ${event}`, 5000);
    const forgotten = (): Promise<true> => until(async () => ((await sluice.status()).ike.length === 0 ? true : undefined), "sluice to have no IKE SA", 5000);

    // Wrong PSK: sluice cannot verify strongSwan's AUTH.
    // Wrong PSK (sluice cannot verify strongSwan's AUTH), then an unknown ID: AUTHENTICATION_FAILED, nothing left.
    const authCases: [Partial<SiteToSite>, RegExp][] = [
      [{ psk: WRONG_PSK }, /the AUTH of a\.sluice\.test does not verify/],
      [{ localId: UNKNOWN_ID }, /no peer config matches x\.sluice\.test/],
    ];
    for (const [overrides, detail] of authCases) {
      const run = await attempt(overrides);
      assert.equal(run.ok, false);
      const event = await since(run.events, "ike-failed");
      assert.equal(event.reason, "AUTHENTICATION_FAILED");
      assert.match(String(event.msg), detail);
      await initiator.waitForLog(/parsed IKE_AUTH response 1 \[ N\(AUTH_FAILED\) \]/, { fromLine: run.from });
      await initiator.waitForLog(/received AUTHENTICATION_FAILED notify error/, { fromLine: run.from });
      await forgotten();
      await noSas(initiator);
    }

    // No common IKE proposal: refused statelessly.
    let run = await attempt({ proposals: NO_COMMON_IKE });
    assert.equal(run.ok, false);
    let event = await since(run.events, "ike-refused");
    assert.equal(event.reason, "NO_PROPOSAL_CHOSEN");
    assert.match(String(event.msg), /no acceptable proposal among IKE:AES_GCM_16_256\/PRF_HMAC_SHA2_512\/MODP_3072/);
    await initiator.waitForLog(/parsed IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]/, { fromLine: run.from });
    await initiator.waitForLog(/received NO_PROPOSAL_CHOSEN notify error/, { fromLine: run.from });
    assert.equal((await sluice.status()).ike.length, 0);
    await noSas(initiator);

    // No common ESP proposal: the IKE SA stands, without a child.
    run = await attempt({ espProposals: NO_COMMON_ESP });
    assert.equal(run.ok, false);
    event = await since(run.events, "child-failed");
    assert.equal(event.reason, "NO_PROPOSAL_CHOSEN");
    await initiator.waitForLog(/parsed IKE_AUTH response 1 \[ IDr AUTH N\(NO_PROP\) \]/, { fromLine: run.from });
    await initiator.waitForLog(/received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built/, { fromLine: run.from });
    let [theirs] = await initiator.listSas();
    assert.deepEqual([theirs?.state, theirs?.children.length], ["ESTABLISHED", 0]);
    let [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours?.state, ours?.children.length], ["established", 0]);
    await initiator.terminate({ ike: "site" });
    await forgotten();

    // TS unacceptable: the IKE SA stands, without a child.
    run = await attempt({ localTs: FOREIGN_SITE });
    assert.equal(run.ok, false);
    event = await since(run.events, "child-failed");
    assert.equal(event.reason, "TS_UNACCEPTABLE");
    assert.match(String(event.msg), new RegExp(`${bed.b.site} === ${FOREIGN_SITE} unacceptable`.replaceAll(".", "\\.")));
    await initiator.waitForLog(/parsed IKE_AUTH response 1 \[ IDr AUTH N\(TS_UNACCEPT\) \]/, { fromLine: run.from });
    await initiator.waitForLog(/received TS_UNACCEPTABLE notify, no CHILD_SA built/, { fromLine: run.from });
    [theirs] = await initiator.listSas();
    assert.deepEqual([theirs?.state, theirs?.children.length], ["ESTABLISHED", 0]);
    [ours] = (await sluice.status()).ike;
    assert.deepEqual([ours?.state, ours?.children.length], ["established", 0]);
    await initiator.terminate({ ike: "site" });
    await forgotten();

    // INVALID_KE: sluice asks for ecp256 (statelessly), strongSwan retries with it, the tunnel comes up.
    run = await attempt({ proposals: X25519_FIRST });
    assert.equal(run.ok, true, run.output);
    await sluice.routed(bed.a.site);
    event = await since(run.events, "ike-refused");
    assert.equal(event.reason, "INVALID_KE_PAYLOAD");
    assert.match(String(event.msg), /KE of group curve25519; asked for ecp256/);
    await initiator.waitForLog(/parsed IKE_SA_INIT response 0 \[ N\(INVAL_KE\) \]/, { fromLine: run.from });
    await initiator.waitForLog(/peer didn't accept DH group CURVE_25519, it requested ECP_256/, { fromLine: run.from });
    [theirs] = await initiator.listSas();
    assert.deepEqual([theirs?.state, theirs?.dhGroup, theirs?.children.length], ["ESTABLISHED", "ECP_256", 1]);
    [ours] = (await sluice.status()).ike;
    assert.equal(ours?.ike, "chacha20poly1305/prfsha256/ecp256");
    const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 2, interval: 0.1 });
    assert.equal(ping.received, 2, ping.output);
  });
});
