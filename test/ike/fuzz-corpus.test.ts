// sluice's IKE core against real strongSwan messages (test/fixtures/ike-corpus/,
// recorded with the interop bed): the corpus opens with its logged keys;
// sluice, holding that session's IKE SA (test/fixtures/corpusSa.ts), accepts
// strongSwan's real IKE_AUTH in both roles (its AUTH checked with the PSK)
// and refuses a tampered one; the captured requests replayed in order are
// answered; and the mutation fuzzer (test/fixtures/ikeFuzz.ts) runs a fixed
// number of cases: SLUICE_IKE_FUZZ_CASES raises it, `npm run fuzz:ike` runs
// as many as asked.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { decodeInner, decodeMessage, encodeChain } from "../../src/ike/codec/message.js";
import { findNotify, findPayload, type IkePayload } from "../../src/ike/codec/payloads.js";
import { ByteWriter } from "../../src/ike/codec/bytes.js";
import { Exchange, Notify, Payload } from "../../src/ike/constants.js";
import { spiFromBytes } from "../../src/ike/proposals.js";
import { CorpusInitiator, captured, corpusResponder, establishedResponder, messageBytes } from "../fixtures/corpusSa.js";
import { fromHex, loadCorpus } from "../fixtures/ikeCorpus.js";
import { CASE_KINDS, runFuzz } from "../fixtures/ikeFuzz.js";
import { SEED } from "../helpers.js";

const corpus = loadCorpus();

function innerPayloads(hex: string): IkePayload[] {
  const message = corpus.messages.find((m) => m.hex === hex)!;
  return decodeInner(message.inner!.type, fromHex(message.inner!.plain));
}

function childUps(actions: { type: string }[]): number {
  return actions.filter((a) => a.type === "child-up").length;
}

describe("the strongSwan corpus", () => {
  test("every exchange both ways, every SK payload opened with the logged keys, every inner chain parsed by sluice", () => {
    const seen = new Set(corpus.messages.map((m) => `${m.exchange} ${m.response ? "response" : "request"} from ${m.from}`));
    const expected = [
      "IKE_SA_INIT request from initiator", "IKE_SA_INIT response from responder", "IKE_AUTH request from initiator", "IKE_AUTH response from responder",
      ...["CREATE_CHILD_SA", "INFORMATIONAL"].flatMap((x) => ["initiator", "responder"].flatMap((f) => [`${x} request from ${f}`, `${x} response from ${f}`])),
    ];
    for (const what of expected) assert.ok(seen.has(what), what);
    assert.equal(corpus.ikeSas.length, 2, "the IKE_SA_INIT's keys and the rekeyed IKE SA's");
    for (const m of corpus.messages) {
      const message = decodeMessage(fromHex(m.hex));
      if (m.exchange === "IKE_SA_INIT") continue;
      assert.ok(message.sk && m.inner && m.ikeSa !== null, `frame ${m.frame} opened`);
      assert.doesNotThrow(() => decodeInner(m.inner!.type, fromHex(m.inner!.plain)), `frame ${m.frame} (${m.exchange}) parses`);
    }
  });

  test("sluice as the responder authenticates strongSwan's real IKE_AUTH request (its AUTH, with the PSK) and takes its child SA", () => {
    const { known, actions } = establishedResponder(corpus);
    const [sa] = known.core.list();
    assert.equal(sa!.state, "established");
    assert.equal(sa!.remoteId, "a.sluice.test");
    assert.equal(childUps(actions), 1);
    const request = captured(corpus, "IKE_AUTH", "initiator", false);
    const offeredSpi = spiFromBytes(findPayload(innerPayloads(request.hex), Payload.SA)!.proposals[0]!.spi);
    assert.equal(sa!.children[0]!.spiOut, offeredSpi.toString(16).padStart(8, "0"), "the child's outbound SPI is the one strongSwan's initiator offered");
    assert.deepEqual([sa!.children[0]!.localTs, sa!.children[0]!.remoteTs], [["10.77.2.0/24"], ["10.77.1.0/24"]]);
  });

  test("sluice as the initiator accepts strongSwan's real IKE_AUTH response (its AUTH, with the PSK) and installs the child SA", () => {
    const initiator = new CorpusInitiator(corpus);
    assert.equal(initiator.core.list()[0]!.state, "authenticating");
    const actions = initiator.authenticate();
    const [sa] = initiator.core.list();
    assert.equal(sa!.state, "established");
    assert.equal(sa!.remoteId, "b.sluice.test");
    assert.equal(childUps(actions), 1);
    const response = captured(corpus, "IKE_AUTH", "responder", true);
    const chosenSpi = spiFromBytes(findPayload(innerPayloads(response.hex), Payload.SA)!.proposals[0]!.spi);
    assert.equal(sa!.children[0]!.spiOut, chosenSpi.toString(16).padStart(8, "0"));
  });

  test("the same IKE_AUTH with one bit of its AUTH changed (and sealed with the real keys) is refused: the check is real", () => {
    const known = corpusResponder(corpus);
    const payloads = innerPayloads(captured(corpus, "IKE_AUTH", "initiator", false).hex).map((p) => {
      if (p.type !== Payload.AUTH || "unknown" in p) return p;
      const data = (p as { data: Uint8Array }).data.slice();
      data[0]! ^= 1;
      return { ...p, data, body: undefined } as IkePayload;
    });
    const w = new ByteWriter();
    const type = encodeChain(w, payloads);
    const plain = new Uint8Array([...w.finish(), 0]);
    const { responses } = known.deliver([known.sealRaw(Exchange.IKE_AUTH, type, plain, 1)]);
    assert.ok(findNotify(responses[0]!.payloads!, Notify.AUTHENTICATION_FAILED));
    assert.equal(known.core.list().length, 0);
    assert.equal(known.core.counters.handshakesFailed.AUTHENTICATION_FAILED, 1);
  });

  test("strongSwan's later requests replayed in order into sluice's responder: each answered; its IKE rekey makes the new SA, its Delete ends the old", () => {
    const { known } = establishedResponder(corpus);
    const later = corpus.messages.filter((m) => m.from === "initiator" && !m.response && m.ikeSa === 0 && m.messageId >= 2);
    assert.ok(later.length >= 3, `${later.length} requests`);
    for (const m of later) {
      const { responses } = known.deliver([messageBytes(m)]);
      assert.deepEqual(responses.map((r) => r.messageId), [m.messageId], `${m.exchange} ${m.messageId} answered`);
    }
    // The IKE rekey (CREATE_CHILD_SA with an IKE proposal) made a new IKE SA with strongSwan's new SPIi and moved the child
    // over; the last request deleted the old one.
    const left = known.core.list();
    assert.equal(left.length, 1, JSON.stringify(left));
    assert.equal(left[0]!.state, "established");
    assert.equal(left[0]!.spiI, corpus.ikeSas[1]!.spiI, "the rekeyed IKE SA has the SPI strongSwan's initiator chose for it");
    assert.equal(left[0]!.children.length, 1);
    assert.equal(known.core.counters.drops["internal-error"] ?? 0, 0);
  });
});

describe("fuzzing over the corpus", () => {
  test(`mutated strongSwan messages, outer and inner (seed ${SEED}): nothing escapes, no unauthenticated message changes an SA, tables stay bounded`, () => {
    const cases = Number(process.env.SLUICE_IKE_FUZZ_CASES ?? 2000);
    const report = runFuzz({ cases, seed: SEED });
    assert.deepEqual(report.findings, [], `seed ${SEED}: ${JSON.stringify(report.findings.slice(0, 3))}`);
    for (const kind of CASE_KINDS) assert.ok(report.byKind[kind] > 0, `${kind} ran`);
    // The inner mutations reach past the ICV into the parser and the exchanges.
    assert.ok((report.outcomes["auth: established"] ?? 0) + (report.outcomes["request: answered"] ?? 0) > 0, JSON.stringify(report.outcomes));
    assert.ok(report.peak.sas <= 8 && report.peak.halfOpenIndex <= 16, JSON.stringify(report.peak));
    console.log(`# ${report.cases} cases in ${report.seconds.toFixed(1)} s: ${JSON.stringify(report.byKind)}; outcomes ${JSON.stringify(report.outcomes)}`);
  });
});
