/**
 * The kernel routes that send inner packets into the TUN device, kept equal
 * to the prefixes the peer table routes (children's remote selectors and
 * traps) while the endpoint runs.
 *
 * With the native addon the difference is applied at once through
 * rtnetlink (native/src/route.c): microseconds a route, in the call that
 * changed the set, so a new child's routes are there before its first packet.
 *
 * Without it, in the background: a child is installed or removed from a
 * completion or an IKE exchange, and running `ip route` synchronously there
 * would stop the event loop (and the packets) for a process start each time
 * (forking Node took 20-30 ms on the 2-core bed). So the wanted set is
 * recorded at once and a single `ip -batch` process applies the difference;
 * changes that arrive while it runs are applied by the next one, in order,
 * coalesced: a route added and removed again meanwhile costs nothing.
 *
 * Either way a route that cannot be added is logged and tried again with the
 * next change.
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import type { Logger } from "pino";
import { parsePrefix, type Prefix } from "./prefix.js";

/**
 * One route into `device` replaced (`replace`) or deleted, synchronously:
 * 0, or the errno the kernel refused it with (NativeIo.routeChange).
 */
export type RouteChange = (replace: boolean, device: string, family: 4 | 6, destination: Uint8Array, prefixLength: number) => number;

export class TunRoutes {
  /** Routes in the kernel (as far as we know), by prefix text. */
  readonly #installed = new Map<string, Prefix>();
  #wanted = new Map<string, Prefix>();
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;

  /**
   * `initial`: the routes the device was brought up with (configured synchronously at start);
   * `kernel`: rtnetlink through the addon, else `ip -batch` in the background.
   */
  constructor(private readonly device: string, private readonly log: Logger | undefined, initial: readonly Prefix[], private readonly kernel?: RouteChange) {
    for (const prefix of initial) {
      this.#installed.set(prefix.text, prefix);
      this.#wanted.set(prefix.text, prefix);
    }
  }

  /** Makes `prefixes` the routed set; returns at once (see settled). */
  set(prefixes: readonly Prefix[]): void {
    this.#wanted = new Map(prefixes.map((prefix) => [prefix.text, prefix]));
    if (this.kernel !== undefined) {
      if (!this.#closed && this.#differs()) this.#applyNow(this.kernel);
      return;
    }
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    if (this.#differs()) this.#running = this.#apply();
  }

  /** Resolves once the kernel has the routes asked for so far (or their change failed and was logged). */
  async settled(): Promise<void> {
    while (this.#running !== null) await this.#running;
  }

  /** Routes go with the device: nothing more is changed after this. */
  close(): void {
    this.#closed = true;
  }

  #differs(): boolean {
    if (this.#wanted.size !== this.#installed.size) return true;
    for (const text of this.#wanted.keys()) if (!this.#installed.has(text)) return true;
    return false;
  }

  #applyNow(kernel: RouteChange): void {
    const change = (replace: boolean, prefix: Prefix): number => {
      for (const half of kernelPrefixes(prefix)) {
        const route = half === prefix.text ? prefix : parsePrefix(half);
        const errno = kernel(replace, this.device, route.family, route.bytes, route.length);
        // A route already gone (with its device, or by hand) is what a delete wants.
        if (errno !== 0 && (replace || errno !== constants.errno.ESRCH)) return errno;
      }
      return 0;
    };
    for (const prefix of [...this.#installed.values()]) {
      if (this.#wanted.has(prefix.text)) continue;
      change(false, prefix);
      this.#installed.delete(prefix.text);
    }
    for (const prefix of this.#wanted.values()) {
      if (this.#installed.has(prefix.text)) continue;
      const errno = change(true, prefix);
      if (errno === 0) this.#installed.set(prefix.text, prefix);
      else this.log?.warn({ event: "tun-route-error", device: this.device, prefix: prefix.text, error: errnoName(errno) }, "could not route a prefix into the TUN device");
    }
  }

  async #apply(): Promise<void> {
    try {
      do {
        this.#again = false;
        if (this.#closed) return;
        const add = [...this.#wanted.values()].filter((prefix) => !this.#installed.has(prefix.text));
        const remove = [...this.#installed.values()].filter((prefix) => !this.#wanted.has(prefix.text));
        if (add.length === 0 && remove.length === 0) continue;
        const line = (verb: string, prefix: Prefix): string => kernelPrefixes(prefix).map((text) => `route ${verb} ${text} dev ${this.device}`).join("\n");
        if ((await ipBatch([...add.map((p) => line("replace", p)), ...remove.map((p) => line("del", p))])) === null) {
          for (const prefix of add) this.#installed.set(prefix.text, prefix);
          for (const prefix of remove) this.#installed.delete(prefix.text);
          continue;
        }
        // Some line failed: one by one, to know which. A route that would not go is gone for us (the
        // device may have lost it already); one that would not come is tried again with the next change.
        for (const prefix of remove) {
          await ipBatch([line("del", prefix)]);
          this.#installed.delete(prefix.text);
        }
        for (const prefix of add) {
          const failure = await ipBatch([line("replace", prefix)]);
          if (failure === null) this.#installed.set(prefix.text, prefix);
          else this.log?.warn({ event: "tun-route-error", device: this.device, prefix: prefix.text, error: failure }, "could not route a prefix into the TUN device");
        }
      } while (this.#again);
    } finally {
      this.#running = null;
    }
  }
}

/**
 * The prefixes a route is installed as: a /0 (a full tunnel) as its two /1
 * halves, as WireGuard's tools do, so that it wins over the system's default
 * route without replacing it — the default route is still there for the
 * tunnel's own packets to the peer, and still there when the TUN goes.
 */
export function kernelPrefixes(prefix: Prefix): string[] {
  if (prefix.length !== 0) return [prefix.text];
  return prefix.family === 4 ? ["0.0.0.0/1", "128.0.0.0/1"] : ["::/1", "8000::/1"];
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** Runs `ip -force -batch -` with `lines`; null on success, else its error output. */
function ipBatch(lines: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn("ip", ["-force", "-batch", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", (error) => resolve(error.message));
    child.on("close", (code) => resolve(code === 0 ? null : stderr.trim() || `ip exited with status ${code}`));
    child.stdin.on("error", () => {}); // a failed start is reported by "error"
    child.stdin.end(`${lines.join("\n")}\n`);
  });
}
