/**
 * The endpoint's configuration (`sluice up -c sluice.toml`): parsed from
 * TOML, checked completely, with every error naming the key and the problem
 * ("peer[1].selectors[0]: "10.1.0.0/33" is not a prefix: …"). Keys are never
 * inline: a config names a file or an environment variable to read them from.
 *
 * @example
 * ```toml
 * [local]
 * address = "192.168.77.1"
 * port = 4500
 *
 * [tun]
 * name = "sluice0"
 * addresses = ["10.77.1.1/24"]
 * mtu = 1420                    # default: 1420 over IPv4, 1400 over IPv6 (see defaultMtu)
 *
 * [[peer]]
 * name = "site-b"
 * endpoint = "192.168.77.2:4500"
 * selectors = ["10.77.2.0/24"]
 * esn = true
 * replay_window = 4096
 * secret_file = "/etc/sluice/site-b.secret"   # or secret_env, or [peer.out]/[peer.in] keys
 * spi_out = 0x1001
 * spi_in = 0x2001
 * ```
 */
import { parse as parseToml } from "smol-toml";
import { isIP } from "node:net";
import { parsePrefix, type Prefix } from "./prefix.js";

/** Where key material comes from: a file or an environment variable. */
export type KeySource = { file: string } | { env: string };

export interface SaConfig {
  spi: number;
  /** 36 bytes: key ‖ salt (the RFC 7634 KEYMAT layout), as 72 hex digits. */
  keymat: KeySource;
}

export interface PeerConfig {
  name: string;
  address: string;
  port: number;
  selectors: Prefix[];
  esn: boolean;
  replayWindow: number;
  /** Either explicit SAs… */
  out?: SaConfig;
  in?: SaConfig;
  /** …or one shared secret from which both are derived (keys.ts). */
  secret?: KeySource;
  spiOut: number;
  spiIn: number;
}

export interface EndpointConfig {
  local: { address: string; port: number };
  tun: { name: string; addresses: Prefix[]; mtu: number };
  engine: { workers?: number };
  stateDir: string;
  keepaliveSeconds: number;
  peers: PeerConfig[];
}

/** A configuration error; `key` is the dotted path of the offending setting. */
export class ConfigError extends Error {
  constructor(readonly key: string, problem: string) {
    super(`${key}: ${problem}`);
    this.name = "ConfigError";
  }
}

type Table = Record<string, unknown>;

function table(value: unknown, key: string): Table {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(key, "must be a table");
  return value as Table;
}

function known(t: Table, key: string, allowed: string[]): void {
  for (const name of Object.keys(t)) {
    if (!allowed.includes(name)) throw new ConfigError(key ? `${key}.${name}` : name, `unknown setting (allowed: ${allowed.join(", ")})`);
  }
}

function str(t: Table, name: string, key: string, fallback?: string): string {
  const value = t[name] ?? fallback;
  if (typeof value !== "string" || value === "") throw new ConfigError(`${key}${name}`, value === undefined ? "is required" : "must be a non-empty string");
  return value;
}

function int(t: Table, name: string, key: string, min: number, max: number, fallback?: number): number {
  const value = t[name] ?? fallback;
  if (value === undefined) throw new ConfigError(`${key}${name}`, "is required");
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key}${name}`, `must be an integer from ${min} to ${max}, got ${typeof n === "number" ? n : typeof value}`);
  }
  return n;
}

function bool(t: Table, name: string, key: string, fallback: boolean): boolean {
  const value = t[name] ?? fallback;
  if (typeof value !== "boolean") throw new ConfigError(`${key}${name}`, "must be true or false");
  return value;
}

function address(value: string, key: string): string {
  if (isIP(value) === 0) throw new ConfigError(key, `"${value}" is not an IP address`);
  return value;
}

/** "192.0.2.1:4500" or "[2001:db8::1]:4500". */
function hostPort(value: string, key: string): { address: string; port: number } {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]+):(\d+)$/.exec(value);
  if (!match) throw new ConfigError(key, `"${value}" must be ADDRESS:PORT, with [brackets] around an IPv6 address`);
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw new ConfigError(key, `port ${port} is out of range`);
  return { address: address(match[1]!, key), port };
}

function keySource(t: Table, base: string, key: string, required: boolean): KeySource | undefined {
  const file = t[`${base}_file`];
  const env = t[`${base}_env`];
  if (t[base] !== undefined) throw new ConfigError(`${key}${base}`, `keys are never inline: use ${base}_file or ${base}_env`);
  if (file !== undefined && env !== undefined) throw new ConfigError(`${key}${base}_file`, `give ${base}_file or ${base}_env, not both`);
  if (file !== undefined) return { file: str(t, `${base}_file`, key) };
  if (env !== undefined) return { env: str(t, `${base}_env`, key) };
  if (required) throw new ConfigError(`${key}${base}_file`, `is required (or ${base}_env)`);
  return undefined;
}

function saConfig(value: unknown, key: string): SaConfig {
  const t = table(value, key);
  known(t, key, ["spi", "keymat", "keymat_file", "keymat_env"]);
  return { spi: int(t, "spi", `${key}.`, 256, 0xffffffff), keymat: keySource(t, "keymat", `${key}.`, true)! };
}

function peerConfig(value: unknown, key: string): PeerConfig {
  const t = table(value, key);
  known(t, key, ["name", "endpoint", "selectors", "esn", "replay_window", "secret", "secret_file", "secret_env", "spi_out", "spi_in", "out", "in"]);
  const k = `${key}.`;
  const { address: peerAddress, port } = hostPort(str(t, "endpoint", k), `${k}endpoint`);
  const rawSelectors = t.selectors;
  if (!Array.isArray(rawSelectors) || rawSelectors.length === 0) throw new ConfigError(`${k}selectors`, "must be a non-empty list of prefixes");
  const selectors = rawSelectors.map((text, i) => {
    try {
      return parsePrefix(text as string);
    } catch (error) {
      throw new ConfigError(`${k}selectors[${i}]`, (error as Error).message);
    }
  });
  const replayWindow = int(t, "replay_window", k, 64, 65536, 1024);
  if (replayWindow % 64 !== 0) throw new ConfigError(`${k}replay_window`, `must be a multiple of 64, got ${replayWindow}`);
  const secret = keySource(t, "secret", k, false);
  const hasSas = t.out !== undefined || t.in !== undefined;
  if (secret && hasSas) throw new ConfigError(`${k}secret_file`, "give either a shared secret or [peer.out]/[peer.in] keys, not both");
  let out: SaConfig | undefined;
  let inbound: SaConfig | undefined;
  let spiOut: number;
  let spiIn: number;
  if (secret) {
    spiOut = int(t, "spi_out", k, 256, 0xffffffff);
    spiIn = int(t, "spi_in", k, 256, 0xffffffff);
  } else {
    if (t.out === undefined) throw new ConfigError(`${k}out`, "is required (or a shared secret: secret_file / secret_env)");
    if (t.in === undefined) throw new ConfigError(`${k}in`, "is required (or a shared secret: secret_file / secret_env)");
    out = saConfig(t.out, `${k}out`);
    inbound = saConfig(t.in, `${k}in`);
    spiOut = out.spi;
    spiIn = inbound.spi;
  }
  if (spiOut === spiIn) throw new ConfigError(`${k}spi_in`, "the inbound and outbound SPIs must differ");
  return {
    name: str(t, "name", k, `${peerAddress}:${port}`), address: peerAddress, port, selectors,
    esn: bool(t, "esn", k, true), replayWindow, out, in: inbound, secret, spiOut, spiIn,
  };
}

/** Parses and checks a configuration file's text. */
export function parseConfig(text: string): EndpointConfig {
  let root: Table;
  try {
    root = parseToml(text) as Table;
  } catch (error) {
    throw new ConfigError("(file)", `not valid TOML: ${(error as Error).message.split("\n")[0]}`);
  }
  known(root, "", ["local", "tun", "engine", "state", "keepalive", "peer"]);
  const local = table(root.local ?? {}, "local");
  known(local, "local", ["address", "port"]);
  const tun = table(root.tun ?? {}, "tun");
  known(tun, "tun", ["name", "addresses", "mtu"]);
  const engine = table(root.engine ?? {}, "engine");
  known(engine, "engine", ["workers"]);
  const state = table(root.state ?? {}, "state");
  known(state, "state", ["dir"]);
  const keepalive = table(root.keepalive ?? {}, "keepalive");
  known(keepalive, "keepalive", ["interval"]);
  const rawAddresses = tun.addresses ?? [];
  if (!Array.isArray(rawAddresses)) throw new ConfigError("tun.addresses", "must be a list like [\"10.0.0.1/24\"]");
  const addresses = rawAddresses.map((text, i) => {
    try {
      return parsePrefix(text as string);
    } catch (error) {
      throw new ConfigError(`tun.addresses[${i}]`, (error as Error).message);
    }
  });
  const peers = root.peer;
  if (!Array.isArray(peers) || peers.length === 0) throw new ConfigError("peer", "at least one [[peer]] is required");
  const localAddress = address(str(local, "address", "local.", "0.0.0.0"), "local.address");
  const config: EndpointConfig = {
    local: { address: localAddress, port: int(local, "port", "local.", 0, 65535, 4500) },
    tun: { name: str(tun, "name", "tun.", "sluice0"), addresses, mtu: int(tun, "mtu", "tun.", 576, 9000, defaultMtu(localAddress)) },
    engine: engine.workers === undefined ? {} : { workers: int(engine, "workers", "engine.", 1, 64) },
    stateDir: str(state, "dir", "state.", "/var/lib/sluice"),
    keepaliveSeconds: int(keepalive, "interval", "keepalive.", 0, 3600, 20),
    peers: peers.map((peer, i) => peerConfig(peer, `peer[${i}]`)),
  };
  if (config.tun.name.length > 15) throw new ConfigError("tun.name", "must be at most 15 characters (IFNAMSIZ)");
  const spis = new Map<number, string>();
  config.peers.forEach((peer, i) => {
    for (const [which, spi] of [["spi_in", peer.spiIn], ["spi_out", peer.spiOut]] as const) {
      const seen = spis.get(spi);
      if (seen && which === "spi_in") throw new ConfigError(`peer[${i}].${which}`, `SPI ${spi} is already used by ${seen}`);
      spis.set(spi, `peer[${i}].${which}`);
    }
  });
  return config;
}

/**
 * The TUN MTU when the config gives none: the largest round size whose ESP
 * packets (UDP-encapsulated, RFC 3948; ChaCha20-Poly1305, RFC 7634: 8 bytes
 * of ESP header, 8 of IV, up to 3 of padding, 2 of trailer, 16 of ICV) fit a
 * 1500-byte path with room to spare, PPPoE's 1492 included: 1420 under an
 * IPv4 outer header (62-65 bytes of overhead, as WireGuard chose), 1400
 * under IPv6 (82-85 bytes).
 */
export function defaultMtu(localAddress: string): number {
  return localAddress.includes(":") ? 1400 : 1420;
}
