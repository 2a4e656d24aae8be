// Metrics through prom-client, scraped from running endpoints and parsed with
// a strict Prometheus text parser (fixtures/promText.ts), no root needed:
//
// 1. Two portable endpoints in this process: after traffic, the per-SA
//    counters match the engine's, labelled from the live table (a child
//    installed at run time appears under its peer's name, a removed one
//    goes), the batch histograms add up to the packets and batches, the
//    process metrics are there, and a metric the control plane registers on
//    the endpoint's registry is served on the same page.
// 2. `sluice up --metrics` on a port something else listens on: one line on
//    stderr naming what failed (EADDRINUSE), exit status 1, no stack trace,
//    and the endpoint it had started is stopped cleanly ("down").
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { Counter } from "prom-client";
import { parseConfig } from "../../src/endpoint/config.js";
import { Endpoint } from "../../src/endpoint/endpoint.js";
import { serveMetrics, spiLabel } from "../../src/endpoint/metrics.js";
import { parsePrefix } from "../../src/endpoint/prefix.js";
import { CLI, ROOT, Proc } from "../fixtures/twoEndpoints.js";
import { waitUntil } from "../fixtures/observe.js";
import { histogramSeries, parsePromText, type Family } from "../fixtures/promText.js";
import { freePort, ipv4Udp as ipv4 } from "../fixtures/loopback.js";

const SECRET_VAR = "SLUICE_TEST_METRICS_SECRET";

function config(self: "x" | "y", ports: { x: number; y: number }, dir: string): string {
  const other = self === "x" ? "y" : "x";
  return `
keepalive.interval = 0
[local]
address = "127.0.0.1"
port = ${ports[self]}
[engine]
workers = 1
[state]
dir = "${join(dir, `state-${self}`)}"
[[peer]]
name = "${other}"
endpoint = "127.0.0.1:${ports[other]}"
selectors = ["10.81.${other === "x" ? 1 : 2}.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = ${self === "x" ? 0x5001 : 0x5002}
spi_in = ${self === "x" ? 0x5002 : 0x5001}
`;
}

/** One scrape, parsed strictly: a sample's value by name and labels (NaN when absent or ambiguous), and the histograms. */
class Scrape {
  readonly families: Map<string, Family>;
  constructor(readonly text: string) {
    this.families = parsePromText(text);
  }
  family(name: string): Family | undefined {
    return this.families.get(name);
  }
  value(name: string, labels: Record<string, string> = {}): number {
    const samples = this.family(name)?.samples.filter((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v)) ?? [];
    return samples.length === 1 ? samples[0]!.value : Number.NaN;
  }
  histogram(name: string, labels: Record<string, string>): { count: number; sum: number; buckets: Record<string, number> } | undefined {
    const family = this.family(name);
    const series = family && histogramSeries(family).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return series && { count: series.count, sum: series.sum, buckets: Object.fromEntries(series.buckets) };
  }
}

describe("metrics: a scrape of running endpoints (portable path, this process)", () => {
  let dir: string;
  let x: Endpoint;
  let y: Endpoint;
  let server: Server;
  let url: string;
  let received = 0;

  before(async () => {
    process.env[SECRET_VAR] = "3c".repeat(32);
    dir = mkdtempSync(join(tmpdir(), "sluice-metrics-"));
    const ports = { x: await freePort(), y: await freePort() };
    const path = { path: "portable" as const, reason: "the test asks for the portable path" };
    x = await Endpoint.start(parseConfig(config("x", ports, dir)), path, pino({ level: "silent" }), { onInnerPacket: () => {} });
    y = await Endpoint.start(parseConfig(config("y", ports, dir)), path, pino({ level: "silent" }), { onInnerPacket: () => void received++, processMetrics: false });
    server = await serveMetrics("127.0.0.1", 0, x.metrics);
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
  });

  after(async () => {
    server?.close();
    await x?.stop();
    await y?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async (): Promise<Scrape> => {
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return new Scrape(await response.text());
  };

  test("SA counters from the live table, batch histograms that add up, process metrics, and the control plane's own", async () => {
    // 300 packets x → y through the static peer, in rounds that fit a socket buffer.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100; i++) assert.equal(x.sendInner(ipv4("10.81.1.5", "10.81.2.9", 20 + i)), true);
      await waitUntil(() => received === (round + 1) * 100, `${(round + 1) * 100} packets at y`);
    }
    // A child installed at run time, for a peer the IKE shell would add.
    const peer = x.table.addPeer({ name: "gw-ike", address: { family: 4, address: "127.0.0.1", port: y.port }, keepalive: false });
    const key = (): Uint8Array => Uint8Array.from(randomBytes(32));
    const salt = (): Uint8Array => Uint8Array.from(randomBytes(4));
    const child = x.table.installChild(peer, {
      outbound: { spi: 0xd0000001, key: key(), salt: salt() }, inbound: { spi: 0xd0000002, key: key(), salt: salt() },
      esn: true, localSelectors: [], remoteSelectors: [parsePrefix("10.82.0.0/24")],
    });
    for (let i = 0; i < 7; i++) assert.equal(x.sendInner(ipv4("10.81.1.5", "10.82.0.1", 10)), true);
    await waitUntil(() => child.out.counters.packets === 7, "7 packets sealed by the child");
    // The control plane's own metric, on the same registry.
    const handshakes = new Counter({ name: "sluice_ike_handshakes_total", help: "IKE handshakes by result.", labelNames: ["result"], registers: [x.metrics.registry] });
    handshakes.inc({ result: "ok" }, 2);
    await x.engine.idle();

    const m = await scrape();
    const stats = x.engine.stats();
    const out = { peer: "y", spi: spiLabel(0x5001), direction: "out" };
    assert.equal(m.value("sluice_sa_packets_total", out), 300);
    assert.equal(m.value("sluice_sa_bytes_total", out), stats.sas.find((sa) => sa.spi === 0x5001)!.bytes);
    assert.equal(m.value("sluice_sa_sequence", out), 300);
    assert.equal(m.value("sluice_sa_packets_total", { peer: "gw-ike", spi: spiLabel(0xd0000001), direction: "out" }), 7);
    assert.equal(m.value("sluice_sa_packets_total", { peer: "gw-ike", spi: spiLabel(0xd0000002), direction: "in" }), 0);
    assert.equal(m.value("sluice_engine_batches_total", { direction: "seal" }), stats.seal.batches);
    assert.equal(m.value("sluice_engine_slots_free"), stats.slots.free);
    assert.equal(m.value("sluice_peers"), 2);
    assert.equal(m.value("sluice_child_sas", { outbound: "active" }), 2);
    assert.equal(m.value("sluice_ike_handshakes_total", { result: "ok" }), 2);
    assert.equal(m.family("sluice_sa_packets_total")!.type, "counter");
    assert.equal(m.family("sluice_engine_batch_packets")!.type, "histogram");
    // Histograms: one observation per batch, the sizes adding up to the packets sealed.
    const sizes = m.histogram("sluice_engine_batch_packets", { direction: "seal" })!;
    assert.equal(sizes.count, stats.seal.batches);
    assert.equal(sizes.sum, stats.seal.packets);
    assert.equal(sizes.buckets["+Inf"], sizes.count);
    const latency = m.histogram("sluice_engine_batch_latency_seconds", { direction: "seal" })!;
    assert.equal(latency.count, stats.seal.batches);
    assert.ok(latency.sum > 0 && latency.sum < 10, `latency sum ${latency.sum} s`);
    // Process metrics: memory, event-loop lag, GC.
    assert.ok(m.value("process_resident_memory_bytes") > 1e6);
    assert.ok(m.family("nodejs_eventloop_lag_seconds") !== undefined, "no event-loop lag");
    assert.ok(m.family("nodejs_gc_duration_seconds") !== undefined, "no GC metrics");

    // Removed from the table, gone from the page.
    x.table.removePeer(peer);
    const later = await scrape();
    assert.ok(Number.isNaN(later.value("sluice_sa_packets_total", { peer: "gw-ike", spi: spiLabel(0xd0000001), direction: "out" })), "a removed child's SA is still on the page");
    assert.equal(later.value("sluice_peers"), 1);
  });
});

describe("sluice up --metrics on a busy port", { skip: existsSync(CLI) ? false : `the CLI is not compiled (no ${CLI})` }, () => {
  test("one line naming what failed (EADDRINUSE), exit status 1, no stack trace, the endpoint stopped cleanly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-metrics-busy-"));
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const path = join(dir, "sluice.toml");
      writeFileSync(path, config("x", { x: await freePort(), y: 9 }, dir));
      const child = spawn(process.execPath, [CLI, "up", "-c", path, "--metrics", `127.0.0.1:${port}`], {
        cwd: ROOT, env: { ...process.env, SLUICE_IO: "portable", [SECRET_VAR]: "3c".repeat(32) }, stdio: ["ignore", "pipe", "pipe"],
      });
      const proc = new Proc(child, "sluice up (busy metrics port)");
      const exit = await proc.exit;
      assert.deepEqual(exit, { code: 1, signal: null }, `stderr: ${proc.stderr}`);
      const lines = proc.stderr.split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 1, `want one line on stderr, got:\n${proc.stderr}`);
      assert.match(lines[0]!, /^sluice: could not start: metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      const events = proc.jsonLines().map((line) => line.event);
      assert.ok(events.includes("up") && events.indexOf("down") > events.indexOf("up"), `the endpoint was not stopped cleanly: ${events.join(", ")}`);
    } finally {
      busy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
