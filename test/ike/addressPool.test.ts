// Virtual IP pools and the CP payload (RFC 7296 §2.19, §3.15): the same
// identity gets the same address back, released addresses stay an offline
// client's until the pool runs dry, exhaustion is undefined (the caller
// answers INTERNAL_ADDRESS_FAILURE); CFG_REQUEST / CFG_REPLY round trips.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { AddressPool, parsePoolRange } from "../../src/ike/addressPool.js";
import { readVipReply, readVipRequest, vipReplyPayload, vipRequestPayload } from "../../src/ike/configPayload.js";
import { decodePayload } from "../../src/ike/codec/payloads.js";
import { payloadBody } from "../../src/ike/codec/payloads.js";
import type { CpPayload } from "../../src/ike/codec/payloads.js";

describe("address pools", () => {
  test("ranges: a prefix leaves out network, gateway and broadcast; explicit bounds are taken as they are", () => {
    assert.deepEqual(parsePoolRange("10.9.0.0/24"), { family: 4, first: 0x0a090002n, last: 0x0a0900fen });
    assert.deepEqual(parsePoolRange("10.9.0.10-10.9.0.12"), { family: 4, first: 0x0a09000an, last: 0x0a09000cn });
    assert.throws(() => parsePoolRange("10.9.0.12-10.9.0.10"), /above the last/);
    assert.throws(() => parsePoolRange("10.9.0.0"), /neither a prefix/);
    assert.throws(() => parsePoolRange("10.9.0.0/32"), /prefix length/);
  });

  test("the same identity gets the same address after it went away; others get others", () => {
    const pool = new AddressPool("clients", ["10.9.0.10-10.9.0.12"]);
    assert.equal(pool.acquire("alice", 4, 0), "10.9.0.10");
    assert.equal(pool.acquire("bob", 4, 0), "10.9.0.11");
    pool.release("alice", 4, 1);
    assert.equal(pool.acquire("carol", 4, 2), "10.9.0.12", "a never-used address before alice's offline lease");
    assert.equal(pool.acquire("alice", 4, 3), "10.9.0.10", "alice back: her address");
    assert.deepEqual(pool.usage(), { online: 3, offline: 0, size: 3 });
  });

  test("exhausted: the longest-unused offline lease is taken, then nothing", () => {
    const pool = new AddressPool("small", ["10.9.0.10-10.9.0.11"]);
    pool.acquire("a", 4, 0);
    pool.acquire("b", 4, 0);
    pool.release("b", 4, 5);
    pool.release("a", 4, 9);
    assert.equal(pool.acquire("c", 4, 10), "10.9.0.11", "b's, released first");
    assert.equal(pool.acquire("d", 4, 11), "10.9.0.10");
    assert.equal(pool.acquire("e", 4, 12), undefined);
    assert.equal(pool.acquire("a", 4, 13), undefined, "a's lease went to d");
  });

  test("IPv6 pools and two holders of one lease (a reconnect overlapping the old SA)", () => {
    const pool = new AddressPool("v6", ["fd09::/120"]);
    assert.equal(pool.acquire("alice", 6, 0), "fd09::2");
    assert.equal(pool.acquire("alice", 6, 1), "fd09::2");
    pool.release("alice", 6, 2);
    assert.deepEqual(pool.usage(), { online: 1, offline: 0, size: 254 });
    assert.equal(pool.acquire("alice", 4, 0), undefined, "no IPv4 range");
  });
});

describe("CP payload", () => {
  test("a request and a reply survive the wire", () => {
    const wire = (cp: CpPayload): CpPayload => decodePayload(cp.type, false, payloadBody(cp)) as CpPayload;
    assert.deepEqual(readVipRequest(wire(vipRequestPayload([4, 6]))), { ipv4: true, ipv6: true, dns: true });
    assert.deepEqual(readVipRequest(wire(vipRequestPayload([4]))), { ipv4: true, ipv6: false, dns: true });
    const reply = readVipReply(wire(vipReplyPayload({ addresses: ["10.9.0.2", "fd09::2"], dns: ["10.9.0.1", "fd09::1"] })));
    assert.deepEqual(reply, { addresses: ["10.9.0.2", "fd09::2"], dns: ["10.9.0.1", "fd09::1"] });
    assert.equal(readVipRequest(wire(vipReplyPayload({ addresses: [], dns: [] }))), undefined);
  });
});
