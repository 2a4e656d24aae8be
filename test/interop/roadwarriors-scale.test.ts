// A thousand road warriors on one sluice gateway (bench/roadWarriors.ts; the
// bench runs the same with `npm run bench -- ike --ike-parts roadwarriors`):
// the real `sluice up` with a [[pool]], and sluice's own IKE core as 1,000
// clients of distinct identities in another namespace, each holding its IKE
// SA, one child SA and a virtual IP at the same time. Every client's ICMP
// echo goes out through its own child SA, out of the gateway's TUN, and its
// answer comes back through the same SA, opened and checked by the client.
// What scales is what this needs: the engine's SA table (2,000 SA records at
// once, beyond the old default of 256), the IKE SA and ESP lookups by SPI,
// the pool's leases by identity, the routes (a /32 per client).
//
// The same clients against a strongSwan gateway follow, for the figures side
// by side. SLUICE_RW_CLIENTS sets the number (default 1000).
import assert from "node:assert/strict";
import { test } from "node:test";
import { runRoadWarriors } from "../../bench/roadWarriors.js";
import { bedSkip } from "../fixtures/interop/requirements.js";

const CLIENTS = Number(process.env.SLUICE_RW_CLIENTS ?? 1000);

test(`${CLIENTS} road warriors at once on one sluice gateway: each its own virtual IP, each passes traffic through its own SA`, { skip: bedSkip(), timeout: 600_000 }, async () => {
  const r = await runRoadWarriors({ count: CLIENTS, concurrency: 32 }, (line) => console.log(line));
  assert.deepEqual(r.failures, {});
  assert.equal(r.established, CLIENTS);
  assert.equal(r.distinctVips, CLIENTS, "no two clients share an address");
  assert.equal(r.echoed, CLIENTS, "every client's echo came back through its own SA");
  assert.equal(r.gateway.ikeSas, CLIENTS, "sluice status lists every client, established with its child SA");
  assert.equal(r.gateway.childrenWithTraffic, CLIENTS, "the gateway opened and sealed packets on every child SA");
  assert.equal(r.gateway.clientsMetric, CLIENTS, "sluice_ike_clients");
  assert.equal(r.gateway.poolOnline, CLIENTS, "sluice_pool_addresses{state=online}");
  // Memory per client is reported, not judged here (a loaded machine's GC timing moves it); a leak of 1 MiB per client would show.
  assert.ok(r.gateway.rssPerClientKiB < 1024, `${r.gateway.rssPerClientKiB.toFixed(0)} KiB RSS per client`);
});

test(`the same ${CLIENTS} clients against a strongSwan gateway (swanctl pools), for the figures side by side`, { skip: bedSkip(), timeout: 600_000 }, async () => {
  const r = await runRoadWarriors({ count: CLIENTS, concurrency: 32, gateway: "strongSwan" }, (line) => console.log(line));
  assert.deepEqual(r.failures, {});
  assert.equal(r.established, CLIENTS);
  assert.equal(r.distinctVips, CLIENTS);
  assert.equal(r.echoed, CLIENTS);
  assert.equal(r.gateway.ikeSas, CLIENTS);
  assert.equal(r.gateway.childrenWithTraffic, CLIENTS);
  assert.equal(r.gateway.poolOnline, CLIENTS, "swanctl --list-pools: online leases");
});
