/**
 * The IKE part of `sluice.toml`: a `[[peer]]` with an `[peer.ike]` table
 * negotiates its SAs with IKEv2 instead of taking static keys, and the
 * `[ike]` table sets the daemon-wide timing.
 *
 * @example
 * ```toml
 * [ike]
 * port = 500                    # IKE's port; NAT-T (and ESP) use [local].port, 4500
 * retransmit_timeout = 4.0      # strongSwan's defaults: 4 s × 1.8^n, 5 retransmissions
 * cookie_threshold = 30         # DoS defence (RFC 7296 §2.6): cookies from 30 half-open IKE SAs on
 * block_threshold = 5           # half-open IKE SAs per source address
 * init_limit_half_open = 1000   # half-open IKE SAs in all
 * init_rate_per_source = 20     # IKE_SA_INIT requests per second processed per source address
 * fragmentation = true          # RFC 7383 IKE fragments
 * fragment_size = 1280          # largest IP datagram an IKE message goes in before it is fragmented
 *
 * [[peer]]
 * name = "site-b"
 * endpoint = "192.168.77.2"     # port 500, floating to 4500; omit on a responder that accepts any address
 * selectors = ["10.77.2.0/24"]  # the peer's side (TSr as initiator)
 * local_selectors = ["10.77.1.0/24"]
 * [peer.ike]
 * local_id = "a.sluice.test"
 * remote_id = "b.sluice.test"   # or a pattern: "%any", "*@example.org" (psk_file then holds "ID SECRET" lines)
 * psk_file = "/etc/sluice/site-b.psk"   # or psk_env
 * proposals = ["chacha20poly1305-prfsha256-x25519"]
 * esp_proposals = ["chacha20poly1305-esn"]
 * start = "start"               # start | trap | none
 * dpd = 30                      # seconds; 0 = off
 * dpd_action = "restart"        # clear | restart
 * rekey_time = 14400            # the IKE SA: rekeyed after 4 h (minus up to rand_time), deleted after life_time
 * [peer.child]
 * rekey_time = 3600             # child SAs: rekeyed hourly, or after rekey_bytes / rekey_packets
 * [[peer.children]]             # another child SA with selectors of its own (CREATE_CHILD_SA)
 * selectors = ["10.78.2.0/24"]
 * local_selectors = ["10.78.1.0/24"]
 * rekey_bytes = 0               # 0: no volume limit
 *
 * [[peer]]                      # certificates (credentials.ts): each direction "psk" or "pubkey" of its own
 * name = "road-warriors"
 * selectors = ["10.100.0.0/16"]
 * local_selectors = ["10.77.2.0/24"]
 * [peer.ike]
 * auth = "pubkey"               # default "pubkey" with cert_file, else "psk"
 * cert_file = "/etc/sluice/gw.pem"      # ours first, then intermediates to send
 * key_file = "/etc/sluice/gw.key"       # mode 0600 or stricter
 * remote_auth = "pubkey"        # default "pubkey" with ca_files, else "psk"
 * ca_files = ["/etc/sluice/ca.pem"]
 * crl_file = "/etc/sluice/ca.crl"
 * remote_id = "C=CH, O=example, CN=*"   # default "%any" with remote_auth pubkey; local_id: the certificate's subject
 * ```
 *
 * Everything is checked here, before anything starts: identities, proposal
 * keywords (against the ciphers the data plane has), selectors, and that an
 * action that must initiate has an endpoint to initiate to, and that each
 * direction's authentication has what it needs. The PSK itself is read
 * when the endpoint starts (pskSource.ts) and at every handshake;
 * certificates, keys, CAs and CRLs when it starts and on reload
 * (credentials.ts).
 */
import { parseIdentity, parseIdentityPattern } from "../ike/identity.js";
import { DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, parseEspProposal, parseIkeProposal, type Cipher } from "../ike/proposals.js";
import type { DpdAction, StartAction } from "../ike/config.js";
import type { ChildLifetime, Lifetime } from "../ike/lifetimes.js";
import { parsePrefix, type Prefix } from "./prefix.js";
import { parsePoolRange } from "../ike/addressPool.js";
import { ConfigError, address, bool, choice, int, keySource, known, num, prefixList, str, stringList, table, type KeySource, type Table } from "./configValues.js";
import { DEFAULT_DOS } from "../ike/dosGuard.js";
import { DEFAULT_FRAGMENTATION } from "../ike/fragments.js";

/**
 * The ESP ciphers the engine runs: ChaCha20-Poly1305 (RFC 7634, transform 28)
 * and AES-GCM with a 16-byte ICV (RFC 4106, transform 20) with 128- and
 * 256-bit keys.
 */
export const DATA_PLANE_CIPHERS: readonly Cipher[] = [{ id: 28, keyBits: 256 }, { id: 20, keyBits: 256 }, { id: 20, keyBits: 128 }];

/** A `[[peer]]` with `[peer.ike]`. */
export interface IkePeerEntry {
  name: string;
  /** Where to initiate to (IKE port); absent on a responder that accepts any address. */
  endpoint?: { address: string; port: number };
  /** The peer's NAT-T port (RFC 3948): 4500. */
  natTPort: number;
  /** The peer's side. */
  selectors: Prefix[];
  /** Our side. */
  localSelectors: Prefix[];
  /** More child SAs, a selector pair each (`[[peer.children]]`). */
  moreChildren: { selectors: Prefix[]; localSelectors: Prefix[] }[];
  replayWindow: number;
  /** Absent with `auth = "pubkey"`: the certificate's subject DN. */
  localId: string | undefined;
  remoteId: string;
  /** Absent when neither direction uses a PSK. */
  psk: KeySource | undefined;
  /** How we authenticate, and how the peer must. */
  auth: "psk" | "pubkey";
  remoteAuth: "psk" | "pubkey";
  certFile: string | undefined;
  keyFile: string | undefined;
  /** RSA keys: sign with RSASSA-PSS. */
  rsaPss: boolean;
  sendCert: "always" | "ifasked" | "never";
  caFiles: string[];
  crlFile: string | undefined;
  proposals: string[];
  espProposals: string[];
  start: StartAction;
  dpdSeconds: number;
  dpdAction: DpdAction;
  ikeLifetime: Lifetime;
  childLifetime: ChildLifetime;
  /** A client: the virtual IP families it asks the gateway for (`vips = ["0.0.0.0", "::"]`). */
  vips: (4 | 6)[];
  /** A gateway: the `[[pool]]`s its clients' virtual IPs come from. */
  pools: string[];
}

/** A `[[pool]]`: virtual IPs for road warriors (RFC 7296 §2.19), and the DNS servers handed out with them. */
export interface PoolEntry {
  name: string;
  addresses: string[];
  dns: string[];
}

/** The `[ike]` table. */
export interface IkeSettings {
  /** The IKE port (500); the NAT-T port is [local].port. */
  port: number;
  retransmitTimeoutMs: number;
  retransmitBase: number;
  retransmitTries: number;
  halfOpenTimeoutMs: number;
  /** After a refused (re)connect of a `start` or `restart` peer, the next try waits this long. */
  retryDelayMs: number;
  /** DoS defence (src/ike/dosGuard.ts); 0 turns a limit off. */
  cookieThreshold: number;
  blockThreshold: number;
  initLimitHalfOpen: number;
  initRatePerSource: number;
  /** RFC 7383 (src/ike/fragments.ts). */
  fragmentation: boolean;
  fragmentSize: number;
}

export const IKE_PEER_KEYS = ["name", "endpoint", "selectors", "local_selectors", "replay_window", "ike", "child", "children"];
const LIFETIME_KEYS = ["rekey_time", "life_time", "rand_time"];
const AUTH_KEYS = ["auth", "remote_auth", "cert_file", "key_file", "rsa_pss", "send_cert", "ca_files", "crl_file"];
const IKE_KEYS = [...AUTH_KEYS, "local_id", "remote_id", "psk", "psk_file", "psk_env", "proposals", "esp_proposals", "start", "dpd", "dpd_action", "nat_t_port", "vips", "pools", ...LIFETIME_KEYS];
const CHILD_KEYS = [...LIFETIME_KEYS, "rekey_bytes", "life_bytes", "rekey_packets", "life_packets"];

/**
 * strongSwan's lifetime settings: `rekey_time` (0: never on time),
 * `life_time` (default rekey_time + 10%), `rand_time` (default life_time −
 * rekey_time), in seconds; for child SAs also bytes and packets (0: none).
 */
function lifetime(t: Table, key: string, rekeyDefault: number): Lifetime {
  const rekey = num(t, "rekey_time", key, 0, 10 * 365 * 86400, rekeyDefault);
  const life = num(t, "life_time", key, 0, 10 * 365 * 86400, Math.round(rekey * 1.1));
  if (rekey > 0 && life > 0 && life <= rekey) throw new ConfigError(`${key}life_time`, `must be longer than rekey_time (${rekey} s), or 0`);
  const rand = num(t, "rand_time", key, 0, 10 * 365 * 86400, life > rekey ? life - rekey : 0);
  if (rekey > 0 && rand >= rekey) throw new ConfigError(`${key}rand_time`, `must be shorter than rekey_time (${rekey} s)`);
  return { rekeyMs: rekey * 1000, lifeMs: life * 1000, randMs: rand * 1000 };
}

function childLifetime(value: unknown, key: string): ChildLifetime {
  const t = table(value ?? {}, key);
  known(t, key, CHILD_KEYS);
  const k = `${key}.`;
  const volume = (name: string): number => num(t, name, k, 0, Number.MAX_SAFE_INTEGER, 0);
  const limits = { rekeyBytes: volume("rekey_bytes"), lifeBytes: volume("life_bytes"), rekeyPackets: volume("rekey_packets"), lifePackets: volume("life_packets") };
  if (limits.lifeBytes > 0 && limits.rekeyBytes >= limits.lifeBytes) throw new ConfigError(`${k}rekey_bytes`, "must be below life_bytes");
  if (limits.lifePackets > 0 && limits.rekeyPackets >= limits.lifePackets) throw new ConfigError(`${k}rekey_packets`, "must be below life_packets");
  return { ...lifetime(t, k, 3600), ...limits };
}

/** "192.0.2.1", "192.0.2.1:500", "[2001:db8::1]:500" or "2001:db8::1": an IKE endpoint, port 500 unless given. */
function ikeEndpoint(value: string, key: string): { address: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  const v4 = /^([^:]+)(?::(\d+))?$/.exec(value);
  const [host, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : v4 ? [v4[1]!, v4[2]] : [value, undefined];
  const port = portText === undefined ? 500 : Number(portText);
  if (port < 1 || port > 65535) throw new ConfigError(key, `port ${port} is out of range`);
  return { address: address(host, key), port };
}

/** `vips = ["0.0.0.0", "::"]` (strongSwan's spelling): the families of virtual IP to ask for. */
function virtualIpFamilies(ike: Table, ik: string): (4 | 6)[] {
  if (ike.vips === undefined) return [];
  return [...new Set(stringList(ike, "vips", ik, []).map((text, i) => {
    if (text === "0.0.0.0") return 4 as const;
    if (text === "::") return 6 as const;
    throw new ConfigError(`${ik}vips[${i}]`, `"${text}": ask for "0.0.0.0" (any IPv4 address) and/or "::" (any IPv6 address); the gateway chooses`);
  }))];
}

/** A `[[pool]]` table. */
export function poolEntry(value: unknown, key: string): PoolEntry {
  const t = table(value, key);
  known(t, key, ["name", "addresses", "dns"]);
  const k = `${key}.`;
  const addresses = stringList(t, "addresses", k, []);
  addresses.forEach((text, i) => {
    try {
      parsePoolRange(text);
    } catch (error) {
      throw new ConfigError(`${k}addresses[${i}]`, (error as Error).message);
    }
  });
  const dns = t.dns === undefined ? [] : stringList(t, "dns", k, []);
  dns.forEach((text, i) => address(text, `${k}dns[${i}]`));
  return { name: str(t, "name", k), addresses, dns };
}

/** `[[peer.children]]`: each table one more child SA with `selectors` and `local_selectors`. */
function moreChildren(value: unknown, key: string): { selectors: Prefix[]; localSelectors: Prefix[] }[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError(key, "must be an array of tables ([[peer.children]])");
  return value.map((item, i) => {
    const t = table(item, `${key}[${i}]`);
    known(t, `${key}[${i}]`, ["selectors", "local_selectors"]);
    return { selectors: prefixList(t, "selectors", `${key}[${i}].`), localSelectors: prefixList(t, "local_selectors", `${key}[${i}].`) };
  });
}

/** A `[[peer]]` table that has an `ike` table. */
export function ikePeerEntry(t: Table, key: string): IkePeerEntry {
  known(t, key, IKE_PEER_KEYS);
  const k = `${key}.`;
  const ike = table(t.ike, `${k}ike`);
  const ik = `${k}ike.`;
  known(ike, `${k}ike`, IKE_KEYS);
  const endpoint = t.endpoint === undefined ? undefined : ikeEndpoint(str(t, "endpoint", k), `${k}endpoint`);
  const replayWindow = int(t, "replay_window", k, 64, 65536, 1024);
  if (replayWindow % 64 !== 0) throw new ConfigError(`${k}replay_window`, `must be a multiple of 64, got ${replayWindow}`);
  const auth = authentication(ike, ik);
  const localId = auth.auth === "pubkey" && ike.local_id === undefined ? undefined : str(ike, "local_id", ik);
  const remoteId = str(ike, "remote_id", ik, auth.remoteAuth === "pubkey" ? "%any" : undefined);
  try {
    if (localId !== undefined) parseIdentity(localId);
  } catch (error) {
    throw new ConfigError(`${ik}local_id`, (error as Error).message);
  }
  try {
    parseIdentityPattern(remoteId);
  } catch (error) {
    throw new ConfigError(`${ik}remote_id`, (error as Error).message);
  }
  const proposals = stringList(ike, "proposals", ik, DEFAULT_IKE_PROPOSALS);
  proposals.forEach((text, i) => {
    try {
      parseIkeProposal(text);
    } catch (error) {
      throw new ConfigError(`${ik}proposals[${i}]`, (error as Error).message);
    }
  });
  const espProposals = stringList(ike, "esp_proposals", ik, DEFAULT_ESP_PROPOSALS);
  espProposals.forEach((text, i) => {
    try {
      parseEspProposal(text, DATA_PLANE_CIPHERS);
    } catch (error) {
      throw new ConfigError(`${ik}esp_proposals[${i}]`, (error as Error).message);
    }
  });
  const vips = virtualIpFamilies(ike, ik);
  const pools = ike.pools === undefined ? [] : stringList(ike, "pools", ik, []);
  if (vips.length > 0 && pools.length > 0) throw new ConfigError(`${ik}pools`, "a peer either asks for virtual IPs (vips, a client) or hands them out (pools, a gateway), not both");
  const start = choice(ike, "start", ik, ["start", "trap", "none"] as const, endpoint ? "start" : "none");
  const dpdAction = choice(ike, "dpd_action", ik, ["clear", "restart"] as const, "clear");
  if (endpoint === undefined && start !== "none") throw new ConfigError(`${ik}start`, `"${start}" needs an endpoint to initiate to (${k}endpoint)`);
  if (endpoint === undefined && dpdAction === "restart") throw new ConfigError(`${ik}dpd_action`, `"restart" needs an endpoint to initiate to (${k}endpoint)`);
  return {
    name: str(t, "name", k, endpoint ? endpoint.address : undefined),
    endpoint,
    natTPort: int(ike, "nat_t_port", ik, 1, 65535, 4500),
    selectors: prefixList(t, "selectors", k),
    // A client asking for virtual IPs cannot name its own side yet: any address, narrowed by the gateway to the ones it gives.
    localSelectors: vips.length > 0 && t.local_selectors === undefined
      ? vips.map((family) => parsePrefix(family === 4 ? "0.0.0.0/0" : "::/0"))
      : prefixList(t, "local_selectors", k),
    moreChildren: moreChildren(t.children, `${k}children`),
    replayWindow,
    localId,
    remoteId,
    psk: keySource(ike, "psk", ik, auth.auth === "psk" || auth.remoteAuth === "psk"),
    ...auth,
    proposals,
    espProposals,
    start,
    dpdSeconds: int(ike, "dpd", ik, 0, 86400, 30),
    dpdAction,
    vips,
    pools,
    ikeLifetime: lifetime(ike, ik, 14400),
    childLifetime: childLifetime(t.child, `${k}child`),
  };
}

/**
 * `auth`, `remote_auth` and the files each needs: a certificate and its key
 * for `auth = "pubkey"`, CA certificates for `remote_auth = "pubkey"`. The
 * files are read when the endpoint starts (credentials.ts).
 */
function authentication(ike: Table, ik: string): Pick<IkePeerEntry, "auth" | "remoteAuth" | "certFile" | "keyFile" | "rsaPss" | "sendCert" | "caFiles" | "crlFile"> {
  const optional = (name: string): string | undefined => (ike[name] === undefined ? undefined : str(ike, name, ik));
  const certFile = optional("cert_file");
  const keyFile = optional("key_file");
  const caFiles = ike.ca_files === undefined ? [] : stringList(ike, "ca_files", ik, []);
  const crlFile = optional("crl_file");
  const auth = choice(ike, "auth", ik, ["psk", "pubkey"] as const, certFile !== undefined ? "pubkey" : "psk");
  const remoteAuth = choice(ike, "remote_auth", ik, ["psk", "pubkey"] as const, caFiles.length > 0 ? "pubkey" : "psk");
  if (auth === "pubkey" && certFile === undefined) throw new ConfigError(`${ik}cert_file`, `is required with auth = "pubkey" (our certificate, then intermediates)`);
  if (auth === "pubkey" && keyFile === undefined) throw new ConfigError(`${ik}key_file`, `is required with auth = "pubkey" (the certificate's private key)`);
  if (auth === "psk" && (certFile !== undefined || keyFile !== undefined)) throw new ConfigError(`${ik}${certFile !== undefined ? "cert_file" : "key_file"}`, `is only for auth = "pubkey"`);
  if (remoteAuth === "pubkey" && caFiles.length === 0) throw new ConfigError(`${ik}ca_files`, `is required with remote_auth = "pubkey" (the CAs the peer's certificate must lead to)`);
  if (remoteAuth === "psk" && (caFiles.length > 0 || crlFile !== undefined)) throw new ConfigError(`${ik}${crlFile !== undefined && caFiles.length === 0 ? "crl_file" : "ca_files"}`, `is only for remote_auth = "pubkey"`);
  return {
    auth,
    remoteAuth,
    certFile,
    keyFile,
    rsaPss: bool(ike, "rsa_pss", ik, false),
    sendCert: choice(ike, "send_cert", ik, ["ifasked", "always", "never"] as const, "ifasked"),
    caFiles,
    crlFile,
  };
}

/** The `[ike]` table. */
export function ikeSettings(value: unknown): IkeSettings {
  const t = table(value ?? {}, "ike");
  known(t, "ike", [
    "port", "retransmit_timeout", "retransmit_base", "retransmit_tries", "half_open_timeout", "retry_delay",
    "cookie_threshold", "block_threshold", "init_limit_half_open", "init_rate_per_source", "fragmentation", "fragment_size",
  ]);
  const settings: IkeSettings = {
    port: int(t, "port", "ike.", 0, 65535, 500),
    retransmitTimeoutMs: num(t, "retransmit_timeout", "ike.", 0.05, 600, 4) * 1000,
    retransmitBase: num(t, "retransmit_base", "ike.", 1, 10, 1.8),
    retransmitTries: int(t, "retransmit_tries", "ike.", 0, 100, 5),
    halfOpenTimeoutMs: num(t, "half_open_timeout", "ike.", 1, 3600, 30) * 1000,
    retryDelayMs: num(t, "retry_delay", "ike.", 0.1, 3600, 30) * 1000,
    cookieThreshold: int(t, "cookie_threshold", "ike.", 0, 1_000_000, DEFAULT_DOS.cookieThreshold),
    blockThreshold: int(t, "block_threshold", "ike.", 0, 1_000_000, DEFAULT_DOS.blockThreshold),
    initLimitHalfOpen: int(t, "init_limit_half_open", "ike.", 0, 10_000_000, DEFAULT_DOS.initLimitHalfOpen),
    initRatePerSource: int(t, "init_rate_per_source", "ike.", 0, 1_000_000, DEFAULT_DOS.initRatePerSource),
    fragmentation: bool(t, "fragmentation", "ike.", DEFAULT_FRAGMENTATION.enabled),
    // 576: the smallest datagram every IPv4 host takes (RFC 791), and room for a fragment's 113 bytes of headers.
    fragmentSize: int(t, "fragment_size", "ike.", 576, 65535, DEFAULT_FRAGMENTATION.size),
  };
  if (settings.cookieThreshold > 0 && settings.initLimitHalfOpen > 0 && settings.cookieThreshold > settings.initLimitHalfOpen) {
    throw new ConfigError("ike.cookie_threshold", `${settings.cookieThreshold} is above init_limit_half_open (${settings.initLimitHalfOpen}): cookies would never be asked for before requests are dropped`);
  }
  return settings;
}

/** What must match for a reload to keep an IKE peer's SAs: every setting (the PSK's source, not its bytes). */
export function ikePeerSignature(peer: IkePeerEntry): string {
  const texts = (list: Prefix[]): string[] => list.map((p) => p.text);
  return JSON.stringify({
    ...peer, selectors: texts(peer.selectors), localSelectors: texts(peer.localSelectors),
    moreChildren: peer.moreChildren.map((c) => [texts(c.selectors), texts(c.localSelectors)]),
  });
}

/** Every prefix on the peer's side, over all its child SAs: routed into the TUN and trapped from the start. */
export function ikePeerRemotePrefixes(peer: IkePeerEntry): Prefix[] {
  return [...peer.selectors, ...peer.moreChildren.flatMap((c) => c.selectors)];
}
