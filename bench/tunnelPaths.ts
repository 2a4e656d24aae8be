/**
 * The paths the tunnel suite measures, each set up on a fresh TwoHosts bed
 * (test/fixtures/interop/topology.ts: A 192.168.77.1 ── veth ── 192.168.77.2
 * B, inner 10.77.1.1 / 10.77.2.1 on lo) and torn down after: the bare veth
 * (the upper bound), two sluice endpoints, strongSwan with kernel-libipsec
 * (the interop bed's Charon), wireguard-go and OpenVPN. Every tunnel
 * carries 10.77.1.0/24 ⇄ 10.77.2.0/24, so iperf3 runs the same way
 * through all of them: client in A bound to 10.77.1.1, server in B on
 * 10.77.2.1.
 *
 * Peer settings, and why:
 * - strongSwan: IKEv2 PSK, ChaCha20-Poly1305 for IKE and ESP, ESP in UDP
 *   (libipsec cannot do raw ESP); TUN ipsec0, MTU 1400.
 * - wireguard-go: fresh keys, `-f` so that we own its pid (it forks away
 *   otherwise); its UAPI sockets live in /var/run/wireguard/<iface>.sock for
 *   all namespaces, hence run-unique interface names. Default MTU 1420.
 * - OpenVPN 2.6: static-key mode cannot use AEAD ciphers, so TLS
 *   peer-to-peer with fresh self-signed EC certificates pinned by
 *   --peer-fingerprint (the TLS server needs --dh none), data channel
 *   CHACHA20-POLY1305, --disable-dco to keep it in userspace.
 * - sluice: `sluice up` with static keys (a fresh secret in the environment),
 *   ChaCha20-Poly1305; sluice-aes256gcm16 the same with `cipher = "aes256gcm16"`.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Charon } from "../test/fixtures/interop/charon.js";
import { mustRun, mustRunIn, sleep } from "../test/fixtures/interop/command.js";
import { bedConfigs } from "../test/fixtures/interop/swanctl.js";
import { TwoHosts } from "../test/fixtures/interop/topology.js";
import { hasTool } from "../test/fixtures/netns.js";

/** A path, set up and carrying traffic. */
export interface RunningPath {
  bed: TwoHosts;
  /** iperf3's server address (in B) and the client's bind address (in A). */
  serverIp: string;
  bindIp: string;
  /** The processes whose CPU is measured: A's end first, then B's. */
  pids: number[];
  /** Takes everything down (processes, files, namespaces). */
  stop(): Promise<void>;
}

export interface TunnelPath {
  label: string;
  /** Commands it needs, with their Debian packages. */
  needs: Record<string, string>;
  start(): Promise<RunningPath>;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Starts a long-running process in a namespace, detached (its own process group), output to a file. */
function startIn(ns: string, command: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): { pid: number; ended: Promise<void> } {
  const child = spawn("ip", ["netns", "exec", ns, ...command], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  const keep = (text: string): void => {
    output += text;
    writeFileSync(logFile, output);
  };
  child.stdout!.setEncoding("utf8").on("data", keep);
  child.stderr!.setEncoding("utf8").on("data", keep);
  const ended = new Promise<void>((done) => child.on("close", () => done()));
  if (child.pid === undefined) throw new Error(`could not start ${command.join(" ")}`);
  return { pid: child.pid, ended };
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function pingThrough(bed: TwoHosts): Promise<void> {
  const ping = await bed.ping(bed.a.ns, bed.b.inner, { from: bed.a.inner, count: 3, interval: 0.2, wait: 2 });
  if (ping.received === 0) throw new Error(`no ping through the tunnel:\n${ping.output}`);
}

/** Sets up `body` on a fresh bed; on failure takes the bed down and rethrows. */
async function onFreshBed(body: (bed: TwoHosts, work: string) => Promise<Omit<RunningPath, "bed">>): Promise<RunningPath> {
  const bed = await TwoHosts.create();
  const work = mkdtempSync(join(tmpdir(), "sluice-bench-path-"));
  const cleanUp = async (): Promise<void> => {
    await bed.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const running = await body(bed, work);
    return { bed, ...running, stop: async () => { await running.stop(); await cleanUp(); } };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

const baseline: TunnelPath = {
  label: "baseline-veth",
  needs: {},
  start: () => onFreshBed(async (bed) => ({ serverIp: bed.b.address, bindIp: bed.a.address, pids: [], stop: async () => {} })),
};

/** sluice with static keys derived from one secret; `cipher` is the peers' `cipher` key (RFC 7634 or RFC 4106 ESP). */
const sluicePath = (label: string, cipher: string): TunnelPath => ({
  label,
  needs: {},
  start: () => onFreshBed(async (bed, work) => {
    const secretEnv = "SLUICE_BENCH_SECRET";
    const env = { ...process.env, [secretEnv]: randomBytes(32).toString("hex") };
    const config = (side: "a" | "b"): string => {
      const [me, peer, spiOut, spiIn] = side === "a" ? [bed.a, bed.b, 4097, 8193] : [bed.b, bed.a, 8193, 4097];
      const file = join(work, `${side}.toml`);
      writeFileSync(file, [
        "[local]", `address = "${me.address}"`, "[tun]", 'name = "sluice0"', "[state]", `dir = "${join(work, `state-${side}`)}"`,
        "[[peer]]", 'name = "peer"', `endpoint = "${peer.address}:4500"`, `selectors = ["${peer.site}"]`,
        `secret_env = "${secretEnv}"`, `spi_out = ${spiOut}`, `spi_in = ${spiIn}`, `cipher = "${cipher}"`, "",
      ].join("\n"));
      return file;
    };
    const cli = join(ROOT, "dist/src/cli/main.js");
    const ends = (["a", "b"] as const).map((side) => ({ side, log: join(work, `${side}.log`), ...startIn(bed[side].ns, [process.execPath, cli, "up", "-c", config(side)], join(work, `${side}.log`), env) }));
    for (const end of ends) await waitFor(`sluice endpoint ${end.side} to come up`, () => existsSync(end.log) && readFileSync(end.log, "utf8").includes('"event":"up"'));
    await pingThrough(bed);
    return {
      serverIp: bed.b.inner, bindIp: bed.a.inner, pids: ends.map((e) => e.pid),
      stop: async () => {
        for (const end of ends) process.kill(end.pid, "SIGTERM");
        await Promise.race([Promise.all(ends.map((e) => e.ended)), sleep(5000)]);
      },
    };
  }),
});

const sluice = sluicePath("sluice", "chacha20poly1305");
/** The same tunnel on AES-256-GCM ESP: the AES pass in the workers. */
const sluiceAes = sluicePath("sluice-aes256gcm16", "aes256gcm16");

const strongswan: TunnelPath = {
  label: "strongswan-libipsec",
  needs: { "charon-systemd": "charon-systemd", swanctl: "strongswan-swanctl" },
  start: () => onFreshBed(async (bed) => {
    const conf = bedConfigs(bed.a, bed.b);
    const responder = await Charon.start(bed.b.ns, { swanctl: conf.responder, logLevels: { default: 1, ike: 1, cfg: 1, chd: 1, net: 1, enc: 0, esp: 0 } });
    try {
      const initiator = await Charon.start(bed.a.ns, { swanctl: conf.initiator, logLevels: { default: 1, ike: 1, cfg: 1, chd: 1, net: 1, enc: 0, esp: 0 } });
      try {
        await initiator.initiate("net");
        await pingThrough(bed);
        return {
          serverIp: bed.b.inner, bindIp: bed.a.inner, pids: [initiator.pid!, responder.pid!],
          stop: async () => { await initiator.stop(); await responder.stop(); },
        };
      } catch (error) {
        await initiator.stop();
        throw error;
      }
    } catch (error) {
      await responder.stop();
      throw error;
    }
  }),
};

const wireguardGo: TunnelPath = {
  label: "wireguard-go",
  needs: { "wireguard-go": "wireguard-go", wg: "wireguard-tools" },
  start: () => onFreshBed(async (bed, work) => {
    // UAPI sockets are per file system, not per namespace: interface names must be unique on the machine.
    const ifaces = { a: `wga${bed.id}`.slice(0, 15), b: `wgb${bed.id}`.slice(0, 15) };
    const ports = { a: 51820, b: 51821 };
    const keys = { a: (await mustRun("wg", ["genkey"])).trim(), b: (await mustRun("wg", ["genkey"])).trim() };
    const pub = { a: (await mustRun("wg", ["pubkey"], { input: keys.a })).trim(), b: (await mustRun("wg", ["pubkey"], { input: keys.b })).trim() };
    const started: { pid: number; ended: Promise<void> }[] = [];
    const stop = async (): Promise<void> => {
      for (const s of started) process.kill(s.pid, "SIGTERM");
      await Promise.race([Promise.all(started.map((s) => s.ended)), sleep(5000)]);
      for (const iface of Object.values(ifaces)) rmSync(`/var/run/wireguard/${iface}.sock`, { force: true });
    };
    try {
      for (const side of ["a", "b"] as const) {
        const other = side === "a" ? "b" : "a";
        const iface = ifaces[side];
        // -f: stay in the foreground, so the pid is wireguard-go's.
        started.push(startIn(bed[side].ns, ["wireguard-go", "-f", iface], join(work, `${iface}.out`)));
        await waitFor(`wireguard-go's socket for ${iface}`, () => existsSync(`/var/run/wireguard/${iface}.sock`));
        const keyFile = join(work, `${side}.key`);
        writeFileSync(keyFile, keys[side], { mode: 0o600 });
        await mustRunIn(bed[side].ns, "wg", ["set", iface, "listen-port", String(ports[side]), "private-key", keyFile, "peer", pub[other], "endpoint", `${bed[other].address}:${ports[other]}`, "allowed-ips", bed[other].site]);
        await mustRun("ip", ["-n", bed[side].ns, "link", "set", iface, "up"]);
        await mustRun("ip", ["-n", bed[side].ns, "route", "add", bed[other].site, "dev", iface, "src", bed[side].inner]);
      }
      await pingThrough(bed);
    } catch (error) {
      await stop();
      throw error;
    }
    return { serverIp: bed.b.inner, bindIp: bed.a.inner, pids: started.map((s) => s.pid), stop };
  }),
};

const openvpn: TunnelPath = {
  label: "openvpn-udp-chacha",
  needs: { openvpn: "openvpn", openssl: "openssl" },
  start: () => onFreshBed(async (bed, work) => {
    const fingerprint = async (cert: string): Promise<string> =>
      (await mustRun("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"])).trim().split("=")[1]!;
    for (const side of ["a", "b"]) {
      await mustRun("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", `/CN=sl-${side}`, "-keyout", join(work, `${side}.key`), "-out", join(work, `${side}.crt`)]);
    }
    const tunnel = { a: "10.78.0.1", b: "10.78.0.2" };
    const started: { pid: number; ended: Promise<void> }[] = [];
    const stop = async (): Promise<void> => {
      for (const s of started) process.kill(s.pid, "SIGTERM");
      await Promise.race([Promise.all(started.map((s) => s.ended)), sleep(5000)]);
    };
    try {
      // The server (B) first, then the client (A).
      for (const side of ["b", "a"] as const) {
        const other = side === "a" ? "b" : "a";
        const role = side === "b" ? ["--tls-server", "--dh", "none"] : ["--tls-client"];
        started.push(startIn(bed[side].ns, [
          "openvpn", "--dev", "ovpn0", "--dev-type", "tun", "--disable-dco", "--proto", "udp",
          "--local", bed[side].address, "--lport", "1194", "--remote", bed[other].address, "--rport", "1194",
          "--ifconfig", tunnel[side], tunnel[other], ...role,
          "--cert", join(work, `${side}.crt`), "--key", join(work, `${side}.key`), "--peer-fingerprint", await fingerprint(join(work, `${other}.crt`)),
          "--data-ciphers", "CHACHA20-POLY1305", "--cipher", "CHACHA20-POLY1305", "--ping", "10", "--verb", "3",
        ], join(work, `${side}.log`)));
      }
      for (const side of ["a", "b"]) {
        const log = join(work, `${side}.log`);
        await waitFor(`OpenVPN ${side} to complete its initialization`, () => existsSync(log) && readFileSync(log, "utf8").includes("Initialization Sequence Completed"));
      }
      await mustRun("ip", ["-n", bed.a.ns, "route", "add", bed.b.site, "dev", "ovpn0", "src", bed.a.inner]);
      await mustRun("ip", ["-n", bed.b.ns, "route", "add", bed.a.site, "dev", "ovpn0", "src", bed.b.inner]);
      await pingThrough(bed);
    } catch (error) {
      await stop();
      throw error;
    }
    // started is [B, A]: A's end first in the CPU columns.
    return { serverIp: bed.b.inner, bindIp: bed.a.inner, pids: [started[1]!.pid, started[0]!.pid], stop };
  }),
};

/** Every path, in the order each round measures them. */
export const TUNNEL_PATHS: TunnelPath[] = [sluice, sluiceAes, baseline, strongswan, wireguardGo, openvpn];

/** Why a path cannot be measured here, or null. */
export function missingFor(path: TunnelPath): string | null {
  const missing = Object.entries({ iperf3: "iperf3", ...path.needs }).filter(([command]) => !hasTool(command));
  return missing.length ? `missing ${missing.map(([c, p]) => `${c} (Debian package ${p})`).join(", ")}` : null;
}
