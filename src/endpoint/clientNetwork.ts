/**
 * Client mode's view of the host (`vips` in `[peer.ike]`): the virtual IP
 * the gateway gave goes on the TUN device, the gateway itself stays
 * reachable outside the tunnel, and its DNS servers are applied where the
 * system takes them.
 *
 * - Addresses: `ip addr replace VIP/32 dev TUN` (/128 for IPv6); the
 *   kernel then picks the virtual IP as the source of what it routes into
 *   the TUN, which is what the gateway's narrowed selectors allow.
 * - The gateway stays reachable outside the tunnel through the host route
 *   the TUN's setup gave it (gatewayBypass, tunPort.ts), made before any
 *   full-tunnel route could swallow its IKE and ESP packets.
 * - DNS: systemd-resolved (`resolvectl dns TUN …` and the `~.` routing
 *   domain, so every name goes to the gateway's servers), else resolvconf
 *   (`resolvconf -a TUN.sluice`), else a log line saying neither is there.
 *
 * Every change is remembered and undone by remove() (a clean stop, a lost
 * tunnel before it reconnects, `sluice down`); what goes with the TUN
 * device (its addresses and routes, resolved's per-link DNS) goes anyway
 * when the process dies.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";
import type { Logger } from "pino";
import { hasCommand } from "./commandPath.js";

export interface ClientSettings {
  addresses: string[];
  dns: string[];
}

function run(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], encoding: "utf8" });
}

/** The route the kernel uses to reach `address` now, as `ip route` arguments ("via 192.168.1.1 dev eth0"). */
export function routeTo(address: string): string[] | undefined {
  try {
    const line = run("ip", [isIP(address) === 6 ? "-6" : "-4", "route", "get", address]).split("\n")[0] ?? "";
    const via = /\bvia (\S+)/.exec(line)?.[1];
    const dev = /\bdev (\S+)/.exec(line)?.[1];
    return dev === undefined ? undefined : [...(via ? ["via", via] : []), "dev", dev];
  } catch {
    return undefined;
  }
}

export class ClientNetwork {
  #applied: ClientSettings | undefined;
  #dns: "resolved" | "resolvconf" | undefined;

  constructor(private readonly tun: string, private readonly log: Logger) {}

  /** Puts the settings in force (replacing earlier ones). Failures are logged, never thrown: the tunnel works without DNS. */
  apply(settings: ClientSettings): void {
    const family = (a: string): string => (isIP(a) === 6 ? "-6" : "-4");
    const hostPrefix = (a: string): string => `${a}/${isIP(a) === 6 ? 128 : 32}`;
    // New addresses first, then the old ones that went: removing the last IPv4 address of a device makes
    // the kernel flush every IPv4 route through it (fib_disable_ip), and the TUN's routes are not ours to
    // make again. (Seen: a client that reconnected got its address back and lost its routes.)
    for (const address of settings.addresses) {
      try {
        run("ip", [family(address), "addr", "replace", hostPrefix(address), "dev", this.tun]);
      } catch (error) {
        this.log.warn({ event: "client-address-error", address, error: String((error as { stderr?: string }).stderr ?? error).trim() }, `could not put ${address} on ${this.tun}`);
      }
    }
    for (const address of this.#applied?.addresses ?? []) {
      if (settings.addresses.includes(address)) continue;
      try {
        run("ip", [family(address), "addr", "del", hostPrefix(address), "dev", this.tun]);
      } catch {
        // already gone
      }
    }
    // resolvconf -a and resolvectl dns replace what was there; only servers that are no more need undoing.
    if (settings.dns.length === 0) this.#removeDns();
    else this.#applyDns(settings.dns);
    this.#applied = settings;
    this.log.info({ event: "client-network", tun: this.tun, addresses: settings.addresses, dns: settings.dns, dnsManager: this.#dns ?? "none" },
      `virtual IP ${settings.addresses.join(", ")} on ${this.tun}${settings.dns.length ? `, DNS ${settings.dns.join(", ")} via ${this.#dns ?? "nothing (no systemd-resolved or resolvconf)"}` : ""}`);
  }

  #applyDns(servers: string[]): void {
    if (servers.length === 0) return;
    try {
      if (hasCommand("resolvectl")) {
        run("resolvectl", ["dns", this.tun, ...servers]);
        run("resolvectl", ["domain", this.tun, "~."]);
        this.#dns = "resolved";
      } else if (hasCommand("resolvconf")) {
        run("resolvconf", ["-a", `${this.tun}.sluice`], servers.map((s) => `nameserver ${s}`).join("\n") + "\n");
        this.#dns = "resolvconf";
      } else {
        this.log.warn({ event: "client-dns", servers }, "the gateway's DNS servers are not applied: neither systemd-resolved (resolvectl) nor resolvconf is installed");
      }
    } catch (error) {
      this.log.warn({ event: "client-dns-error", error: String((error as { stderr?: string }).stderr ?? error).trim() }, "could not apply the gateway's DNS servers");
    }
  }

  /** Undoes what apply() did. */
  remove(): void {
    if (this.#applied === undefined) return;
    const quiet = (command: string, args: string[]): void => {
      try {
        run(command, args);
      } catch {
        // already gone (with the TUN device, say)
      }
    };
    for (const address of this.#applied.addresses) quiet("ip", [isIP(address) === 6 ? "-6" : "-4", "addr", "del", `${address}/${isIP(address) === 6 ? 128 : 32}`, "dev", this.tun]);
    this.#removeDns();
    this.#applied = undefined;
  }

  #removeDns(): void {
    try {
      if (this.#dns === "resolved") run("resolvectl", ["revert", this.tun]);
      if (this.#dns === "resolvconf") run("resolvconf", ["-d", `${this.tun}.sluice`]);
    } catch {
      // already gone
    }
    this.#dns = undefined;
  }

  get settings(): ClientSettings | undefined {
    return this.#applied;
  }
}
