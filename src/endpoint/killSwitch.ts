/**
 * The client's kill switch (`kill_switch = true`): from before the first
 * packet until a clean `sluice down` or SIGTERM, nothing leaves the machine
 * outside the tunnel except IKE and ESP to the gateway, loopback, and what
 * the config explicitly allows (say the local LAN).
 *
 * Why an nftables table of sluice's own: it is one atomic `nft -f`, it lives
 * in the kernel and so outlives the process — after SIGKILL, or while the
 * tunnel reconnects, the machine stays closed (fail closed) — and it can be
 * removed without touching anyone else's rules. Its chains hook output and
 * forward at a priority below the usual filter tables (-10), with policy
 * drop: a packet any rule accepts elsewhere still meets this one.
 *
 * IPv6 neighbour discovery is let through, or the machine could not reach
 * the IPv6 router that carries the ESP itself; ARP is not IP and nftables'
 * inet family never sees it.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";

export const KILL_SWITCH_TABLE = "sluice_killswitch";

export interface KillSwitchSpec {
  /** The TUN device the tunnel's traffic uses. */
  tun: string;
  /** The gateway's address and the ports IKE and ESP use there. */
  gateway: string;
  ports: number[];
  /** Prefixes that may be reached outside the tunnel ("192.168.1.0/24"). */
  allow: string[];
}

/** The ruleset text (`nft -f`): the table recreated whole, so applying it again replaces the old one. */
export function killSwitchRules(spec: KillSwitchSpec): string {
  const family = (address: string): "ip" | "ip6" => (isIP(address.split("/")[0]!) === 6 ? "ip6" : "ip");
  const ports = spec.ports.join(", ");
  const allow = spec.allow.map((prefix) => `    ${family(prefix)} daddr ${prefix} accept`);
  const quoted = JSON.stringify(spec.tun);
  return [
    `table inet ${KILL_SWITCH_TABLE}`,
    `delete table inet ${KILL_SWITCH_TABLE}`,
    `table inet ${KILL_SWITCH_TABLE} {`,
    "  chain output {",
    "    type filter hook output priority -10; policy drop;",
    '    oifname "lo" accept',
    `    oifname ${quoted} accept`,
    `    ${family(spec.gateway)} daddr ${spec.gateway} udp dport { ${ports} } accept`,
    "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
    ...allow,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority -10; policy drop;",
    `    oifname ${quoted} accept`,
    `    iifname ${quoted} accept`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Closes the machine but for the tunnel (replacing a table a killed sluice left). Throws naming nft's complaint. */
export function applyKillSwitch(spec: KillSwitchSpec): void {
  try {
    execFileSync("nft", ["-f", "-"], { input: killSwitchRules(spec), stdio: ["pipe", "ignore", "pipe"] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim();
    throw new Error(`kill switch: nft refused the rules: ${stderr.split("\n")[0]}`);
  }
}

/** Opens the machine again (`sluice down`, a clean stop). True when there was a table to remove. */
export function removeKillSwitch(): boolean {
  try {
    execFileSync("nft", ["delete", "table", "inet", KILL_SWITCH_TABLE], { stdio: ["ignore", "ignore", "pipe"] });
    return true;
  } catch {
    return false;
  }
}

/** Whether the kill switch is in force (a table left by a sluice that did not stop cleanly, say). */
export function killSwitchActive(): boolean {
  try {
    execFileSync("nft", ["list", "table", "inet", KILL_SWITCH_TABLE], { stdio: ["ignore", "ignore", "ignore"] });
    return true;
  } catch {
    return false;
  }
}
