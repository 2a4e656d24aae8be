// One gateway core with many road warriors at once (the in-process half of
// the thousand-client proof; test/interop/roadwarriors-scale.test.ts runs 1,000
// against the real daemon): every client established with its own address,
// each found again by its identity — a client that lost its state comes back
// with INITIAL_CONTACT (RFC 7296 §3.10.1) and replaces its own old IKE SA
// and nobody else's, through the core's index by identity rather than a
// scan — and every table back to empty once they leave.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IkeBed, peer } from "../fixtures/ikeBed.js";
import { AddressPool } from "../../src/ike/addressPool.js";
import type { IkePeerConfig } from "../../src/ike/config.js";

const CLIENTS = 300;
const PSK = "road-warrior-psk-0123456789";

function client(i: number): IkePeerConfig {
  return peer({ name: `c${i}`, remote: "10.0.0.2", localId: `client-${i}@example.org`, remoteId: "gw.example.org", psk: PSK, localTs: ["0.0.0.0/0"], remoteTs: ["10.77.2.0/24"], vips: [4], start: "start" });
}

test(`${CLIENTS} clients on one gateway core: each its address; INITIAL_CONTACT replaces only the returning client's SA, found by identity; all tables empty after`, () => {
  const pool = new AddressPool("clients", ["10.9.0.0/16"]);
  const gateway = peer({ name: "clients", localId: "gw.example.org", remoteId: "*@example.org", psk: PSK, localTs: ["10.77.2.0/24"], remoteTs: ["10.9.0.0/16"], pools: [pool] });
  // The clients all come from one address: the per-source DoS limits (block_threshold 5 …) would pace them, as in the bench.
  const bed = new IkeBed(Array.from({ length: CLIENTS }, (_, i) => client(i)), [gateway], { core: { b: { dos: { cookieThreshold: 0, blockThreshold: 0, initLimitHalfOpen: 0, initRatePerSource: 0 } } } });
  bed.start();
  assert.ok(bed.runUntil(() => bed.b.children.size === CLIENTS && bed.a.children.size === CLIENTS));
  const sas = bed.b.core.list();
  assert.equal(sas.length, CLIENTS);
  assert.equal(new Set(sas.map((sa) => sa.virtualIps[0])).size, CLIENTS, "no two clients share an address");
  assert.equal(bed.b.core.footprint().byIdentity, CLIENTS);
  assert.deepEqual(pool.usage().online, CLIENTS);

  // client-7 loses its state (a reboot) and connects again from a fresh core: INITIAL_CONTACT.
  const seven = sas.find((sa) => sa.remoteId === "client-7@example.org")!;
  const fresh = new IkeBed([client(7)], [gateway], { seed: 99 });
  (bed as unknown as { a: unknown }).a = fresh.a;
  bed.apply(bed.a, bed.a.core.start(bed.now));
  assert.ok(bed.runUntil(() => bed.a.children.size === 1));
  const replaced = bed.events(bed.b, "ike-down").filter((e) => e.fields.reason === "replaced (INITIAL_CONTACT)");
  assert.equal(replaced.length, 1, "only client-7's old SA goes");
  assert.match(replaced[0]!.message, new RegExp(`\\[${seven.id}\\] closed`));
  const after = bed.b.core.list();
  assert.equal(after.length, CLIENTS);
  assert.deepEqual(after.find((sa) => sa.remoteId === "client-7@example.org")!.virtualIps, seven.virtualIps, "the same address again");
  assert.equal(bed.b.core.footprint().byIdentity, CLIENTS);

  // Everyone leaves: the gateway's tables are empty again, the leases kept offline.
  bed.apply(bed.b, bed.b.core.shutdown(bed.now));
  bed.flush();
  const footprint = bed.b.core.footprint();
  assert.deepEqual([footprint.sas, footprint.byIdentity, footprint.childSpis], [0, 0, 0]);
  assert.deepEqual(pool.usage(), { online: 0, offline: CLIENTS, size: 65533 });
});
