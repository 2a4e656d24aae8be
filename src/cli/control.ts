/**
 * `sluice status`, `sluice initiate NAME`, `sluice terminate NAME`: clients
 * of the control socket of a running `sluice up` (endpoint/controlSocket.ts).
 *
 * `status` prints what `swanctl --list-sas` prints for charon: each IKE SA
 * with its state, identities, addresses, algorithms, SPIs, age and liveness
 * round trip, and under it each child SA with its SPIs, algorithms,
 * selectors and traffic; static-key peers follow. `--json` prints the raw
 * answer for scripts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { removeKillSwitch } from "../endpoint/killSwitch.js";
import { parseConfig } from "../endpoint/config.js";
import { requestControl, type ControlRequest } from "../endpoint/controlSocket.js";
import type { EndpointStatus } from "../endpoint/status.js";

/** Where `sluice up` puts its socket by default: /run/sluice/TUN.sock. */
const SOCKET_DIR = "/run/sluice";

/** The socket when none is named: the only one in /run/sluice. */
function defaultSocket(): string {
  let sockets: string[] = [];
  try {
    sockets = readdirSync(SOCKET_DIR).filter((name) => name.endsWith(".sock"));
  } catch {
    // no directory: no sluice running with a default socket
  }
  if (sockets.length === 1) return `${SOCKET_DIR}/${sockets[0]}`;
  if (sockets.length === 0) throw new Error(`no control socket in ${SOCKET_DIR} (is \`sluice up\` running? or give -s SOCKET / -c FILE)`);
  throw new Error(`several control sockets in ${SOCKET_DIR} (${sockets.join(", ")}): give -s SOCKET or -c FILE`);
}

/** Where the socket is: `-s PATH`, or the `[control] socket` of `-c FILE`, or the default. */
function socketPath(args: string[]): { path: string; rest: string[]; json: boolean } {
  let path: string | undefined;
  let json = false;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-s" || arg === "--socket") path = args[++i];
    else if (arg === "-c" || arg === "--config") {
      const config = parseConfig(readFileSync(args[++i]!, "utf8"));
      if (config.control.socket === null) throw new Error(`${args[i]} has no control socket ([control] socket = false)`);
      path = config.control.socket;
    } else if (arg === "--json") json = true;
    else rest.push(arg);
  }
  return { path: path ?? defaultSocket(), rest, json };
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  const minutes = Math.round(seconds / 60);
  return minutes % 60 === 0 ? `${minutes / 60}h` : `${Math.floor(minutes / 60)}h${minutes % 60}m`;
}

/** ", rekeying in 52m, expires in 1h" (swanctl's wording); nothing when neither is due. */
function timing(sa: { rekeyInSeconds?: number; expireInSeconds?: number }): string {
  return `${sa.rekeyInSeconds !== undefined ? `, rekeying in ${age(sa.rekeyInSeconds)}` : ""}${sa.expireInSeconds !== undefined ? `, expires in ${age(sa.expireInSeconds)}` : ""}`;
}

/** The swanctl-like text of a status answer. */
export function formatStatus(status: Partial<EndpointStatus>): string {
  const lines: string[] = [];
  for (const sa of status.ike ?? []) {
    const ours = sa.role === "initiator" ? "i" : "r";
    lines.push(`${sa.peer}: #${sa.id}, ${sa.state.toUpperCase()}, IKEv2, ${sa.spiI}_i${ours === "i" ? "*" : ""} ${sa.spiR}_r${ours === "r" ? "*" : ""}`);
    lines.push(`  local  '${sa.localId ?? "?"}' @ ${sa.local}${sa.natLocal ? " (behind NAT)" : ""}`);
    lines.push(`  remote '${sa.remoteId ?? "?"}' @ ${sa.remote}${sa.natRemote ? " (behind NAT)" : ""}`);
    if (sa.remoteCertificate !== undefined) lines.push(`  remote certificate "${sa.remoteCertificate}"`);
    // A gateway's client: the addresses it leased from a pool; a client: the ones the gateway gave us.
    if (sa.virtualIps && sa.virtualIps.length > 0) lines.push(`  ${sa.role === "responder" ? "remote" : "local"} virtual IP ${sa.virtualIps.join(", ")}`);
    if (sa.ike) lines.push(`  ${sa.ike}`);
    lines.push(`  ${sa.state === "established" ? "established" : "created"} ${age(sa.ageSeconds)} ago${timing(sa)}${sa.lastRttMs !== undefined ? `, liveness RTT ${sa.lastRttMs.toFixed(2)} ms` : ""}`);
    for (const child of sa.children) {
      lines.push(`  ${sa.peer}{${child.id}}: ${child.state === "installed" ? "INSTALLED" : child.state.toUpperCase()}, TUNNEL, ESP in UDP SPIs: ${child.spiIn}_i ${child.spiOut}_o`);
      lines.push(`    ${child.esp}, ${age(child.ageSeconds)} ago${timing(child)}`);
      lines.push(`    in  ${child.spiIn}, ${child.bytesIn} bytes, ${child.packetsIn} packets`);
      lines.push(`    out ${child.spiOut}, ${child.bytesOut} bytes, ${child.packetsOut} packets`);
      lines.push(`    local  ${child.localTs.join(" ")}`);
      lines.push(`    remote ${child.remoteTs.join(" ")}`);
    }
  }
  for (const peer of status.staticPeers ?? []) {
    lines.push(`${peer.name}: STATIC, ${peer.address}, SPIs: ${peer.spiIn}_i ${peer.spiOut}_o`);
    lines.push(`  in  ${peer.bytesIn} bytes, ${peer.packetsIn} packets; out ${peer.bytesOut} bytes, ${peer.packetsOut} packets`);
  }
  if (lines.length === 0) lines.push("no SAs");
  return lines.join("\n");
}

/**
 * `sluice down`: stops a running endpoint cleanly (its control socket) and
 * opens the machine again: the kill switch's table, and what a killed
 * client left behind (its resolvconf entry), are removed whether or not an
 * endpoint was running.
 */
export async function down(args: string[]): Promise<number> {
  let tun = "sluice0";
  const configAt = args.indexOf("-c") >= 0 ? args.indexOf("-c") : args.indexOf("--config");
  if (configAt >= 0) tun = parseConfig(readFileSync(args[configAt + 1]!, "utf8")).tun.name;
  let path: string | undefined;
  try {
    path = socketPath(args).path;
  } catch {
    // no socket anywhere: nothing running to stop
  }
  if (path !== undefined) {
    try {
      const answer = await requestControl(path, { command: "stop" }, 15_000);
      if (answer.ok) {
        for (let waited = 0; waited < 15_000 && existsSync(path); waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
        console.log("sluice stopped");
      }
    } catch {
      // not running (a stale socket, or killed): the clean-up below is all there is to do
    }
  }
  if (removeKillSwitch()) console.log("kill switch removed");
  try {
    execFileSync("resolvconf", ["-d", `${tun}.sluice`], { stdio: "ignore" });
  } catch {
    // no resolvconf, or no entry of ours
  }
  return 0;
}

/** Runs a control command; returns the exit status. */
export async function control(command: "status" | "initiate" | "terminate" | "rekey", args: string[]): Promise<number> {
  const { path, rest, json } = socketPath(args);
  let request: ControlRequest;
  if (command === "status") request = { command };
  else {
    const name = rest.find((arg) => !arg.startsWith("-"));
    if (name === undefined) throw new Error(`${command} needs a peer name: sluice ${command} NAME`);
    request = command === "rekey" ? { command, name, ike: rest.includes("--ike") } : { command, name };
  }
  const answer = await requestControl(path, request);
  if (!answer.ok) {
    process.stderr.write(`sluice: ${answer.error}\n`);
    return 1;
  }
  if (json) console.log(JSON.stringify(answer, null, 2));
  else if (command === "status") console.log(formatStatus(answer as Partial<EndpointStatus>));
  else console.log(String(answer.message ?? "ok"));
  return 0;
}
