// The DoS defence of RFC 7296 §2.6 (src/ike/cookies.ts, src/ike/dosGuard.ts):
// stateless cookies above a half-open threshold with a rotating secret, the
// per-source and global half-open limits, the per-source request rate, no
// Diffie-Hellman for a request that fails the cookie check, memory flat and
// the log quiet under a flood, and a legitimate initiator getting through.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, sitePeers } from "../fixtures/ikeBed.js";
import { IkeCore, type IkeAction, type Path } from "../../src/ike/index.js";
import { decodeMessage, encodeMessage, type DecodedMessage } from "../../src/ike/codec/message.js";
import { findNotify, findPayload, notify, type IkePayload } from "../../src/ike/codec/payloads.js";
import { Notify, Payload } from "../../src/ike/constants.js";
import { CookieSecrets, COOKIE_BYTES } from "../../src/ike/cookies.js";
import { CALM_DOWN_MS, MAX_SOURCES, type DosSettings } from "../../src/ike/dosGuard.js";
import { Rng, SEED } from "../helpers.js";

/** A real IKE_SA_INIT request of a sluice initiator: the flood's template. */
function template(): Uint8Array {
  const peers = sitePeers();
  const bed = new IkeBed(peers.a, peers.b);
  bed.drop = () => true;
  bed.start();
  return bed.wire[0]!.datagram;
}

const TEMPLATE = template();

/** The template with another SPIi (what a flooder varies), and optionally its payloads changed. */
function request(spi: bigint, change?: (payloads: IkePayload[]) => IkePayload[]): Uint8Array {
  if (change) {
    const message = decodeMessage(TEMPLATE);
    const h = message.header;
    return encodeMessage({ spiI: spi, spiR: 0n, exchange: h.exchange, flags: h.flags, messageId: 0 }, change(message.payloads));
  }
  const bytes = TEMPLATE.slice();
  new DataView(bytes.buffer).setBigUint64(0, spi);
  return bytes;
}

function withCookie(spi: bigint, cookie: Uint8Array): Uint8Array {
  return request(spi, (payloads) => [notify(Notify.COOKIE, cookie), ...payloads]);
}

/** An all-zero X25519 value: the key exchange runs, then fails (RFC 8031 §2), and nothing is kept. */
function badKe(spi: bigint): Uint8Array {
  return request(spi, (payloads) => payloads.map((p) => (p.type === Payload.KE ? { ...p, data: new Uint8Array(32) } : p)) as IkePayload[]);
}

function from(address: string, port = 500): Path {
  return { local: { address: "10.0.0.2", port: 500 }, remote: { address, port }, natT: false };
}

/** The n-th spoofed source address, 10.200.0.0/16 upwards. */
function source(n: number): string {
  return `10.${200 + ((n >> 16) & 0x1f)}.${(n >> 8) & 255}.${n & 255}`;
}

interface Responder {
  core: IkeCore;
  /** Random bytes drawn so far: every private key, nonce, SPI and secret comes from here. */
  drawn(): number;
  now: number;
  receive(datagram: Uint8Array, path: Path): IkeAction[];
}

function responder(dos: Partial<DosSettings>, halfOpenTimeoutMs?: number): Responder {
  const rng = new Rng(SEED);
  let drawn = 0;
  const core = new IkeCore({
    peers: sitePeers().b,
    random: (n) => ((drawn += n), rng.bytes(n)),
    local: { address: "10.0.0.2", ikePort: 500, natTPort: 4500 },
    dos,
    halfOpenTimeoutMs,
  });
  const r: Responder = {
    core,
    drawn: () => drawn,
    now: 1_000_000,
    receive: (datagram, path) => core.receive(datagram, path, r.now),
  };
  return r;
}

function responses(actions: IkeAction[]): DecodedMessage[] {
  return actions.filter((a): a is Extract<IkeAction, { type: "send" }> => a.type === "send").map((a) => decodeMessage(a.datagram));
}

function logs(actions: IkeAction[], event: string): Extract<IkeAction, { type: "log" }>[] {
  return actions.filter((a): a is Extract<IkeAction, { type: "log" }> => a.type === "log" && a.event === event);
}

const OFF = { cookieThreshold: 0, blockThreshold: 0, initLimitHalfOpen: 0, initRatePerSource: 0 };

describe("cookie secrets (RFC 7296 §2.6)", () => {
  const ni = new Uint8Array(32).fill(7);
  const rng = new Rng(SEED);

  test("a cookie verifies in its generation and the next, not after; bound to SPIi, Ni and the address", () => {
    const secrets = new CookieSecrets((n) => rng.bytes(n), 60_000);
    const t0 = 5_000;
    const cookie = secrets.make(0x1234n, ni, "192.0.2.7", t0);
    assert.equal(cookie.length, COOKIE_BYTES);
    assert.equal(secrets.verify(cookie, 0x1234n, ni, "192.0.2.7", t0), true);
    assert.equal(secrets.verify(cookie, 0x1235n, ni, "192.0.2.7", t0), false, "another SPIi");
    assert.equal(secrets.verify(cookie, 0x1234n, ni.map((b) => b ^ 1), "192.0.2.7", t0), false, "another Ni");
    assert.equal(secrets.verify(cookie, 0x1234n, ni, "192.0.2.8", t0), false, "another address");
    assert.equal(secrets.verify(cookie, 0x1234n, ni, "2001:db8::7", t0), false, "an IPv6 address");
    for (let i = 0; i < cookie.length; i++) {
      const bad = cookie.slice();
      bad[i]! ^= 0x01;
      assert.equal(secrets.verify(bad, 0x1234n, ni, "192.0.2.7", t0), false, `byte ${i} flipped`);
    }
    assert.equal(secrets.verify(cookie.subarray(0, 19), 0x1234n, ni, "192.0.2.7", t0), false, "truncated");
    // One rotation later: the previous secret still verifies it; the new cookies differ.
    const g0 = secrets.generation(t0);
    assert.equal(secrets.generation(t0 + 60_000), g0 + 1);
    assert.equal(secrets.verify(cookie, 0x1234n, ni, "192.0.2.7", t0 + 60_000), true, "accepted under the previous secret");
    assert.notDeepEqual(secrets.make(0x1234n, ni, "192.0.2.7", t0 + 60_000), cookie);
    // Two rotations later: refused.
    assert.equal(secrets.verify(cookie, 0x1234n, ni, "192.0.2.7", t0 + 120_000), false, "refused after two lifetimes");
  });

  test("a long quiet spell retires both secrets; the generation counts the lifetimes that passed", () => {
    const secrets = new CookieSecrets((n) => rng.bytes(n), 10_000);
    const cookie = secrets.make(1n, ni, "192.0.2.7", 0);
    assert.equal(secrets.verify(cookie, 1n, ni, "192.0.2.7", 9_999), true);
    assert.equal(secrets.verify(cookie, 1n, ni, "192.0.2.7", 35_000), false);
    assert.equal(secrets.generation(35_000), 3);
    const later = secrets.make(1n, ni, "192.0.2.7", 35_000);
    assert.equal(secrets.verify(later, 1n, ni, "192.0.2.7", 49_999), true, "made in generation 3, verified in 4");
  });

  test("secrets are drawn only when a cookie is first needed, and a new one per rotation", () => {
    let draws = 0;
    const secrets = new CookieSecrets((n) => (draws++, rng.bytes(n)), 1000);
    assert.equal(draws, 0);
    secrets.make(1n, ni, "192.0.2.7", 0);
    secrets.make(2n, ni, "192.0.2.7", 500);
    assert.equal(draws, 1);
    secrets.make(3n, ni, "192.0.2.7", 1000);
    assert.equal(draws, 2);
  });
});

describe("IKE_SA_INIT admission (dosGuard.ts)", () => {
  test("from the threshold on, a request without a valid cookie gets N(COOKIE) and costs no key exchange and no state", () => {
    const r = responder({ ...OFF, cookieThreshold: 5 });
    for (let i = 0; i < 5; i++) {
      const [answer] = responses(r.receive(request(0xa000n + BigInt(i)), from(source(i))));
      assert.ok(answer && findPayload(answer.payloads, Payload.SA), `request ${i} answered with a proposal`);
    }
    assert.equal(r.core.dosStatus().halfOpen, 5);
    const before = r.drawn();
    let cookies = 0;
    for (let i = 5; i < 2005; i++) {
      const offered = i % 2 === 0 ? request(0xa000n + BigInt(i)) : withCookie(0xa000n + BigInt(i), new Uint8Array(COOKIE_BYTES).fill(i & 255));
      const answers = responses(r.receive(offered, from(source(i))));
      assert.equal(answers.length, 1);
      const cookie = findNotify(answers[0]!.payloads, Notify.COOKIE);
      assert.ok(cookie && answers[0]!.payloads.length === 1, "only N(COOKIE)");
      assert.equal(answers[0]!.header.spiR, 0n, "no responder SPI: no state");
      cookies++;
    }
    assert.equal(cookies, 2000);
    // The only randomness drawn for 2000 requests is the cookie secret (32 bytes): no private key, nonce or SPI.
    assert.equal(r.drawn() - before, 32);
    assert.equal(r.core.dosStatus().halfOpen, 5);
    assert.equal(r.core.footprint().sas, 5);
    assert.equal(r.core.counters.drops["cookie-required"], 1000);
    assert.equal(r.core.counters.drops["cookie-invalid"], 1000);
    assert.equal(r.core.dosStatus().cookiesRequired, true);
  });

  test("the request that returns its cookie is admitted; one two secret lifetimes old is refused with a new cookie", () => {
    const r = responder({ ...OFF, cookieThreshold: 3, cookieSecretLifetimeMs: 60_000 }, 600_000);
    for (let i = 0; i < 3; i++) r.receive(request(0xb000n + BigInt(i)), from(source(i)));
    const [first] = responses(r.receive(request(0xbeefn), from("192.0.2.50")));
    const cookie = findNotify(first!.payloads, Notify.COOKIE)!.data.slice();
    // The same request from another address, or with another SPI, does not pass with it.
    assert.ok(findNotify(responses(r.receive(withCookie(0xbeefn, cookie), from("192.0.2.51")))[0]!.payloads, Notify.COOKIE));
    assert.ok(findNotify(responses(r.receive(withCookie(0xbef0n, cookie), from("192.0.2.50")))[0]!.payloads, Notify.COOKIE));
    // A secret rotation later it still passes.
    r.now += 60_000;
    const [answer] = responses(r.receive(withCookie(0xbeefn, cookie), from("192.0.2.50")));
    assert.ok(findPayload(answer!.payloads, Payload.SA), "admitted under the previous secret");
    assert.equal(r.core.dosStatus().halfOpen, 4);
    // Two lifetimes after it was made it no longer does (another source port: not the SA it made).
    r.now += 60_000;
    const [late] = responses(r.receive(withCookie(0xbeefn, cookie), from("192.0.2.50", 501)));
    assert.ok(findNotify(late!.payloads, Notify.COOKIE), "refused, a fresh cookie sent");
    assert.equal(r.core.dosStatus().halfOpen, 4);
  });

  test("block_threshold: a source's sixth half-open SA is dropped silently, with one log line per interval", () => {
    const r = responder({ ...OFF, blockThreshold: 5 });
    const actions: IkeAction[] = [];
    for (let i = 0; i < 105; i++) actions.push(...r.receive(request(0xc000n + BigInt(i)), from("192.0.2.7", 500 + i)));
    assert.equal(r.core.dosStatus().halfOpen, 5);
    assert.equal(responses(actions).length, 5, "the dropped ones get no answer");
    assert.equal(r.core.counters.drops["block-threshold"], 100);
    assert.equal(logs(actions, "ike-dos").length, 1, "one line for 100 drops");
    // Another address is not affected.
    assert.equal(responses(r.receive(request(0xc999n), from("192.0.2.8"))).length, 1);
    // The next interval's line says how many were left out.
    r.now += 10_001;
    const next = logs(r.receive(request(0xcaaan), from("192.0.2.7")), "ike-dos");
    assert.equal(next.length, 1);
    assert.equal(next[0]!.fields.suppressed, 99);
    // Once the half-open SAs expire, the source may start again.
    r.now += 30_000;
    r.core.timeout(r.now);
    assert.equal(responses(r.receive(request(0xcbbbn), from("192.0.2.7"))).length, 1);
  });

  test("init_limit_half_open caps the half-open SAs of all sources together", () => {
    const r = responder({ ...OFF, initLimitHalfOpen: 10 });
    for (let i = 0; i < 50; i++) r.receive(request(0xd000n + BigInt(i)), from(source(i)));
    assert.equal(r.core.dosStatus().halfOpen, 10);
    assert.equal(r.core.counters.drops["half-open-limit"], 40);
  });

  test("init_rate_per_source bounds the key exchanges one address gets, even when each leaves no state", () => {
    const r = responder({ ...OFF, initRatePerSource: 3 });
    const before = r.drawn();
    for (let i = 0; i < 20; i++) r.receive(badKe(0xe000n + BigInt(i)), from("192.0.2.9"));
    assert.equal(r.core.counters.handshakesFailed.INVALID_SYNTAX, 3, "three key exchanges ran (and failed)");
    assert.equal(r.core.counters.drops["init-rate-limit"], 17);
    assert.ok(r.drawn() - before <= 3 * 64, "randomness for three key exchanges at most");
    r.now += 1000;
    for (let i = 20; i < 40; i++) r.receive(badKe(0xe000n + BigInt(i)), from("192.0.2.9"));
    assert.equal(r.core.counters.handshakesFailed.INVALID_SYNTAX, 6, "three more a second later");
    assert.equal(r.core.dosStatus().halfOpen, 0);
  });

  test("requests answered without state count towards the cookie threshold (a flood of failing key exchanges turns cookies on)", () => {
    const r = responder({ ...OFF, cookieThreshold: 10 });
    for (let i = 0; i < 100; i++) r.receive(badKe(0xf000n + BigInt(i)), from(source(i)));
    assert.equal(r.core.counters.handshakesFailed.INVALID_SYNTAX, 10);
    assert.equal(r.core.counters.drops["cookie-required"], 90);
    assert.equal(r.core.dosStatus().cookiesRequired, true);
  });

  test("cookies stay required for the calm-down after the pressure is gone, then stop; each switch logged once", () => {
    const r = responder({ ...OFF, cookieThreshold: 3 }, 5000);
    const actions: IkeAction[] = [];
    for (let i = 0; i < 3; i++) actions.push(...r.receive(request(0x7000n + BigInt(i)), from(source(i))));
    actions.push(...r.receive(request(0x7100n), from("192.0.2.60")));
    assert.equal(logs(actions, "ike-cookies-on").length, 1);
    r.now += 5001;
    actions.push(...r.core.timeout(r.now));
    assert.equal(r.core.dosStatus().halfOpen, 0, "the half-open SAs expired");
    // Within the calm-down of the last request that needed one: still required (and the calm-down starts again).
    const still = responses(r.receive(request(0x7200n), from("192.0.2.61")));
    assert.ok(findNotify(still[0]!.payloads, Notify.COOKIE), "required within the calm-down");
    r.now += CALM_DOWN_MS;
    const later = r.receive(request(0x7300n), from("192.0.2.62"));
    assert.ok(findPayload(responses(later)[0]!.payloads, Payload.SA), "answered once calm");
    assert.equal(logs(later, "ike-cookies-off").length, 1);
    assert.equal(logs(actions, "ike-cookies-on").length, 1);
  });

  test(`a legitimate initiator gets through with its cookie while a spoofed flood goes on (seed ${SEED})`, () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b, { core: { b: { dos: { cookieThreshold: 30 } } } });
    let n = 0;
    const flood = (count: number): void => {
      // The flood goes straight into b: its answers go to spoofed addresses, not to a.
      for (let i = 0; i < count; i++, n++) bed.b.core.receive(request(0x5000_0000n + BigInt(n)), from(source(n)), bed.now);
    };
    flood(100);
    bed.start();
    assert.ok(bed.runUntil(() => (flood(50), bed.established())), "established during the flood");
    assert.equal(bed.events(bed.a, "ike-cookie").length, 1, "the initiator was asked for a cookie once");
    assert.ok((bed.b.core.counters.drops["cookie-required"] ?? 0) > 100);
    assert.equal(bed.b.core.counters.handshakesCompleted, 1);
  });

  test("memory stays flat: 50,000 spoofed requests over ten simulated minutes leave nothing behind, and the log says little", () => {
    const r = responder({ cookieThreshold: 30, blockThreshold: 5, initLimitHalfOpen: 1000, initRatePerSource: 20 });
    const rng = new Rng(SEED);
    let logLines = 0;
    let peak = { sas: 0, halfOpenIndex: 0, timers: 0, rateTracked: 0 };
    for (let i = 0; i < 50_000; i++) {
      // 10.200.0.0/11: two million possible sources; 83 requests per simulated second.
      const actions = r.receive(request(BigInt(rng.u32()) << 32n | BigInt(i)), from(source(rng.int(1 << 21)), 1024 + rng.int(60000)));
      logLines += actions.filter((a) => a.type === "log" && a.level !== "debug").length;
      r.now += 12;
      if (i % 1000 === 0) {
        logLines += r.core.timeout(r.now).filter((a) => a.type === "log" && a.level !== "debug").length;
        const f = r.core.footprint();
        peak = { sas: Math.max(peak.sas, f.sas), halfOpenIndex: Math.max(peak.halfOpenIndex, f.halfOpenIndex), timers: Math.max(peak.timers, f.timers), rateTracked: Math.max(peak.rateTracked, f.dos.rateTracked) };
      }
    }
    assert.ok(peak.sas <= 30, `at most the threshold half-open (peak ${peak.sas})`);
    assert.ok(peak.halfOpenIndex <= 60 && peak.timers <= 64 * 4, JSON.stringify(peak));
    assert.ok(peak.rateTracked <= MAX_SOURCES, JSON.stringify(peak));
    assert.ok(logLines < 10, `${logLines} info/warn lines for 50,000 requests`);
    r.now += 60_000;
    r.core.timeout(r.now);
    const after = r.core.footprint();
    assert.deepEqual([after.sas, after.halfOpenIndex, after.dos.halfOpen, after.dos.sources], [0, 0, 0, 0]);
  });

  test("the half-open index forgets an SA that established after floating to 4500 (no entry per handshake left behind)", () => {
    const peers = sitePeers();
    const bed = new IkeBed(peers.a, peers.b);
    bed.start();
    assert.ok(bed.runUntil(() => bed.established()));
    for (let i = 0; i < 5; i++) {
      bed.apply(bed.a, bed.a.core.terminate("site-b", bed.now));
      bed.flush();
      bed.apply(bed.a, bed.a.core.initiate("site-b", bed.now));
      assert.ok(bed.runUntil(() => bed.established()));
    }
    assert.equal(bed.b.core.counters.handshakesCompleted, 6);
    assert.equal(bed.b.core.footprint().halfOpenIndex, 0);
    assert.equal(bed.b.core.footprint().dos.halfOpen, 0);
  });
});
