/**
 * `sluice demo` (root): two network namespaces joined by a veth pair, a sluice
 * endpoint in each with a fresh random secret, a ping each way, an iperf3
 * transfer when iperf3 is installed, then the throughput and both sides'
 * counters. Everything it made is removed at the end, also on Ctrl-C.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { hasCommand } from "../endpoint/commandPath.js";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

interface Side {
  ns: string;
  outer: string;
  inner: string;
  innerNet: string;
  metricsPort: number;
  process?: ChildProcess;
}

function run(command: string, args: string[], options: { quiet?: boolean } = {}): string {
  return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", options.quiet ? "ignore" : "pipe"] });
}

function config(self: Side, peer: Side, stateDir: string, spiOut: number, spiIn: number): string {
  return `[local]
address = "${self.outer}"
port = 4500
[tun]
name = "sluice0"
addresses = ["${self.inner}/24"]
[state]
dir = "${stateDir}"
[[peer]]
name = "${peer.ns}"
endpoint = "${peer.outer}:4500"
selectors = ["${peer.innerNet}"]
secret_env = "SLUICE_DEMO_SECRET"
spi_out = ${spiOut}
spi_in = ${spiIn}
`;
}

function waitForUp(child: ChildProcess, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${name}: no "up" within 15 s:\n${seen}`)), 15000);
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      if (seen.includes('"event":"up"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${seen}`));
    });
  });
}

function metrics(side: Side): string {
  const script = `fetch("http://127.0.0.1:${side.metricsPort}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`;
  return run("ip", ["netns", "exec", side.ns, process.execPath, "-e", script]);
}

export async function demo(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write("sluice demo: needs root (it creates network namespaces and TUN devices)\n");
    return 2;
  }
  for (const tool of ["ip", "ping"]) {
    if (!hasCommand(tool)) {
      process.stderr.write(`sluice demo: needs '${tool}' (Debian: ${tool === "ip" ? "iproute2" : "iputils-ping"})\n`);
      return 2;
    }
  }
  const tag = `${process.pid % 100000}`;
  const a: Side = { ns: `sluice-demo-a-${tag}`, outer: "192.168.93.1", inner: "10.93.1.1", innerNet: "10.93.1.0/24", metricsPort: 9301 };
  const b: Side = { ns: `sluice-demo-b-${tag}`, outer: "192.168.93.2", inner: "10.93.2.1", innerNet: "10.93.2.0/24", metricsPort: 9302 };
  const dir = mkdtempSync(join(tmpdir(), "sluice-demo-"));
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    for (const side of [a, b]) side.process?.kill("SIGTERM");
    for (const side of [a, b]) {
      try {
        run("ip", ["netns", "pids", side.ns], { quiet: true }).split("\n").filter(Boolean).forEach((pid) => {
          try { process.kill(Number(pid), "SIGKILL"); } catch { /* gone */ }
        });
        run("ip", ["netns", "del", side.ns], { quiet: true });
      } catch {
        // Never created or already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const veth = [`sdva${tag}`.slice(0, 15), `sdvb${tag}`.slice(0, 15)];
    run("ip", ["netns", "add", a.ns]);
    run("ip", ["netns", "add", b.ns]);
    run("ip", ["link", "add", veth[0]!, "type", "veth", "peer", "name", veth[1]!]);
    for (const [side, dev] of [[a, veth[0]!], [b, veth[1]!]] as const) {
      run("ip", ["link", "set", dev, "netns", side.ns]);
      run("ip", ["-n", side.ns, "addr", "add", `${side.outer}/24`, "dev", dev]);
      run("ip", ["-n", side.ns, "link", "set", dev, "up"]);
      run("ip", ["-n", side.ns, "link", "set", "lo", "up"]);
    }
    const env = { ...process.env, SLUICE_DEMO_SECRET: randomBytes(32).toString("hex") };
    writeFileSync(join(dir, "a.toml"), config(a, b, join(dir, "state-a"), 0x5001, 0x6001));
    writeFileSync(join(dir, "b.toml"), config(b, a, join(dir, "state-b"), 0x6001, 0x5001));
    for (const side of [a, b]) {
      side.process = spawn("ip", ["netns", "exec", side.ns, process.execPath, MAIN, "up", "-c", join(dir, side === a ? "a.toml" : "b.toml"), "--metrics", `127.0.0.1:${side.metricsPort}`], { env, stdio: ["ignore", "pipe", "pipe"] });
    }
    await Promise.all([waitForUp(a.process!, "endpoint a"), waitForUp(b.process!, "endpoint b")]);
    console.log(`two endpoints up: ${a.ns} (${a.inner}) <-> ${b.ns} (${b.inner}), ESP in UDP over ${a.outer} <-> ${b.outer}\n`);
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const out = run("ip", ["netns", "exec", from.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to.inner]);
      console.log(`ping ${from.inner} -> ${to.inner}: ${out.trim().split("\n").slice(-2).join("; ")}`);
    }
    if (hasCommand("iperf3")) {
      const server = spawn("ip", ["netns", "exec", b.ns, "iperf3", "-s", "-1", "-B", b.inner], { stdio: "ignore" });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const json = JSON.parse(run("ip", ["netns", "exec", a.ns, "iperf3", "-c", b.inner, "-B", a.inner, "-t", "5", "-J"])) as { end: { sum_received: { bits_per_second: number } } };
      server.kill();
      console.log(`\niperf3 TCP through the tunnel, 5 s: ${(json.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s`);
    } else {
      console.log("\n(iperf3 is not installed: no throughput test; Debian: apt-get install iperf3)");
    }
    for (const side of [a, b]) {
      const wanted = /^sluice_(tun_offload_total|engine_batches_total|engine_inline_batches_total|sa_packets_total|sa_drops_total|engine_backpressure_total|engine_worker_restarts_total|endpoint_drops_total)/;
      console.log(`\ncounters of ${side.ns}:`);
      for (const line of metrics(side).split("\n")) if (wanted.test(line)) console.log(`  ${line}`);
    }
    return 0;
  } catch (error) {
    process.stderr.write(`sluice demo: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    cleanup();
    console.log("\nremoved the namespaces, devices and files the demo made");
  }
}
