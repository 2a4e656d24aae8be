#!/usr/bin/env node
/**
 * The `sluice` command.
 *
 *   sluice up -c sluice.toml [--metrics HOST:PORT]   run the VPN endpoint
 *   sluice status | initiate NAME | terminate NAME | rekey NAME [--ike]   ask a running endpoint (its control socket)
 *   sluice demo                                      two endpoints between two namespaces
 *   sluice version
 *
 * Logs are JSON lines (pino) on stdout, never with a key in them. A bad
 * config exits with status 2 and one line naming the key and the problem; an
 * endpoint that cannot start (no /dev/net/tun, no CAP_NET_ADMIN, a UDP or a
 * metrics port in use) exits with status 1 and one line naming what failed,
 * having released what it had set up (TUN device, sockets, state).
 *
 * `up` runs on the I/O path selectIoPath() picks and the endpoint logs which
 * and why ("io-path"). On the portable path (no addon, or SLUICE_IO=portable)
 * there is no TUN device: the endpoint runs, warns ("no-tun"), sends and
 * counts keepalives and counts what it opens as "no-inner-port", having no
 * inner side to forward to; that path is for applications that embed the
 * endpoint (sluice/endpoint: sendInner, onInnerPacket).
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { parseConfig, ConfigError } from "../endpoint/config.js";
import { Endpoint } from "../endpoint/endpoint.js";
import { serveMetrics } from "../endpoint/metrics.js";
import { serveControl } from "../endpoint/controlSocket.js";
import { applyKillSwitch, killSwitchSpec, removeKillSwitch } from "../endpoint/killSwitch.js";
import { selectIoPath } from "../io/index.js";
import { batchedStdout } from "./logDestination.js";
import { demo } from "./demo.js";
import { control, down } from "./control.js";

const USAGE = `usage: sluice <command>

commands:
  up -c FILE [--metrics HOST:PORT]   run the endpoint: a TUN device, ESP in UDP (RFC 3948)
                                     (SLUICE_IO=portable: node:dgram and no TUN device)
  status [--json]                    the running endpoint's IKE and child SAs (as swanctl --list-sas)
  initiate NAME                      negotiate with IKE peer NAME now; waits for its child SA
  terminate NAME                     delete the IKE SAs with peer NAME
  rekey NAME [--ike]                 rekey peer NAME's child SAs (or, with --ike, its IKE SA) now
  down                               stop the running endpoint cleanly and remove its kill switch
                                     (also after sluice was killed: the kill switch outlives it)
                                     (these three take -s SOCKET or -c FILE; default: the one /run/sluice/*.sock)
  demo                               (root) two endpoints in two network namespaces: ping, iperf3, counters
  version                            print the version
  help                               this text

benchmarks: npm run bench (from the repository)`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

function fail(message: string, status = 2): never {
  process.stderr.write(`sluice: ${message}\n`);
  process.exit(status);
}

/** An error's first line: the addon's and Node's errors name the cause there (MSG_TUN_MISSING, "listen EADDRINUSE: …"). */
function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] ?? message;
}

async function up(args: string[]): Promise<void> {
  let configPath: string | undefined;
  let metrics: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-c" || args[i] === "--config") configPath = args[++i];
    else if (args[i] === "--metrics") metrics = args[++i];
    else fail(`up: unknown argument ${args[i]}\n\n${USAGE}`);
  }
  if (!configPath) fail("up: -c FILE is required");
  let text: string;
  try {
    text = readFileSync(configPath, "utf8");
  } catch (error) {
    fail(`cannot read ${configPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let config;
  try {
    config = parseConfig(text);
  } catch (error) {
    if (error instanceof ConfigError) fail(`${configPath}: ${error.message}`);
    throw error;
  }
  let metricsAt: { host: string; port: number } | undefined;
  if (metrics !== undefined) {
    const match = /^(.*):(\d+)$/.exec(metrics);
    if (!match) fail(`--metrics must be HOST:PORT, got ${metrics}`);
    metricsAt = { host: match[1]!.replace(/^\[|\]$/g, ""), port: Number(match[2]) };
  }
  // Lines go out batched (within 10 ms) and bounded (logDestination.ts); flushed before every exit.
  const destination = batchedStdout();
  const log = pino({ base: { service: "sluice" } }, destination.stream);
  process.on("exit", () => destination.flushSync());
  if (config.client.killSwitch) {
    // Before the first packet: from here until a clean stop (or `sluice down`) nothing leaves outside the tunnel.
    try {
      applyKillSwitch(killSwitchSpec(config));
    } catch (error) {
      fail(`could not start: ${firstLine(error)}`, 1);
    }
    log.info({ event: "kill-switch", tun: config.tun.name, allow: config.client.allow.map((p) => p.text) }, "kill switch on: nothing leaves outside the tunnel but IKE/ESP to the gateway and what [client] allow names");
  }
  let endpoint: Endpoint;
  try {
    endpoint = await Endpoint.start(config, selectIoPath(), log);
  } catch (error) {
    // Endpoint.start released what it had opened before it threw; a kill switch stays (fail closed).
    fail(`could not start: ${firstLine(error)}${config.client.killSwitch ? " (the kill switch stays on: sluice down removes it)" : ""}`, 1);
  }
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (metricsAt) {
    try {
      server = await serveMetrics(metricsAt.host, metricsAt.port, endpoint.metrics);
    } catch (error) {
      // The TUN device, the socket and the exact sequence counters are released and saved by a clean stop.
      await endpoint.stop();
      fail(`could not start: metrics on ${metrics}: ${firstLine(error)}`, 1);
    }
    log.info({ event: "metrics", listen: metrics }, "serving metrics");
  }
  let controlServer: Awaited<ReturnType<typeof serveControl>> | undefined;
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "signal", signal }, "shutting down");
    server?.close();
    controlServer?.close();
    await endpoint.stop();
    // A clean stop opens the machine again; SIGKILL leaves the kill switch in force (fail closed).
    if (config.client.killSwitch && removeKillSwitch()) log.info({ event: "kill-switch", removed: true }, "kill switch off");
    process.exit(0);
  };
  const socket = config.control.socket;
  if (socket !== null) {
    try {
      controlServer = await serveControl(socket, {
        status: () => endpoint.status(),
        initiate: (name) => endpoint.initiate(name),
        terminate: (name) => endpoint.terminate(name),
        rekey: (name, ike) => endpoint.rekey(name, ike),
        down: () => {
          setImmediate(() => void stop("sluice down"));
          return Promise.resolve({ ok: true, message: "stopping" });
        },
      });
      log.info({ event: "control", socket }, "control socket ready");
    } catch (error) {
      if (config.control.explicit) {
        server?.close();
        await endpoint.stop();
        fail(`could not start: control socket ${socket}: ${firstLine(error)}`, 1);
      }
      log.warn({ event: "control", socket, error: firstLine(error) }, `no control socket (the default ${socket} is not available: set [control] socket)`);
    }
  }

  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", () => {
    log.info({ event: "signal", signal: "SIGHUP" }, "reloading peers");
    const failed = (error: unknown): void => {
      log.error({ event: "reload-failed", error: error instanceof Error ? error.message : String(error) }, "reload failed; the running peers are kept");
    };
    try {
      endpoint.reload(parseConfig(readFileSync(configPath, "utf8"))).catch(failed);
    } catch (error) {
      failed(error);
    }
  });
}

const [command = "help", ...rest] = process.argv.slice(2);
switch (command) {
  case "up":
    await up(rest);
    break;
  case "status":
  case "initiate":
  case "terminate":
  case "rekey":
    try {
      process.exit(await control(command, rest));
    } catch (error) {
      fail(firstLine(error), 1);
    }
    break;
  case "down":
    try {
      process.exit(await down(rest));
    } catch (error) {
      fail(firstLine(error), 1);
    }
    break;
  case "demo":
    process.exit(await demo());
    break;
  case "version":
  case "--version":
    console.log(version());
    break;
  case "help":
  case "--help":
  case "-h":
    console.log(USAGE);
    break;
  default:
    fail(`unknown command '${command}'\n\n${USAGE}`);
}
