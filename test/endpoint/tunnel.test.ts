// The VPN endpoint end to end: two `sluice up` processes in network
// namespaces of their own (test/fixtures/twoEndpoints.ts), joined by a veth.
// Pings go both ways over IPv4 and IPv6 inside the tunnel, from empty to
// exactly TUN-MTU-sized packets; a packet with no route in the config is
// dropped and counted; the wire carries nothing but ESP in UDP; 100 MB cross
// over TCP unchanged; SIGTERM shuts down cleanly with no key in any log. A bad
// config is refused with one line naming the key (no namespace needed).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { closeSync, createReadStream, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CLI, ROOT, missingRequirements, sleep, TwoEndpoints, type Capture, type Side } from "../fixtures/twoEndpoints.js";
import { decodeFrame, espPackets, ESP_MIN } from "../fixtures/pcap.js";

const MTU = 1400;
/** ICMP payload sizes whose inner packet is exactly the MTU: IPv4 20 + ICMP 8, IPv6 40 + ICMPv6 8. */
const MTU_PAYLOAD = { 4: MTU - 28, 6: MTU - 48 } as const;
/** The ESP-in-UDP payload an inner packet of `n` bytes becomes: header 8 + IV 8, padded n + 2 to 4 bytes, ICV 16. */
const espLength = (n: number): number => 16 + Math.ceil((n + 2) / 4) * 4 + 16;

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(hash.digest("hex")))
      .on("error", reject);
  });
}

const skip = missingRequirements();

describe("endpoint: a tunnel between two namespaces", { skip: skip ?? false }, () => {
  let f: TwoEndpoints;
  let wire: Capture;
  /** Pings this file sends whose inner packets are exactly the MTU (request and reply each). */
  let mtuSizedPackets = 0;

  before(async () => {
    f = await TwoEndpoints.create();
    // Everything on the A–B link while the ping tests run (both directions, whole frames).
    wire = await f.capture("a", f.veth.a, [], { name: "wire" });
  });

  after(async () => {
    await f?.cleanup();
  });

  test("ping works both ways over IPv4 and IPv6, with empty, default and MTU-sized packets", async () => {
    const target = { a: { 4: f.inner.a4, 6: f.inner.a6 }, b: { 4: f.inner.b4, 6: f.inner.b6 } };
    // The first packets may race the routes the endpoints just added: wait until each direction answers once.
    for (const [from, to] of [["a", "b"], ["b", "a"]] as const) {
      for (const family of [4, 6] as const) {
        let ok = false;
        for (let i = 0; i < 10 && !ok; i++) ok = (await f.ping(from, target[to][family], { count: 1, wait: 1 })).received === 1;
        assert.ok(ok, `no answer from ${to.toUpperCase()} (${target[to][family]}) to ${from.toUpperCase()} at all`);
      }
    }
    const cases: { from: Side; to: Side; family: 4 | 6; size: number }[] = [];
    for (const [from, to] of [["a", "b"], ["b", "a"]] as const) {
      for (const family of [4, 6] as const) {
        for (const size of [0, 56, MTU_PAYLOAD[family]]) cases.push({ from, to, family, size });
      }
    }
    const results = await Promise.all(cases.map((c) => f.ping(c.from, target[c.to][c.family], { count: 3, interval: 0.2, size: c.size, dontFragment: true })));
    cases.forEach((c, i) => {
      const result = results[i]!;
      assert.equal(result.received, 3, `ping -${c.family} -s ${c.size} from ${c.from.toUpperCase()} to ${c.to.toUpperCase()}: ${result.received}/3 answered\n${result.output}`);
      if (c.size === MTU_PAYLOAD[c.family]) mtuSizedPackets += 6;
    });
    // One byte more does not fit the TUN: so the packets above were exactly the MTU.
    for (const family of [4, 6] as const) {
      const over = await f.ping("a", target.b[family], { count: 1, size: MTU_PAYLOAD[family] + 1, dontFragment: true, wait: 1 });
      assert.equal(over.received, 0, `a ${MTU + 1}-byte IPv${family} packet went through an MTU ${MTU} TUN:\n${over.output}`);
      assert.match(over.output, /message too long/i, `a ${MTU + 1}-byte IPv${family} packet was not refused for its size:\n${over.output}`);
    }
  });

  test("a packet with no route in the config is dropped, counted as no-route, and nothing is sealed for it", async () => {
    // The kernel routes these prefixes into A's TUN; the endpoint's config has no peer for them.
    await f.run("ip", ["-n", f.ns.a, "-4", "route", "add", "10.91.99.0/24", "dev", f.tun.a]);
    await f.run("ip", ["-n", f.ns.a, "-6", "route", "add", "fd91:99::/64", "dev", f.tun.a]);
    const before = await f.metrics("a");
    const [v4, v6] = await Promise.all([
      f.ping("a", "10.91.99.1", { count: 3, interval: 0.2, wait: 1 }),
      f.ping("a", "fd91:99::1", { count: 3, interval: 0.2, wait: 1 }),
    ]);
    const afterwards = await f.metrics("a");
    assert.equal(v4.transmitted, 3, v4.output);
    assert.equal(v6.transmitted, 3, v6.output);
    assert.equal(v4.received + v6.received, 0, "a packet with no route was answered");
    const noRoute = afterwards.endpointDrops("no-route") - before.endpointDrops("no-route");
    // At least the six pings; the kernel's own IPv6 chatter on the TUN (router solicitations, MLD) has no route either.
    assert.ok(noRoute >= 6, `sluice_endpoint_drops_total{reason="no-route"} rose by ${noRoute}, want at least 6`);
    const sealed = afterwards.sa("sluice_sa_packets_total", f.spiAB, "out") - before.sa("sluice_sa_packets_total", f.spiAB, "out");
    assert.equal(sealed, 0, `${sealed} packets were sealed towards B while only unroutable packets were sent`);
  });

  test("the wire carries nothing but ESP in UDP between the endpoints' port 4500 (and ARP)", async (t) => {
    const { pcap, dropped } = await wire.stop();
    assert.equal(dropped, 0, "tcpdump dropped packets: the check below would be incomplete");
    const endpoints = new Set([f.outer.a, f.outer.b]);
    pcap.records.forEach((record, i) => {
      const frame = decodeFrame(pcap.linktype, record);
      if (frame.kind === "arp") return;
      const where = `frame ${i + 1} (${frame.kind} ${frame.src ?? "?"} → ${frame.dst ?? "?"}, protocol ${frame.protocol ?? "?"})`;
      assert.equal(frame.kind, "ipv4", `${where}: not IPv4 on an IPv4-only link`);
      assert.ok(endpoints.has(frame.src!) && endpoints.has(frame.dst!), `${where}: not between the two endpoints`);
      assert.equal(frame.fragment, false, `${where}: an IP fragment; ESP of an MTU-sized inner packet must fit the link`);
      assert.ok(frame.udp, `${where}: not UDP`);
      assert.ok(frame.udp.sport === 4500 && frame.udp.dport === 4500, `${where}: UDP ${frame.udp.sport} → ${frame.udp.dport}, not 4500 → 4500`);
      const length = frame.udp.payloadLength;
      if (length === 1 && frame.udp.payload[0] === 0xff) return; // NAT keepalive (RFC 3948 §2.3)
      assert.ok(length >= ESP_MIN, `${where}: a ${length}-byte UDP payload is no ESP packet`);
      const spi = frame.udp.payload.readUInt32BE(0);
      assert.equal(spi, frame.src === f.outer.a ? f.spiAB : f.spiBA, `${where}: SPI 0x${spi.toString(16)}`);
    });
    // Each ESP packet (UDP GSO super-packets cut into their segments) holds at most an MTU-sized inner packet.
    const largest = espLength(MTU);
    let mtu = 0;
    const packets = espPackets(pcap);
    for (const p of packets) {
      assert.ok(p.length <= largest, `an ESP packet of ${p.length} bytes (SPI 0x${p.spi.toString(16)} seq ${p.seq}, segment ${p.segment + 1} of ${p.segments}) holds more than the ${MTU}-byte MTU`);
      assert.equal((p.length - 32) % 4, 0, `ESP packet SPI 0x${p.spi.toString(16)} seq ${p.seq}: ciphertext of ${p.length - 32} bytes is not 4-aligned`);
      if (p.length === largest) mtu++;
    }
    t.diagnostic(`wire: ${pcap.records.length} frames, ${packets.length} ESP packets (${packets.filter((p) => p.segments > 1).length} of them in UDP GSO super-packets), ${mtu} of ${largest} bytes`);
    assert.ok(packets.length >= 12 * 6, `only ${packets.length} ESP packets on the wire for the pings of the first test`);
    assert.ok(mtu >= mtuSizedPackets, `${mtu} ESP packets of ${largest} bytes (an inner packet of exactly ${MTU}), want ${mtuSizedPackets}`);
  });

  test("100 MB over TCP through the tunnel arrive with the same SHA-256", { timeout: 60000 }, async (t) => {
    const size = 100_000_000;
    const source = join(f.dir, "source.bin");
    const received = join(f.dir, "received.bin");
    const hash = createHash("sha256");
    const fd = openSync(source, "w");
    const chunk = Buffer.alloc(1 << 20);
    for (let written = 0; written < size;) {
      const part = chunk.subarray(0, Math.min(chunk.length, size - written));
      randomFillSync(part);
      hash.update(part);
      writeSync(fd, part);
      written += part.length;
    }
    closeSync(fd);
    const sent = hash.digest("hex");
    const port = "5201";
    const sink = f.netTool(f.ns.b, "sink", f.inner.b4, port, received);
    await sink.waitForEvent("listening");
    const start = performance.now();
    const source_ = await f.netToolRun(f.ns.a, ["source", f.inner.b4, port, source], 50000);
    const done = await sink.waitForEvent("done", 20000);
    const seconds = (performance.now() - start) / 1000;
    assert.equal(source_.bytes, size);
    assert.equal(done.bytes, size, `${String(done.bytes)} of ${size} bytes arrived`);
    assert.equal(done.sha256, sent, "the receiver hashed other bytes than were sent");
    assert.equal(await sha256File(received), sent, "the file written on arrival differs from the one sent");
    const line = `100 MB A→B over TCP in the tunnel: ${seconds.toFixed(2)} s (${((size * 8) / seconds / 1e6).toFixed(0)} Mbit/s; receiver saw ${(Number(done.ms) / 1000).toFixed(2)} s from accept to end)`;
    t.diagnostic(line);
    const metrics = await f.metrics("b");
    assert.equal(metrics.get("sluice_engine_worker_restarts_total"), 0);
    rmSync(source);
    rmSync(received);
  });

  test("SIGTERM (A in the middle of TCP streams both ways, B idle): exit status 0, the TUN is gone, a down line, and no key or secret in any log", async () => {
    // Streams both ways, so that A has seal and open batches in flight when the signal comes.
    const sinkB = f.netTool(f.ns.b, "sink", f.inner.b4, "5202", "-");
    const sinkA = f.netTool(f.ns.a, "sink", f.inner.a4, "5203", "-");
    await Promise.all([sinkB.waitForEvent("listening"), sinkA.waitForEvent("listening")]);
    const sources = [f.netTool(f.ns.a, "source", f.inner.b4, "5202", "forever"), f.netTool(f.ns.b, "source", f.inner.a4, "5203", "forever")];
    await Promise.all(sources.map((p) => p.waitForEvent("streaming")));
    await sleep(500);
    const busy = await f.metrics("a");
    assert.ok(busy.sa("sluice_sa_packets_total", f.spiAB, "out") > 1000 && busy.sa("sluice_sa_packets_total", f.spiBA, "in") > 1000, "the streams did not get going");
    for (const side of ["a", "b"] as const) {
      const result = await f.stop(side, "SIGTERM");
      if (side === "a") for (const p of [...sources, sinkA, sinkB]) p.kill();
      const proc = f.endpoint[side]!;
      assert.equal(result.timedOut, false, `endpoint ${side} did not exit within 10 s of SIGTERM`);
      assert.deepEqual({ code: result.code, signal: result.signal }, { code: 0, signal: null }, `endpoint ${side} exit; stderr: ${proc.stderr}`);
      assert.equal(await f.tunExists(side), false, `TUN ${f.tun[side]} still exists after endpoint ${side} exited`);
      const events = proc.logs().map((line) => line.event);
      assert.ok(events.includes("up"), `no "up" line from endpoint ${side}`);
      assert.ok(events.includes("down"), `no "down" line from endpoint ${side}; log:\n${proc.stdout}`);
      assert.ok(events.indexOf("down") > events.indexOf("up"));
      const bad = proc.logs().filter((line) => typeof line.level === "number" && line.level >= 50);
      assert.deepEqual(bad, [], `error lines from endpoint ${side}`);
    }
    const forms = f.secretForms();
    for (const proc of f.history) {
      const text = proc.stdout + proc.stderr;
      assert.ok(text.length > 0);
      for (const form of forms) assert.ok(!text.includes(form.text), `${proc.description} logged ${form.what}`);
    }
    // Nor in what they leave on disk: the sequence reservations (named by a fingerprint of the key).
    for (const dir of [f.stateDir.a, f.stateDir.b]) {
      const names = readdirSync(dir);
      assert.ok(names.length >= 2, `no reservations in ${dir}`);
      for (const name of names) {
        const text = `${name}\n${readFileSync(join(dir, name), "utf8")}`;
        assert.match(readFileSync(join(dir, name), "utf8"), /^\d+\n$/, `${join(dir, name)} holds more than a number`);
        for (const form of forms) assert.ok(!text.includes(form.text), `${join(dir, name)} holds ${form.what}`);
      }
    }
  });
});

/* ------------------------------------------------------------------ bad configs: no root needed */

const GOOD = `
[local]
address = "192.168.91.1"

[tun]
name = "slbad0"
addresses = ["10.91.1.1/24"]
mtu = 1400

[state]
dir = "STATE"

[[peer]]
name = "b"
endpoint = "192.168.91.2:4500"
selectors = ["10.91.2.0/24"]
secret_env = "SLUICE_TEST_EP_SECRET"
spi_out = 0x1001
spi_in = 0x2001
`;

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env, timeout: 20000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("sluice up with a bad config", { skip: existsSync(CLI) ? false : `the CLI is not compiled (no ${CLI})` }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-badcfg-"));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: { name: string; edit: (text: string) => string; key: string }[] = [
    { name: "tun.mtu = 1", edit: (t) => t.replace("mtu = 1400", "mtu = 1"), key: "tun.mtu" },
    { name: "an unknown key", edit: (t) => t.replace("mtu = 1400", "mtu = 1400\ncolour = \"blue\""), key: "tun.colour" },
    { name: "a secret written inline", edit: (t) => t.replace('secret_env = "SLUICE_TEST_EP_SECRET"', `secret = "${"ab".repeat(32)}"`), key: "peer[0].secret" },
    { name: "equal SPIs", edit: (t) => t.replace("spi_in = 0x2001", "spi_in = 0x1001"), key: "peer[0].spi_in" },
    { name: "a selector that is no prefix", edit: (t) => t.replace('["10.91.2.0/24"]', '["10.91.2.0/33"]'), key: "peer[0].selectors[0]" },
    { name: "a port out of range", edit: (t) => t.replace('address = "192.168.91.1"', 'address = "192.168.91.1"\nport = 70000'), key: "local.port" },
    { name: "a replay window not a multiple of 64", edit: (t) => t.replace("spi_in = 0x2001", "spi_in = 0x2001\nreplay_window = 100"), key: "peer[0].replay_window" },
    { name: "an endpoint without a port", edit: (t) => t.replace('"192.168.91.2:4500"', '"192.168.91.2"'), key: "peer[0].endpoint" },
    { name: "a TUN name longer than IFNAMSIZ", edit: (t) => t.replace('"slbad0"', '"sluice-much-too-long"'), key: "tun.name" },
    { name: "text that is not TOML", edit: (t) => `${t}\n[[peer\n`, key: "(file)" },
  ];

  for (const c of cases) {
    test(`${c.name}: exit status 2 and one line naming ${c.key}`, async () => {
      const path = join(dir, `${c.key.replace(/[^a-z0-9]/gi, "_")}.toml`);
      const text = c.edit(GOOD.replace("STATE", join(dir, "state")));
      assert.notEqual(text, GOOD.replace("STATE", join(dir, "state")), "the edit did not apply");
      writeFileSync(path, text);
      const secret = "cd".repeat(32);
      const result = await runCli(["up", "-c", path], { ...process.env, SLUICE_TEST_EP_SECRET: secret });
      assert.equal(result.code, 2, `exit status ${result.code}; stderr: ${result.stderr}`);
      assert.equal(result.stdout, "", "a refused config printed something on stdout");
      const lines = result.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, `want one line on stderr, got:\n${result.stderr}`);
      assert.ok(lines[0]!.includes(c.key), `the line does not name ${c.key}: ${lines[0]}`);
      assert.ok(!result.stderr.includes(secret) && !result.stderr.includes("ab".repeat(32)), "the error line holds key material");
      assert.ok(!existsSync(join(dir, "state")), "a refused config created the state directory");
    });
  }

  test("a config file that does not exist: exit status 2 and one line naming it", async () => {
    const path = join(dir, "missing.toml");
    const result = await runCli(["up", "-c", path], process.env);
    assert.equal(result.code, 2, `exit status ${result.code}; stderr: ${result.stderr}`);
    const lines = result.stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, result.stderr);
    assert.ok(lines[0]!.includes(path), lines[0]);
  });
});
