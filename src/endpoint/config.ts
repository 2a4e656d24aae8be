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
 * cipher = "aes256gcm16"        # default "chacha20poly1305"; or "aes128gcm16"
 * replay_window = 4096
 * secret_file = "/etc/sluice/site-b.secret"   # or secret_env, or [peer.out]/[peer.in] keys
 * spi_out = 0x1001
 * spi_in = 0x2001
 * ```
 */
import { parse as parseToml } from "smol-toml";
import { parsePrefix, type Prefix } from "./prefix.js";
import { ESP_CIPHERS, type EspCipher } from "../kernel/cipher.js";
import { ConfigError, address, bool, choice, hostPort, int, keySource, known, prefixList, str, table, type KeySource, type Table } from "./configValues.js";
import { ikePeerEntry, ikeSettings, poolEntry, type IkePeerEntry, type IkeSettings, type PoolEntry } from "./ikeConfig.js";

export { ConfigError, type KeySource } from "./configValues.js";
export type { IkePeerEntry, IkeSettings, PoolEntry } from "./ikeConfig.js";

export interface SaConfig {
  spi: number;
  /** key ‖ salt (RFC 7634 §2, RFC 4106 §8.1): 36 bytes as 72 hex digits; 20 bytes (40 digits) for aes128gcm16. */
  keymat: KeySource;
}

export interface PeerConfig {
  name: string;
  address: string;
  port: number;
  selectors: Prefix[];
  esn: boolean;
  /** The AEAD of both SAs (`cipher`, default "chacha20poly1305"); sets the key length. */
  cipher: EspCipher;
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
  /** `max_sas`: SA records in the engine (two per child SA, four while one is rekeyed); default 4096, about 4.5 MB. */
  engine: { workers?: number; maxSas: number };
  stateDir: string;
  keepaliveSeconds: number;
  /** Peers with static keys. */
  peers: PeerConfig[];
  /** Peers whose SAs IKEv2 negotiates (a [[peer]] with [peer.ike]). */
  ikePeers: IkePeerEntry[];
  ike: IkeSettings;
  /**
   * The control socket of `sluice status` / `initiate` / `terminate`: the
   * `[control] socket` path (null: `socket = false`, none), or by default
   * /run/sluice/TUN.sock (`explicit` false: a default that is taken, say by a
   * second endpoint in another namespace, is skipped with a warning).
   */
  control: { socket: string | null; explicit: boolean };
  /** `[[pool]]`: virtual IPs for road warriors. */
  pools: PoolEntry[];
  /**
   * `[client]`: a road-warrior client's kill switch (killSwitch.ts): nothing
   * leaves outside the tunnel but IKE/ESP to its gateways, loopback and `allow`.
   */
  client: { killSwitch: boolean; allow: Prefix[] };
}

function saConfig(value: unknown, key: string): SaConfig {
  const t = table(value, key);
  known(t, key, ["spi", "keymat", "keymat_file", "keymat_env"]);
  return { spi: int(t, "spi", `${key}.`, 256, 0xffffffff), keymat: keySource(t, "keymat", `${key}.`, true)! };
}

function peerConfig(t: Table, key: string): PeerConfig {
  known(t, key, ["name", "endpoint", "selectors", "esn", "cipher", "replay_window", "secret", "secret_file", "secret_env", "spi_out", "spi_in", "out", "in"]);
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
    esn: bool(t, "esn", k, true), cipher: choice(t, "cipher", k, ESP_CIPHERS, "chacha20poly1305"), replayWindow, out, in: inbound, secret, spiOut, spiIn,
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
  known(root, "", ["local", "tun", "engine", "state", "keepalive", "ike", "control", "pool", "client", "peer"]);
  const local = table(root.local ?? {}, "local");
  known(local, "local", ["address", "port"]);
  const tun = table(root.tun ?? {}, "tun");
  known(tun, "tun", ["name", "addresses", "mtu"]);
  const engine = table(root.engine ?? {}, "engine");
  known(engine, "engine", ["workers", "max_sas"]);
  const state = table(root.state ?? {}, "state");
  known(state, "state", ["dir"]);
  const keepalive = table(root.keepalive ?? {}, "keepalive");
  known(keepalive, "keepalive", ["interval"]);
  const control = table(root.control ?? {}, "control");
  known(control, "control", ["socket"]);
  const client = table(root.client ?? {}, "client");
  known(client, "client", ["kill_switch", "allow"]);
  if (root.pool !== undefined && !Array.isArray(root.pool)) throw new ConfigError("pool", "must be an array of tables ([[pool]])");
  const pools = ((root.pool as unknown[] | undefined) ?? []).map((value, i) => poolEntry(value, `pool[${i}]`));
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
  const staticPeers: PeerConfig[] = [];
  const ikePeers: IkePeerEntry[] = [];
  /** Each peer's key ("peer[3]"), by the peer. */
  const keyOf = new Map<PeerConfig | IkePeerEntry, string>();
  peers.forEach((value, i) => {
    const key = `peer[${i}]`;
    const t = table(value, key);
    const peer = t.ike === undefined ? staticPeers[staticPeers.push(peerConfig(t, key)) - 1]! : ikePeers[ikePeers.push(ikePeerEntry(t, key)) - 1]!;
    keyOf.set(peer, key);
  });
  const localAddress = address(str(local, "address", "local.", "0.0.0.0"), "local.address");
  const config: EndpointConfig = {
    local: { address: localAddress, port: int(local, "port", "local.", 0, 65535, 4500) },
    tun: { name: str(tun, "name", "tun.", "sluice0"), addresses, mtu: int(tun, "mtu", "tun.", 576, 9000, defaultMtu(localAddress)) },
    engine: { ...(engine.workers === undefined ? {} : { workers: int(engine, "workers", "engine.", 1, 64) }), maxSas: int(engine, "max_sas", "engine.", 16, 65536, 4096) },
    stateDir: str(state, "dir", "state.", "/var/lib/sluice"),
    keepaliveSeconds: int(keepalive, "interval", "keepalive.", 0, 3600, 20),
    peers: staticPeers,
    ikePeers,
    ike: ikeSettings(root.ike),
    control: control.socket === false ? { socket: null, explicit: true }
      : control.socket === undefined ? { socket: `/run/sluice/${str(tun, "name", "tun.", "sluice0")}.sock`, explicit: false }
        : { socket: str(control, "socket", "control."), explicit: true },
    pools,
    client: { killSwitch: bool(client, "kill_switch", "client.", false), allow: prefixList(client, "allow", "client.", true) },
  };
  if (config.tun.name.length > 15) throw new ConfigError("tun.name", "must be at most 15 characters (IFNAMSIZ)");
  const spis = new Map<number, string>();
  config.peers.forEach((peer) => {
    const key = keyOf.get(peer)!;
    for (const [which, spi] of [["spi_in", peer.spiIn], ["spi_out", peer.spiOut]] as const) {
      const seen = spis.get(spi);
      if (seen && which === "spi_in") throw new ConfigError(`${key}.${which}`, `SPI ${spi} is already used by ${seen}`);
      spis.set(spi, `${key}.${which}`);
    }
  });
  const poolNames = new Set<string>();
  pools.forEach((pool, i) => {
    if (poolNames.has(pool.name)) throw new ConfigError(`pool[${i}].name`, `"${pool.name}" is already the name of another pool`);
    poolNames.add(pool.name);
  });
  for (const peer of ikePeers) {
    peer.pools.forEach((name, i) => {
      if (!poolNames.has(name)) throw new ConfigError(`${keyOf.get(peer)!}.ike.pools[${i}]`, `no [[pool]] named "${name}"`);
    });
  }
  if (config.client.killSwitch && !ikePeers.some((peer) => peer.endpoint)) throw new ConfigError("client.kill_switch", "needs an IKE peer with an endpoint (the gateway whose IKE and ESP may pass)");
  // Reloads, logs, metrics and the control socket name peers: one name, one peer.
  const names = new Map<string, string>();
  for (const [peer, key] of keyOf) {
    const seen = names.get(peer.name);
    if (seen) throw new ConfigError(`${key}.name`, `"${peer.name}" is already the name of ${seen}`);
    names.set(peer.name, key);
  }
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
