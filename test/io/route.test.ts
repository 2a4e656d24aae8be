// Routes into a TUN device through rtnetlink (native/src/route.c), checked
// against what `ip` shows and against the `ip -batch` path TunRoutes takes
// without the addon: the same routes, the same attributes (root: a TUN
// device in a network namespace of its own, run as this file's child).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { parsePrefix } from "../../src/endpoint/prefix.js";
import { TunRoutes } from "../../src/endpoint/tunRoutes.js";
import { loadNativeIo } from "../../src/io/native.js";
import { runChildInNamespace, tunDeviceSkip, useNamespace } from "../fixtures/netns.js";

const SELF = fileURLToPath(import.meta.url);
const FLAG = "SLUICE_IO_ROUTE_CHILD";

interface RouteLine {
  dst: string;
  protocol?: string;
  scope?: string;
}

interface Report {
  replaced: number[];
  afterReplace: RouteLine[];
  deleted: number[];
  afterDelete: RouteLine[];
  noDevice: number;
  refusals: string[];
  nativeSet: RouteLine[];
  batchSet: RouteLine[];
  nativeCleared: RouteLine[];
  batchCleared: RouteLine[];
  microsecondsEach: number;
}

function routes(device: string): RouteLine[] {
  const lines: RouteLine[] = [];
  for (const family of ["-4", "-6"]) {
    const out = JSON.parse(execFileSync("ip", ["-j", "-d", family, "route", "show", "dev", device], { encoding: "utf8" })) as RouteLine[];
    lines.push(...out.filter((r) => !r.dst.startsWith("fe80")).map((r) => ({ dst: r.dst, protocol: r.protocol, scope: r.scope })));
  }
  return lines.sort((a, b) => (a.dst < b.dst ? -1 : 1));
}

async function child(): Promise<void> {
  const io = loadNativeIo()!;
  const device = `slrt${process.pid % 100000}`;
  const tun = io.tunOpen(device);
  execFileSync("ip", ["link", "set", device, "up"]);
  try {
    const v4 = parsePrefix("10.91.1.0/24");
    const v6 = parsePrefix("fd91:1::/64");
    const host = parsePrefix("10.91.2.7");
    const replaced = [v4, v4, v6, host].map((p) => io.routeChange(true, device, p.family, p.bytes, p.length));
    const afterReplace = routes(device);
    const deleted = [v4, v4, v6, host].map((p) => io.routeChange(false, device, p.family, p.bytes, p.length));
    const afterDelete = routes(device);
    const noDevice = io.routeChange(true, "nosuchdev0", 4, v4.bytes, 24);
    const refusals: string[] = [];
    for (const call of [
      () => io.routeChange(true, device, 5 as 4, v4.bytes, 24),
      () => io.routeChange(true, device, 4, v6.bytes, 24),
      () => io.routeChange(true, device, 4, v4.bytes, 33),
      () => io.routeChange(true, "a-name-longer-than-15", 4, v4.bytes, 24),
    ]) {
      try {
        call();
        refusals.push("accepted");
      } catch (error) {
        refusals.push((error as Error).message);
      }
    }
    // The same sets through both paths of TunRoutes: a full tunnel (/0 as two /1), IPv6, a host.
    const wanted = ["0.0.0.0/0", "::/0", "10.91.3.0/24", "fd91:3::/48", "10.91.4.4"].map(parsePrefix);
    const native = new TunRoutes(device, undefined, [], (replace, dev, family, destination, length) => io.routeChange(replace, dev, family, destination, length));
    const started = performance.now();
    native.set(wanted);
    const microsecondsEach = ((performance.now() - started) * 1000) / 7;
    const nativeSet = routes(device);
    native.set([]);
    const nativeCleared = routes(device);
    const batch = new TunRoutes(device, undefined, []);
    batch.set(wanted);
    await batch.settled();
    const batchSet = routes(device);
    batch.set([]);
    await batch.settled();
    const batchCleared = routes(device);
    const report: Report = { replaced, afterReplace, deleted, afterDelete, noDevice, refusals, nativeSet, batchSet, nativeCleared, batchCleared, microsecondsEach };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    io.close(tun.fd);
  }
}

if (process.env[FLAG] === "1") {
  await child();
} else {
  describe("routes through rtnetlink", { skip: tunDeviceSkip() }, () => {
    const ns = useNamespace("slrt");
    test("replace, delete, refusals by errno, and the same routes as ip -batch", async () => {
      const report = await runChildInNamespace<Report>(ns, SELF, FLAG);
      assert.deepEqual(report.replaced, [0, 0, 0, 0], "a replace of an existing route is no error");
      assert.deepEqual(report.afterReplace, [
        // What `ip route replace PREFIX dev DEVICE` makes: protocol boot, link scope for IPv4, global for IPv6.
        { dst: "10.91.1.0/24", protocol: "boot", scope: "link" },
        { dst: "10.91.2.7", protocol: "boot", scope: "link" },
        { dst: "fd91:1::/64", protocol: "boot", scope: "global" },
      ]);
      assert.deepEqual(report.deleted, [0, constants.errno.ESRCH, 0, 0], "a second delete finds no route");
      assert.deepEqual(report.afterDelete, []);
      assert.equal(report.noDevice, constants.errno.ENODEV);
      assert.match(report.refusals[0]!, /family/);
      assert.match(report.refusals[1]!, /destination must be 4 bytes/);
      assert.match(report.refusals[2]!, /prefixLength/);
      assert.match(report.refusals[3]!, /device name/);
      assert.equal(report.nativeSet.length, 7, JSON.stringify(report.nativeSet));
      assert.deepEqual(report.nativeSet, report.batchSet, "rtnetlink makes the routes `ip route replace` makes");
      assert.deepEqual(report.nativeCleared, []);
      assert.deepEqual(report.batchCleared, []);
      console.log(`routeChange: ${report.microsecondsEach.toFixed(0)} µs a route`);
    });
  });
}
