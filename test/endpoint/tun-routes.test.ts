// The TUN device's kernel routes follow the peer table at run time (root:
// a native endpoint with a TUN device in a network namespace of its own,
// run as this file's child part there). Installing a child adds routes for
// its remote selectors, a trap routes its selectors, removing them takes the
// routes away, changes made back to back are applied coalesced and in order
// (a route added and removed before the background `ip` ran never shows),
// and the config's own routes stay. The data path is the same forwarder
// the portable tests drive (test/endpoint/children.test.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import type { ChildSpec } from "../../src/endpoint/peerTable.js";
import { parsePrefix } from "../../src/endpoint/prefix.js";
import { loadNativeIo } from "../../src/io/native.js";
import { runChildInNamespace, tunDeviceSkip, useNamespace } from "../fixtures/netns.js";

const SELF = fileURLToPath(import.meta.url);
const FLAG = "SLUICE_TUN_ROUTES_CHILD";

interface Report {
  initial: string[];
  afterTrapAndChild: string[];
  coalesced: string[];
  withInside: string[];
  insideRoutesToChild: boolean;
  insideGoneToTrap: boolean;
  afterRemoveChild: string[];
  afterRemovePeer: string[];
  installMs: number;
}

function routes(device: string): string[] {
  const out = JSON.parse(execFileSync("ip", ["-j", "-4", "route", "show", "dev", device], { encoding: "utf8" })) as { dst: string }[];
  return out.map((r) => r.dst).filter((dst) => dst.startsWith("10.90.")).sort();
}

function spec(spiIn: number, remote: string[]): ChildSpec {
  const key = (): Uint8Array => new Uint8Array(32).fill(spiIn & 0xff);
  return {
    outbound: { spi: spiIn + 1, key: key(), salt: new Uint8Array(4) }, inbound: { spi: spiIn, key: key(), salt: new Uint8Array(4) },
    esn: true, localSelectors: [], remoteSelectors: remote.map(parsePrefix),
  };
}

async function child(): Promise<void> {
  execFileSync("ip", ["link", "set", "lo", "up"]);
  const dir = mkdtempSync(join(tmpdir(), "sluice-tun-routes-"));
  process.env.SLUICE_TEST_TUN_ROUTES_SECRET = "21".repeat(32);
  const device = `sltr${process.pid % 100000}`;
  const config = parseConfig(`
keepalive.interval = 0
[local]
address = "127.0.0.1"
port = 0
[tun]
name = "${device}"
addresses = ["10.90.0.1/24"]
[engine]
workers = 1
[state]
dir = "${dir}"
[[peer]]
name = "static"
endpoint = "127.0.0.1:9"
selectors = ["10.90.1.0/24"]
secret_env = "SLUICE_TEST_TUN_ROUTES_SECRET"
spi_out = 0x1001
spi_in = 0x1002
`);
  const endpoint = await Endpoint.start(config, { path: "native", io: loadNativeIo()! }, pino({ level: "warn" }), { processMetrics: false });
  try {
    const initial = routes(device);
    const table = endpoint.table;
    const peer = table.addPeer({ name: "gw", address: { family: 4, address: "127.0.0.1", port: 9 }, keepalive: false, trapSelectors: [parsePrefix("10.90.8.0/24")] });
    const started = performance.now();
    const first = table.installChild(peer, spec(0x2000, ["10.90.5.0/24", "10.90.6.0/24"]));
    const installMs = performance.now() - started;
    await endpoint.routesSettled();
    const afterTrapAndChild = routes(device);
    // Back to back: one added and removed again, another added.
    const passing = table.installChild(peer, spec(0x3000, ["10.90.7.0/24"]));
    table.removeChild(passing);
    table.installChild(peer, spec(0x4000, ["10.90.9.0/24"]));
    await endpoint.routesSettled();
    const coalesced = routes(device);
    // A road warrior's /32 inside the trap: the lookup table has it at once, the TUN's routes need no change.
    const inside = table.installChild(peer, spec(0x5000, ["10.90.8.7/32"]));
    const insideRoutesToChild = table.route(4, Uint8Array.from([10, 90, 8, 7]), 0) === inside;
    await endpoint.routesSettled();
    const withInside = routes(device);
    table.removeChild(inside);
    const insideGoneToTrap = table.route(4, Uint8Array.from([10, 90, 8, 7]), 0) === peer;
    table.removeChild(first);
    await endpoint.routesSettled();
    const afterRemoveChild = routes(device);
    table.removePeer(peer);
    await endpoint.routesSettled();
    const afterRemovePeer = routes(device);
    const report: Report = { initial, afterTrapAndChild, coalesced, withInside, insideRoutesToChild, insideGoneToTrap, afterRemoveChild, afterRemovePeer, installMs };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await endpoint.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env[FLAG] === "1") {
  await child();
} else {
  describe("TUN routes follow the peer table at run time", { skip: tunDeviceSkip() }, () => {
    const ns = useNamespace("sltr");
    test("a child's and a trap's selectors are routed into the TUN and taken away again, in the background, coalesced", async () => {
      const report = await runChildInNamespace<Report>(ns, SELF, FLAG);
      assert.deepEqual(report.initial, ["10.90.0.0/24", "10.90.1.0/24"]);
      assert.deepEqual(report.afterTrapAndChild, ["10.90.0.0/24", "10.90.1.0/24", "10.90.5.0/24", "10.90.6.0/24", "10.90.8.0/24"]);
      assert.deepEqual(report.coalesced, ["10.90.0.0/24", "10.90.1.0/24", "10.90.5.0/24", "10.90.6.0/24", "10.90.8.0/24", "10.90.9.0/24"]);
      assert.deepEqual(report.withInside, report.coalesced, "a /32 inside the trap changes no kernel route");
      assert.equal(report.insideRoutesToChild, true, "packets to it go to its child at once");
      assert.equal(report.insideGoneToTrap, true, "and to the trap again once it is gone");
      assert.deepEqual(report.afterRemoveChild, ["10.90.0.0/24", "10.90.1.0/24", "10.90.8.0/24", "10.90.9.0/24"]);
      assert.deepEqual(report.afterRemovePeer, ["10.90.0.0/24", "10.90.1.0/24"]);
      // installChild does not wait for `ip` (a process start takes milliseconds).
      assert.ok(report.installMs < 50, `installChild took ${report.installMs.toFixed(1)} ms`);
    });
  });
}
