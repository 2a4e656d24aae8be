/**
 * What the IKE core is told: its peers and its timing. The endpoint's TOML
 * parser (src/endpoint/config.ts) builds these; tests build them directly.
 *
 * Why PSKs are a function: a key is read when an exchange needs it and
 * wiped right after, so it does not sit in the core's memory for the life of
 * the process; and a peer with a wildcard remote ID looks the secret up by
 * the ID the initiator presented (a secrets file with one line per client).
 *
 * Why certificates are functions and objects handed in too: the core signs
 * and verifies but reads no file and no wall clock. The shell
 * (src/endpoint/credentials.ts) loads the private key, the certificates,
 * the CAs and the CRL, and validates a peer's chain at the wall clock's
 * time; tests build the same from certificates they make.
 */
import type { Identity, IdentityPattern } from "./identity.js";
import type { Endpoint } from "./natDetection.js";
import type { EspProposal, IkeProposal } from "./proposals.js";
import type { Selector } from "./trafficSelectors.js";
import type { AddressPool } from "./addressPool.js";
import type { ChildLifetime, Lifetime } from "./lifetimes.js";
import type { KeyKind, SignatureScheme } from "./signatures.js";
import type { Validation } from "./certificates.js";

/** Our certificate and what signs with its key (RFC 7296 §2.15, §3.6). */
export interface LocalCredential {
  /** DER certificates to send in CERT payloads: ours first, then intermediates toward the CA. */
  chain: readonly Uint8Array[];
  /** The key's kind: which schemes it can sign with. */
  kind: KeyKind;
  /** RSA keys: sign with RSASSA-PSS instead of PKCS#1 v1.5. */
  rsaPss: boolean;
  /** `always`: CERT in every IKE_AUTH; `ifasked`: only after the peer's CERTREQ (strongSwan's default); `never`. */
  sendCert: "always" | "ifasked" | "never";
  /** Signs the AUTH octets. */
  sign(method: number, scheme: SignatureScheme, octets: Uint8Array): Uint8Array;
}

/** What the peer's certificate chain must lead to, and how it is checked. */
export interface PeerTrust {
  /** SHA-1 of each trusted CA's SubjectPublicKeyInfo: our CERTREQ (§3.7). */
  caKeyHashes: readonly Uint8Array[];
  /** Validates the chain the peer sent (its certificate first) for the identity it claims, now (the shell's wall clock). */
  validate(chain: readonly Uint8Array[], id: Identity): Validation;
}

/** How we prove who we are: a PSK (`psk()`), or a signature with our certificate's key. */
export type LocalAuth = { method: "psk" } | { method: "pubkey"; credential: LocalCredential };
/** How the peer must prove who it is: its PSK, or a signature by a certificate that `trust` accepts. */
export type RemoteAuth = { method: "psk" } | { method: "pubkey"; trust: PeerTrust };
import type { DosSettings } from "./dosGuard.js";
import type { FragmentSettings } from "./fragments.js";

export type StartAction = "start" | "trap" | "none";
export type DpdAction = "clear" | "restart";

export interface IkePeerConfig {
  /** Unique; logs, status and the control socket name peers by it. */
  name: string;
  /** Where to initiate to (IKE port, usually 500). Absent: a responder that accepts any address. */
  remote?: Endpoint;
  /** The peer's NAT-T port to float to (RFC 7296 §2.23; 4500). */
  remoteNatTPort: number;
  localId: Identity;
  remoteId: IdentityPattern;
  /**
   * The PSK for the remote ID presented (undefined: an initiator that has not
   * seen one yet and expects a pattern), or undefined when there is none.
   * Returns a fresh copy: the core wipes it after use.
   */
  psk(remoteId: Identity | undefined): Uint8Array | undefined;
  /** How we authenticate (default: PSK); either side may differ from the other (PSK one way, certificates the other). */
  localAuth?: LocalAuth;
  /** How the peer must authenticate (default: PSK). */
  remoteAuth?: RemoteAuth;
  ikeProposals: IkeProposal[];
  espProposals: EspProposal[];
  /** Our side's traffic selectors (TSi as initiator, TSr as responder) of the first child SA. */
  localTs: Selector[];
  /** The peer's side. */
  remoteTs: Selector[];
  /**
   * More child SAs, each a selector pair of its own: an initiator asks for
   * them with CREATE_CHILD_SA once the IKE SA is up (§1.3.1); a responder
   * accepts requests within any pair.
   */
  moreChildren: { localTs: Selector[]; remoteTs: Selector[] }[];
  /** A client: the virtual IP families to ask the gateway for (RFC 7296 §2.19, CFG_REQUEST). */
  vips?: (4 | 6)[];
  /** A gateway: where clients' virtual IPs come from, and the DNS servers handed out with them. */
  pools?: AddressPool[];
  dns?: string[];
  start: StartAction;
  /** Liveness check after this long without traffic from the peer; 0 = off. */
  dpdMs: number;
  dpdAction: DpdAction;
  /** When the IKE SA is rekeyed and expires (RFC 7296 §2.18). */
  ikeLifetime: Lifetime;
  /** When child SAs are rekeyed and expire (§2.8), on time, bytes and packets. */
  childLifetime: ChildLifetime;
}

export interface RetransmitPolicy {
  /** First timeout (strongSwan: 4 s). */
  timeoutMs: number;
  /** Each timeout is the previous one times this (strongSwan: 1.8). */
  base: number;
  /** Retransmissions before giving up (strongSwan: 5). */
  tries: number;
}

export interface IkeCoreOptions {
  peers: readonly IkePeerConfig[];
  /** Cryptographic randomness: SPIs, nonces, private keys. The only source the core uses. */
  random(length: number): Uint8Array;
  retransmit?: Partial<RetransmitPolicy>;
  /** A responder's half-open IKE SA is forgotten after this long (strongSwan: 30 s). */
  halfOpenTimeoutMs?: number;
  /** After a refused (re)connect of a `start` or `restart` peer, the next try waits this long. */
  retryDelayMs?: number;
  /** Whether an inbound ESP SPI is taken already (static SAs in the same engine). */
  spiInUse?(spi: number): boolean;
  /** When the data plane last opened a packet from any of these child SAs (inbound SPIs), for liveness. */
  lastInbound?(inboundSpis: readonly number[]): number | undefined;
  /**
   * A child SA's traffic so far (by its inbound SPI), for rekeying on volume
   * and before the sequence number runs out: bytes and packets both ways,
   * and the last sequence number its outbound SA used.
   */
  childUsage?(inboundSpi: number): { bytes: number; packets: number; sentSequence: number } | undefined;
  /** How long a replaced child's inbound SA keeps opening stragglers (strongSwan: 5 s). */
  rekeyLingerMs?: number;
  /** What new IKE_SA_INIT requests may cost (cookies, half-open limits; dosGuard.ts). */
  dos?: Partial<DosSettings>;
  /** RFC 7383 fragmentation: whether, above what size, and the reassembly limits (fragments.ts). */
  fragmentation?: Partial<FragmentSettings>;
}

/**
 * A peer that only does what it is told: no lifetimes (never rekeyed or
 * expired), no liveness checks, no start action, no further children. The
 * warm-up's throwaway cores and the benches' load clients are built on it.
 */
export const INERT_PEER = {
  moreChildren: [],
  start: "none",
  dpdMs: 0,
  dpdAction: "clear",
  ikeLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0 },
  childLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0, rekeyBytes: 0, lifeBytes: 0, rekeyPackets: 0, lifePackets: 0 },
} as const satisfies Partial<IkePeerConfig>;

export const DEFAULT_RETRANSMIT: RetransmitPolicy = { timeoutMs: 4000, base: 1.8, tries: 5 };
export const DEFAULT_HALF_OPEN_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRY_DELAY_MS = 30_000;
/** A `restart` peer that deleted our IKE SA is connected again after this long (core.peerDeleted): time for a gateway that restarts to listen again. */
export const PEER_DELETE_RECONNECT_MS = 1000;
export const DEFAULT_REKEY_LINGER_MS = 5_000;
