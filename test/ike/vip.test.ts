// Virtual IPs between two cores (RFC 7296 §2.19, §3.15): a road warrior asks
// for IPv4 and IPv6 addresses in IKE_AUTH, the gateway leases them from its
// pools with its DNS servers, and narrows the client's side of the child SA
// to them; a reconnecting client gets the same addresses; an exhausted pool
// answers INTERNAL_ADDRESS_FAILURE (the IKE SA stands, no child); leases
// follow an IKE rekey and are released when the SA goes.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, peer } from "../fixtures/ikeBed.js";
import { AddressPool } from "../../src/ike/addressPool.js";
import { decodeMessage } from "../../src/ike/codec/message.js";
import { Exchange } from "../../src/ike/constants.js";

function bed(pool: AddressPool, client = "alice@example.org"): IkeBed {
  const clientPeer = peer({ name: "gw", remote: "10.0.0.2", localId: client, remoteId: "gw.example.org", psk: "road-warrior-psk-0123456789", localTs: ["0.0.0.0/0", "::/0"], remoteTs: ["0.0.0.0/0", "::/0"], vips: [4, 6], start: "start" });
  const gateway = peer({ name: "clients", localId: "gw.example.org", remoteId: "*@example.org", psk: "road-warrior-psk-0123456789", localTs: ["0.0.0.0/0", "::/0"], remoteTs: ["10.9.0.0/24", "fd09::/112"], pools: [pool], dns: ["10.9.0.1", "fd09::1"] });
  return new IkeBed([clientPeer], [gateway]);
}

function vipAction(b: IkeBed): { addresses: string[]; dns: string[] } | undefined {
  const action = b.a.actions.find((a) => a.type === "virtual-ip");
  return action?.type === "virtual-ip" ? action : undefined;
}

describe("virtual IPs", () => {
  test("the client gets an IPv4 and an IPv6 address and the DNS servers; its side of the child is narrowed to them", () => {
    const pool = new AddressPool("clients", ["10.9.0.0/24", "fd09::/112"]);
    const b = bed(pool);
    b.start();
    assert.ok(b.runUntil(() => b.established()));
    assert.deepEqual(vipAction(b), { type: "virtual-ip", ikeSaId: 1, peerName: "gw", addresses: ["10.9.0.2", "fd09::2"], dns: ["10.9.0.1", "fd09::1"], gateway: { address: "10.0.0.2", port: 4500 } });
    const virtualIp = b.a.actions.findIndex((a) => a.type === "virtual-ip");
    const childUp = b.a.actions.findIndex((a) => a.type === "child-up");
    assert.ok(virtualIp < childUp, "the address is known before the child is installed");
    const [gatewayChild] = [...b.b.children.values()];
    assert.deepEqual(gatewayChild!.remotePrefixes, ["10.9.0.2/32", "fd09::2/128"], "the gateway accepts from the client's addresses only");
    const [clientChild] = [...b.a.children.values()];
    assert.deepEqual(clientChild!.localPrefixes, ["10.9.0.2/32", "fd09::2/128"]);
    assert.deepEqual(b.a.core.list()[0]!.virtualIps, ["10.9.0.2", "fd09::2"]);
    assert.deepEqual(b.b.core.list()[0]!.virtualIps, ["10.9.0.2", "fd09::2"]);
    const auth = b.wire.filter((d) => decodeMessage(d.datagram).header.exchange === Exchange.IKE_AUTH);
    assert.equal(auth.length, 2);
  });

  test("a client that reconnects gets the same address; another client gets another", () => {
    const pool = new AddressPool("clients", ["10.9.0.0/24", "fd09::/112"]);
    const first = bed(pool);
    first.start();
    assert.ok(first.runUntil(() => first.established()));
    first.apply(first.a, first.a.core.terminate("gw", first.now));
    first.flush();
    assert.equal(first.b.core.list().length, 0);
    assert.deepEqual(pool.usage(), { online: 0, offline: 2, size: 253 + 65535 - 1 });
    const again = bed(pool);
    again.start();
    assert.ok(again.runUntil(() => again.established()));
    assert.deepEqual(vipAction(again)!.addresses, ["10.9.0.2", "fd09::2"]);
    const bob = bed(pool, "bob@example.org");
    bob.start();
    assert.ok(bob.runUntil(() => bob.established()));
    assert.deepEqual(vipAction(bob)!.addresses, ["10.9.0.3", "fd09::3"]);
  });

  test("an exhausted pool: INTERNAL_ADDRESS_FAILURE, a log line, the IKE SA stands without a child", () => {
    const pool = new AddressPool("tiny", ["10.9.0.10-10.9.0.10"]);
    const alice = bed(pool);
    alice.start();
    assert.ok(alice.runUntil(() => alice.established()));
    const bob = bed(pool, "bob@example.org");
    bob.start();
    bob.runUntil(() => bob.events(bob.a, "child-failed").length > 0);
    assert.deepEqual(bob.events(bob.b, "child-failed").map((e) => e.fields.reason), ["INTERNAL_ADDRESS_FAILURE"]);
    assert.deepEqual(bob.events(bob.a, "child-failed").map((e) => e.fields.reason), ["INTERNAL_ADDRESS_FAILURE"]);
    assert.equal(bob.a.children.size + bob.b.children.size, 0);
    assert.equal(bob.b.core.list()[0]!.state, "established");
  });

  test("the lease follows an IKE rekey and is released when the IKE SA goes", () => {
    const pool = new AddressPool("clients", ["10.9.0.0/24"]);
    const b = bed(pool);
    b.start();
    assert.ok(b.runUntil(() => b.established()));
    b.apply(b.a, b.a.core.rekey("gw", "ike", b.now));
    b.flush();
    assert.equal(b.b.core.list().length, 1);
    assert.deepEqual(b.b.core.list()[0]!.virtualIps, ["10.9.0.2"]);
    assert.equal(pool.usage().online, 1, "still leased after the rekey");
    b.apply(b.b, b.b.core.terminate("clients", b.now));
    b.flush();
    assert.deepEqual(pool.usage(), { online: 0, offline: 1, size: 253 });
  });
});
