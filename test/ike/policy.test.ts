// The policy pieces of the IKE core: strongSwan's proposal keywords and the
// responder's choice; traffic selector narrowing and the prefixes the data
// plane gets; identities and patterns.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseIkeProposal, parseEspProposal, ikeProposalsToWire, espProposalsToWire, chooseIke, chooseEsp, acceptedIke, describeOffered } from "../../src/ike/proposals.js";
import { narrow, selectorFromPrefix, selectorPrefixes, formatSelector, intersect, within, anySelector, type Selector } from "../../src/ike/trafficSelectors.js";
import { parseIdentity, parseIdentityPattern, identityMatches, formatIdentity } from "../../src/ike/identity.js";
import { IdType, Protocol, TransformType } from "../../src/ike/constants.js";
import { CHACHA } from "../fixtures/ikeBed.js";
import { Rng } from "../helpers.js";

describe("proposals", () => {
  test("strongSwan keywords", () => {
    const p = parseIkeProposal("aes256gcm16-aes128gcm16-prfsha384-ecp384-x25519");
    assert.deepEqual(p.ciphers, [{ id: 20, keyBits: 256 }, { id: 20, keyBits: 128 }]);
    assert.deepEqual(p.prfs, [6]);
    assert.deepEqual(p.groups, [20, 31]);
    assert.deepEqual(parseIkeProposal("chacha20poly1305-x25519").prfs, [5], "prfsha256 by default");
    assert.deepEqual(parseEspProposal("chacha20poly1305", [CHACHA]).esn, [false], "noesn by default");
    assert.deepEqual(parseEspProposal("chacha20poly1305-esn-noesn-x25519", [CHACHA]), { text: "chacha20poly1305-esn-noesn-x25519", ciphers: [CHACHA], esn: [true, false], groups: [31] });
  });

  test("errors name the keyword and what is wrong", () => {
    assert.throws(() => parseIkeProposal("aes128-sha256-modp2048"), /unknown algorithm "aes128"/);
    assert.throws(() => parseIkeProposal("aes128gcm16-sha256-modp2048"), /"sha256".*integrity algorithms are not supported/);
    assert.throws(() => parseIkeProposal("aes128gcm16-prfsha256"), /no key exchange group/);
    assert.throws(() => parseEspProposal("aes256gcm16", [CHACHA]), /the data plane has no aes256gcm16/);
    assert.throws(() => parseIkeProposal(""), /non-empty string/);
  });

  test("the responder prefers its own order; the answer is one transform per type", () => {
    const ours = [parseIkeProposal("aes256gcm16-chacha20poly1305-prfsha256-x25519")];
    const theirs = ikeProposalsToWire([parseIkeProposal("chacha20poly1305-aes256gcm16-prfsha512-prfsha256-ecp256-x25519")]);
    const chosen = chooseIke(ours, theirs);
    assert.deepEqual(chosen, { algorithms: { cipher: { id: 20, keyBits: 256 }, prf: 5, group: 31 }, number: 1 });
    assert.equal(chooseIke([parseIkeProposal("aes128gcm16-prfsha256-x25519")], theirs), null);
    assert.equal(chooseIke(ours, theirs, 19)?.algorithms.group, 31, "a KE of ecp256 (theirs, not ours) does not sway the choice");
    assert.equal(chooseIke([parseIkeProposal("aes256gcm16-prfsha256-x25519-ecp256")], theirs, 19)?.algorithms.group, 19, "a KE group both accept is taken");
  });

  test("an AES-GCM transform must carry the key length we want; INTEG other than NONE spoils a proposal", () => {
    const ours = [parseIkeProposal("aes128gcm16-prfsha256-x25519")];
    const wire = ikeProposalsToWire([parseIkeProposal("aes256gcm16-prfsha256-x25519")]);
    assert.equal(chooseIke(ours, wire), null);
    const withInteg = ikeProposalsToWire([parseIkeProposal("aes128gcm16-prfsha256-x25519")]);
    withInteg[0]!.transforms.push({ type: TransformType.INTEG, id: 12 });
    assert.equal(chooseIke(ours, withInteg), null);
    withInteg[0]!.transforms[3] = { type: TransformType.INTEG, id: 0 };
    assert.ok(chooseIke(ours, withInteg));
  });

  test("ESP: SPI, ESN, and KE transforms ignored in IKE_AUTH but required with PFS", () => {
    const offer = espProposalsToWire([parseEspProposal("chacha20poly1305-x25519-esn", [CHACHA])], 0x12345678, true);
    const ours = [parseEspProposal("chacha20poly1305-esn", [CHACHA])];
    assert.deepEqual(chooseEsp(ours, offer), { algorithms: { cipher: CHACHA, esn: true }, number: 1, peerSpi: 0x12345678 });
    assert.equal(chooseEsp(ours, offer, 31), null, "PFS asked with x25519, not configured here");
    assert.ok(chooseEsp([parseEspProposal("chacha20poly1305-esn-x25519", [CHACHA])], offer, 31));
    assert.equal(chooseEsp([parseEspProposal("chacha20poly1305", [CHACHA])], offer), null, "ESN only offered");
  });

  test("an answer that is not a subset of the offer is refused", () => {
    const offered = [parseIkeProposal("chacha20poly1305-prfsha256-x25519")];
    const good = [{ number: 1, protocol: Protocol.IKE, spi: new Uint8Array(0), transforms: [{ type: 1, id: 28 }, { type: 2, id: 5 }, { type: 4, id: 31 }] }];
    assert.ok(acceptedIke(offered, good));
    assert.equal(acceptedIke(offered, [{ ...good[0]!, transforms: [{ type: 1, id: 28 }, { type: 2, id: 6 }, { type: 4, id: 31 }] }]), null);
    assert.equal(acceptedIke(offered, [{ ...good[0]!, transforms: [...good[0]!.transforms, { type: 4, id: 19 }] }]), null, "two groups");
    assert.equal(acceptedIke(offered, [good[0]!, good[0]!]), null, "two proposals");
    assert.equal(acceptedIke(offered, [{ ...good[0]!, number: 2 }]), null, "a number we did not use");
  });

  test("what a peer offered is described as strongSwan logs it", () => {
    assert.equal(describeOffered(ikeProposalsToWire([parseIkeProposal("aes256gcm16-prfsha256-x25519")])), "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519");
  });
});

describe("traffic selectors", () => {
  const s = selectorFromPrefix;
  test("narrowing keeps enforceable overlaps", () => {
    assert.deepEqual(narrow([s("10.0.0.0/8")], [s("10.77.1.0/24"), s("192.168.0.0/16")]).map(formatSelector), ["10.77.1.0/24"]);
    assert.deepEqual(narrow([s("10.77.1.128/25")], [s("10.77.0.0/16")]).map(formatSelector), ["10.77.1.128/25"]);
    assert.deepEqual(narrow([s("10.99.0.0/24")], [s("10.77.0.0/16")]), []);
    const tcp: Selector = { ...s("10.77.1.0/24"), protocol: 6, startPort: 80, endPort: 80 };
    assert.deepEqual(narrow([tcp], [s("10.77.0.0/16")]), [], "a port-restricted selector cannot be enforced: unacceptable");
    assert.deepEqual(narrow([s("0.0.0.0/0"), s("::/0")], [s("fd00::/64")]).map(formatSelector), ["fd00::/64"]);
    assert.deepEqual(narrow([s("10.0.0.0/8"), s("10.1.0.0/16")], [s("10.0.0.0/8")]).map(formatSelector), ["10.0.0.0/8"], "no selector inside another");
  });

  test("a range becomes the prefixes that cover it exactly", () => {
    const range: Selector = { family: 4, start: 0x0a000001n, end: 0x0a000006n, protocol: 0, startPort: 0, endPort: 65535 };
    assert.deepEqual(selectorPrefixes(range), ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
    assert.deepEqual(selectorPrefixes(anySelector(6)), ["::/0"]);
    assert.deepEqual(selectorPrefixes(s("2001:db8::/32")), ["2001:db8::/32"]);
    assert.equal(formatSelector(range), "10.0.0.1..10.0.0.6");
  });

  test("every IPv4 range, random or at the edges, becomes aligned prefixes that tile it exactly, each as large as it can be", () => {
    const rng = new Rng(7634);
    const ranges: [number, number][] = [[0, 0xffffffff], [0, 0], [0xffffffff, 0xffffffff], [1, 0xfffffffe], [0x0a000000, 0x0a0000ff]];
    for (let i = 0; i < 3000; i++) {
      const start = rng.u32();
      const length = i % 2 === 0 ? rng.u32() % 600 : rng.u32();
      ranges.push([start, Math.min(0xffffffff, start + length)]);
    }
    for (const [start, end] of ranges) {
      let next = start;
      for (const text of selectorPrefixes({ family: 4, start: BigInt(start), end: BigInt(end), protocol: 0, startPort: 0, endPort: 65535 })) {
        const [address, length] = text.split("/");
        const at = address!.split(".").reduce((v, octet) => v * 256 + Number(octet), 0);
        const size = 2 ** (32 - Number(length));
        assert.equal(at, next, `${text} continues the tiling of ${start}..${end}`);
        assert.equal(at % size, 0, `${text} is aligned`);
        assert.ok(at + size - 1 <= end, `${text} stays inside ${start}..${end}`);
        // Maximal: the block twice as large at this address is misaligned or runs past the end.
        assert.ok(size === 2 ** 32 || at % (2 * size) !== 0 || at + 2 * size - 1 > end, `${text} could have been larger`);
        next = at + size;
      }
      assert.equal(next, end + 1, `${start}..${end} covered to its end`);
    }
  });

  test("intersection and containment", () => {
    assert.equal(intersect(s("10.0.0.0/8"), s("fd00::/8")), null);
    assert.ok(within([s("10.77.1.0/24")], [s("10.77.0.0/16")]));
    assert.equal(within([s("10.78.1.0/24")], [s("10.77.0.0/16")]), false);
  });
});

describe("identities", () => {
  test("types from the config syntax", () => {
    assert.equal(parseIdentity("192.0.2.1").type, IdType.IPV4_ADDR);
    assert.equal(parseIdentity("2001:db8::1").type, IdType.IPV6_ADDR);
    assert.equal(parseIdentity("a.sluice.test").type, IdType.FQDN);
    assert.equal(parseIdentity("@192.0.2.1").type, IdType.FQDN);
    assert.equal(parseIdentity("alice@example.org").type, IdType.RFC822_ADDR);
    assert.deepEqual(parseIdentity("keyid:#0a0b"), { type: IdType.KEY_ID, data: Uint8Array.from([10, 11]) });
    assert.throws(() => parseIdentity("ipv4:example.org"), /not an IPv4 address/);
    assert.throws(() => parseIdentity("keyid:#xyz"), /hex digits/);
  });

  test("patterns match within a type, names without case", () => {
    const alice = parseIdentity("Alice@Example.org");
    assert.ok(identityMatches(parseIdentityPattern("*@example.org"), alice));
    assert.ok(identityMatches(parseIdentityPattern("alice@example.org"), alice));
    assert.equal(identityMatches(parseIdentityPattern("*.example.org"), alice), false);
    assert.ok(identityMatches(parseIdentityPattern("*.example.org"), parseIdentity("gw.example.org")));
    assert.ok(identityMatches(parseIdentityPattern("%any"), parseIdentity("192.0.2.9")));
    assert.throws(() => parseIdentityPattern("a*b@example.org"), /wildcard/);
  });

  test("formatting never passes control characters through", () => {
    assert.equal(formatIdentity({ type: IdType.FQDN, data: new TextEncoder().encode("evil\nline") }), "evil?line");
    assert.equal(formatIdentity(parseIdentity("2001:db8::1")), "2001:db8::1");
    assert.equal(formatIdentity(parseIdentity("keyid:#0a0b")), "keyid:#0a0b");
  });
});
