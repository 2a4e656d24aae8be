/**
 * The IKE shell: the I/O around the sans-I/O IKE core (src/ike/core.ts).
 *
 *   UDP 500 (node:dgram) ──────────┐
 *   UDP 4500, non-ESP marker ──────┼─► core.receive(datagram, path, now)
 *     (the endpoint's demux:       │        │
 *      onControl)                  │        ▼ actions
 *   timer at core.nextTimer() ─────┘   send ─► 500 socket, or 4500 with the marker (endpoint.sendControl)
 *                                      child-up / child-down ─► the peer/SA table (engine SAs, routes, policy)
 *                                      address ─► the data-plane peer's address
 *                                      liveness ─► RTT histogram;  log ─► one JSON line per event
 *
 * Why the shell owns port 500 itself: IKE_SA_INIT arrives there, rarely and
 * never with ESP, so a plain dgram socket does; the NAT-T port is the data
 * plane's (IKE and ESP share it, told apart by the non-ESP marker, RFC 3948
 * §2.2), so IKE there goes through the endpoint's demux both ways.
 *
 * Each IKE SA gets a peer of its own in the table (its outer address, its
 * children); a `trap` peer also has a permanent trap entry that catches its
 * selectors' packets while no child carries them and starts a negotiation.
 * The core's clock is performance.now(), the one the data plane stamps its
 * last inbound packets with, so liveness checks see ESP traffic too.
 */
import { createSocket, type Socket, type SocketOptions } from "node:dgram";
import { lookup as dnsLookup } from "node:dns";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { randomPool } from "../ike/randomPool.js";
import { LogLimiter } from "../ike/logLimiter.js";
import { IkeCore, type IkeSaStatus } from "../ike/core.js";
import type { ChildSaInstall, IkeAction } from "../ike/actions.js";
import type { IkePeerConfig } from "../ike/config.js";
import type { Endpoint as IkeEndpoint } from "../ike/natDetection.js";
import { formatIdentity, parseIdentity, parseIdentityPattern } from "../ike/identity.js";
import { certificateHasIdentity, describeCertificate } from "../ike/certificates.js";
import { cipherName, groupName, parseEspProposal, parseIkeProposal, type Cipher } from "../ike/proposals.js";
import { checkCipher, type EspCipher } from "../kernel/cipher.js";
import { warmUp } from "../ike/warmUp.js";
import { selectorFromPrefix } from "../ike/trafficSelectors.js";
import type { Registry } from "prom-client";
import type { SocketAddress } from "../io/address.js";
import type { EndpointConfig } from "./config.js";
import { DATA_PLANE_CIPHERS, ikePeerRemotePrefixes, ikePeerSignature, type IkePeerEntry } from "./ikeConfig.js";
import { IkeMetrics } from "./ikeMetrics.js";
import type { Child, Peer } from "./peer.js";
import type { PeerTable } from "./peerTable.js";
import { parsePrefix } from "./prefix.js";
import { loadPsks } from "./pskSource.js";
import { ClientNetwork } from "./clientNetwork.js";
import { AddressPool } from "../ike/addressPool.js";
import { loadLocalCredential, loadPeerTrust } from "./credentials.js";
import type { ControlAnswer } from "./controlSocket.js";
import type { IkeStatus } from "./status.js";

/** What the shell needs of the endpoint (the Endpoint class has it). */
export interface ShellHost {
  readonly table: PeerTable;
  /** The TUN device (native path), where a client's virtual IP goes. */
  readonly tunName?: string;
  /** For the sequence numbers children's outbound SAs have used. */
  readonly engine: { saSeq(handle: Child["out"]): bigint };
  /** The bound NAT-T (ESP) port. */
  readonly port: number;
  readonly metrics: { readonly registry: Registry };
  setControlHooks(hooks: {
    onControl?: (datagram: Uint8Array, from: SocketAddress) => void;
    onAcquire?: (peer: Peer, packet: Uint8Array) => void;
    onPeerAddress?: (peer: Peer, address: SocketAddress) => void;
  }): void;
  sendControl(datagram: Uint8Array, to: SocketAddress, options: { marker: boolean }): boolean;
}

/** Datagrams that may wait in libuv on the IKE socket before more are dropped. */
const MAX_SEND_QUEUE = 256;
/** SO_RCVBUF asked for on the IKE port. */
const IKE_RECEIVE_BUFFER = 2 * 1024 * 1024;
/**
 * dgram resolves every address through `lookup`, and dns.lookup answers even
 * an IP literal on the next tick: a datagram sent from a handler left only
 * after everything that handler and its callers did next (at start, the first
 * IKE_SA_INIT waited 2–12 ms for the control socket's setup). The IKE socket
 * is only given literals, so it answers them at once; anything else still
 * goes to dns.lookup. (dgram passes the family as a number, not options.)
 */
const literalLookup = ((host: string, family: number, callback: (error: Error | null, address: string, family: number) => void): void => {
  const version = isIP(host);
  if (version !== 0) callback(null, host, version);
  else dnsLookup(host, family, callback);
}) as unknown as SocketOptions["lookup"];
/** `sluice initiate` waits this long for the child SA. */
const INITIATE_WAIT_MS = 30_000;

type PeerConfigWithSignature = IkePeerConfig & { signature: string };

/** The core's peer config from a config entry; reads the PSK, certificates and keys now (throws naming the source). */
/** The gateway's `[[pool]]`s, made once and kept across reloads: a lease outlives its IKE SA (addressPool.ts). */
export type Pools = Map<string, { pool: AddressPool; dns: string[] }>;

export function makePools(config: EndpointConfig): Pools {
  return new Map(config.pools.map((entry) => [entry.name, { pool: new AddressPool(entry.name, entry.addresses), dns: entry.dns }]));
}

export function ikePeerConfig(entry: IkePeerEntry, pools: Pools = new Map()): PeerConfigWithSignature {
  const local = entry.auth === "pubkey" ? loadLocalCredential({ certFile: entry.certFile!, keyFile: entry.keyFile!, rsaPss: entry.rsaPss, sendCert: entry.sendCert }) : undefined;
  const localId = entry.localId !== undefined ? parseIdentity(entry.localId) : local!.subject;
  if (local && !certificateHasIdentity(local.certificate, localId)) {
    throw new Error(`local_id ${formatIdentity(localId)} is not in the certificate of ${entry.certFile} (${describeCertificate(local.certificate)}): the peer would refuse it; give its subject DN or a subjectAltName`);
  }
  return {
    name: entry.name,
    signature: ikePeerSignature(entry),
    remote: entry.endpoint,
    remoteNatTPort: entry.natTPort,
    localId,
    remoteId: parseIdentityPattern(entry.remoteId),
    psk: entry.psk ? loadPsks(entry.psk, entry.remoteId) : () => undefined,
    localAuth: local ? { method: "pubkey", credential: local.credential } : { method: "psk" },
    remoteAuth: entry.remoteAuth === "pubkey" ? { method: "pubkey", trust: loadPeerTrust(entry.caFiles, entry.crlFile) } : { method: "psk" },
    ikeProposals: entry.proposals.map(parseIkeProposal),
    espProposals: entry.espProposals.map((p) => parseEspProposal(p, DATA_PLANE_CIPHERS)),
    localTs: entry.localSelectors.map((p) => selectorFromPrefix(p.text)),
    remoteTs: entry.selectors.map((p) => selectorFromPrefix(p.text)),
    moreChildren: entry.moreChildren.map((c) => ({ localTs: c.localSelectors.map((p) => selectorFromPrefix(p.text)), remoteTs: c.selectors.map((p) => selectorFromPrefix(p.text)) })),
    start: entry.start,
    dpdMs: entry.dpdSeconds * 1000,
    dpdAction: entry.dpdAction,
    ikeLifetime: entry.ikeLifetime,
    childLifetime: entry.childLifetime,
    vips: entry.vips,
    pools: entry.pools.map((name) => pools.get(name)!.pool),
    dns: [...new Set(entry.pools.flatMap((name) => pools.get(name)!.dns))],
  };
}

function socketAddress(endpoint: IkeEndpoint): SocketAddress {
  return { family: isIP(endpoint.address) === 6 ? 6 : 4, address: endpoint.address, port: endpoint.port };
}

function hostAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

export class IkeShell {
  readonly core: IkeCore;
  readonly #metrics: IkeMetrics;
  #socket: Socket | undefined;
  readonly #socketErrors = new LogLimiter();
  /** The IKE socket's port, read once at bind (not a getsockname per datagram: a flood made that 7% of the CPU). */
  #boundPort: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  /** The data-plane peer of each IKE SA. */
  readonly #peerOfSa = new Map<number, Peer>();
  readonly #saOfPeer = new Map<Peer, number>();
  /** Data-plane children by the core's child id. */
  readonly #children = new Map<number, Child>();
  /** The permanent trap entry of each IKE peer, by name (see #setTraps), and the config it was made for. */
  readonly #traps = new Map<string, Peer>();
  readonly #trapSignatures = new Map<string, string>();
  /** `sluice initiate` calls waiting for a peer's outcome. */
  readonly #waiters = new Map<string, ((answer: ControlAnswer) => void)[]>();
  #entries: Map<string, IkePeerEntry>;
  #stopped = false;
  /** Client mode: the virtual IP and DNS servers the gateway gave, on this host. */
  #client: ClientNetwork | undefined;

  private constructor(
    private readonly host: ShellHost,
    private config: EndpointConfig,
    private readonly log: Logger,
    peers: PeerConfigWithSignature[],
    private readonly pools: Pools,
  ) {
    this.#entries = new Map(config.ikePeers.map((e) => [e.name, e]));
    const ike = config.ike;
    this.core = new IkeCore({
      peers,
      random: randomPool(),
      retransmit: { timeoutMs: ike.retransmitTimeoutMs, base: ike.retransmitBase, tries: ike.retransmitTries },
      halfOpenTimeoutMs: ike.halfOpenTimeoutMs,
      retryDelayMs: ike.retryDelayMs,
      dos: { cookieThreshold: ike.cookieThreshold, blockThreshold: ike.blockThreshold, initLimitHalfOpen: ike.initLimitHalfOpen, initRatePerSource: ike.initRatePerSource },
      fragmentation: { enabled: ike.fragmentation, size: ike.fragmentSize },
      local: { address: config.local.address, ikePort: ike.port, natTPort: host.port, addresses: hostAddresses },
      spiInUse: (spi) => host.table.childBySpi(spi) !== undefined,
      childUsage: (spi) => {
        const child = host.table.childBySpi(spi);
        if (child === undefined) return undefined;
        const c = host.table.childCounters(child);
        return { bytes: c.bytesIn + c.bytesOut, packets: c.packetsIn + c.packetsOut, sentSequence: child.outboundActive ? Number(host.engine.saSeq(child.out)) : 0 };
      },
      lastInbound: (spis) => {
        let last: number | undefined;
        for (const spi of spis) {
          const seen = host.table.childBySpi(spi)?.peer.lastInbound;
          if (seen !== undefined && seen > 0 && (last === undefined || seen > last)) last = seen;
        }
        return last;
      },
    });
    this.#metrics = new IkeMetrics(host.metrics.registry, () => this.core, () => [...pools.values()].map((p) => p.pool));
  }

  /**
   * Reads every IKE peer's PSK, binds the IKE port, hooks into the
   * endpoint's demux and starts the `start` peers.
   * @throws Error naming what failed (a PSK source, the IKE port in use)
   */
  static async start(host: ShellHost, config: EndpointConfig, log: Logger): Promise<IkeShell> {
    const pools = makePools(config);
    const peers = config.ikePeers.map((entry) => {
      try {
        return ikePeerConfig(entry, pools);
      } catch (error) {
        throw new Error(`peer ${entry.name}: ${(error as Error).message}`);
      }
    });
    const shell = new IkeShell(host, config, log, peers, pools);
    const groups = [...new Set(peers.map((p) => groupName(p.ikeProposals[0]!.groups[0]!)))];
    warmUp(randomPool(), groups, DATA_PLANE_CIPHERS);
    await shell.#bind();
    host.setControlHooks({
      onControl: (datagram, from) => shell.#receive(datagram, { address: from.address, port: from.port }, true),
      onAcquire: (peer) => shell.#acquire(peer),
      onPeerAddress: (peer, address) => shell.#peerMoved(peer, address),
    });
    shell.#setTraps();
    shell.#run(shell.core.start(performance.now()));
    log.info({ event: "ike-listen", port: config.ike.port, natTPort: host.port, peers: config.ikePeers.map((p) => p.name) }, `IKE on UDP ${config.ike.port} and ${host.port} (NAT-T) for ${config.ikePeers.length} peer(s)`);
    return shell;
  }

  async #bind(): Promise<void> {
    const address = this.config.local.address;
    // A 2 MiB receive buffer (capped by net.core.rmem_max): under an IKE_SA_INIT flood a pause of the
    // event loop (a child SA installed, a collection) must not drop the legitimate request that arrives
    // meanwhile; with the default 208 KiB a 50 ms pause at 5,000 requests/s did, and cost it a 4 s retransmission.
    const socket = createSocket({ type: isIP(address) === 6 ? "udp6" : "udp4", reuseAddr: false, recvBufferSize: IKE_RECEIVE_BUFFER, lookup: literalLookup });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (error: NodeJS.ErrnoException) => reject(new Error(`IKE port ${address}:${this.config.ike.port}: ${error.code ?? error.message}`)));
      socket.bind(this.config.ike.port, address, () => resolve());
    });
    socket.removeAllListeners("error");
    // Send errors come here too (a datagram sent without a callback), one per datagram: a flood of answers to
    // unroutable spoofed sources must not become a flood of lines, so one line per error code per interval.
    socket.on("error", (error: NodeJS.ErrnoException) => {
      const left = this.#socketErrors.allow(error.code ?? error.message, this.#now());
      if (left !== undefined) this.log.warn({ event: "ike-socket-error", error: error.message, suppressed: left }, `IKE socket error${left > 0 ? ` (${left} more since the last such line)` : ""}`);
    });
    socket.on("message", (datagram, from) => this.#receive(datagram, { address: from.address, port: from.port }, false));
    this.#socket = socket;
    this.#boundPort = socket.address().port;
  }

  get ikePort(): number {
    return this.#boundPort ?? this.config.ike.port;
  }

  #now(): number {
    return performance.now();
  }

  #receive(datagram: Uint8Array, remote: IkeEndpoint, natT: boolean): void {
    if (this.#stopped) return;
    const local = { address: this.config.local.address, port: natT ? this.host.port : this.ikePort };
    this.#run(this.core.receive(datagram, { local, remote, natT }, this.#now()));
  }

  // ---------------------------------------------------------------- carrying out the core's actions

  #run(actions: IkeAction[]): void {
    // Datagrams first: an answer that installs a child SA goes out before the install (1–2 ms of engine,
    // table and log work), not after. The order cannot be seen from outside: every action here runs in
    // this one turn of the event loop, and no packet is read or sent on the SAs until it ends.
    for (const action of actions) if (action.type === "send") this.#applySafely(action);
    for (const action of actions) if (action.type !== "send") this.#applySafely(action);
    this.#arm();
  }

  #applySafely(action: IkeAction): void {
    try {
      this.#apply(action);
    } catch (error) {
      this.log.error({ event: "ike-shell-error", action: action.type, error: (error as Error).stack }, `IKE shell could not carry out ${action.type}`);
    }
  }

  #apply(action: IkeAction): void {
    switch (action.type) {
      case "send":
        return this.#send(action.datagram, action.remote, action.natT);
      case "child-up":
        return this.#install(action.child);
      case "child-down":
        return this.#uninstall(action.childId, action.ikeSaId);
      case "child-outbound": {
        const child = this.#children.get(action.childId);
        if (child) this.host.table.activateOutbound(child);
        const old = action.replaces === undefined ? undefined : this.#children.get(action.replaces);
        if (old) this.host.table.retireOutbound(old);
        return;
      }
      case "ike-rekeyed": {
        const peer = this.#peerOfSa.get(action.oldIkeSaId);
        if (peer === undefined) return;
        this.#peerOfSa.delete(action.oldIkeSaId);
        this.#peerOfSa.set(action.newIkeSaId, peer);
        this.#saOfPeer.set(peer, action.newIkeSaId);
        return;
      }
      case "address": {
        const peer = this.#peerOfSa.get(action.ikeSaId);
        if (peer) this.host.table.setPeerAddress(peer, socketAddress(action.remote));
        return;
      }
      case "liveness":
        return this.#metrics.observeRtt(action.peerName, action.rttMs);
      case "virtual-ip":
        if (this.host.tunName === undefined) {
          this.log.info({ event: "client-network", addresses: action.addresses, dns: action.dns }, `virtual IP ${action.addresses.join(", ")} (portable path: no TUN device to put it on; the application sends from it)`);
          return;
        }
        this.#client ??= new ClientNetwork(this.host.tunName, this.log);
        return this.#client.apply({ addresses: action.addresses, dns: action.dns });
      case "log": {
        this.log[action.level]({ event: action.event, ...action.fields }, action.message);
        if (action.event === "ike-failed" || action.event === "child-failed") this.#settle(String(action.fields.peer), { ok: false, error: action.message });
        return;
      }
    }
  }

  #send(datagram: Uint8Array, remote: IkeEndpoint, natT: boolean): void {
    if (natT) {
      this.host.sendControl(datagram, socketAddress(remote), { marker: true });
      return;
    }
    const socket = this.#socket;
    if (socket === undefined) return;
    if (socket.getSendQueueCount() >= MAX_SEND_QUEUE) {
      this.log.debug({ event: "ike-send-full" }, "IKE socket queue full; datagram dropped");
      return;
    }
    socket.send(datagram, remote.port, remote.address);
  }

  #install(child: ChildSaInstall): void {
    const table = this.host.table;
    let peer = this.#peerOfSa.get(child.ikeSaId);
    if (peer === undefined || peer.removed) {
      // The side behind a NAT keeps its peer's address; the other follows the peer's NAT mapping (RFC 7296 §2.23).
      peer = table.addPeer({ name: child.peerName, address: socketAddress(child.remote), keepalive: child.keepalive, rebind: !child.keepalive });
      this.#peerOfSa.set(child.ikeSaId, peer);
      this.#saOfPeer.set(peer, child.ikeSaId);
    }
    const entry = this.#entries.get(child.peerName);
    const installed = table.installChild(peer, {
      outbound: child.outbound,
      inbound: child.inbound,
      esn: child.esn,
      cipher: espCipherOf(child.cipher),
      replayWindow: entry?.replayWindow ?? 1024,
      localSelectors: child.localPrefixes.map(parsePrefix),
      remoteSelectors: child.remotePrefixes.map(parsePrefix),
      label: `${child.peerName}{${child.childId}}`,
      outboundPending: !child.outboundNow,
    });
    this.#children.set(child.childId, installed);
    // A rekey initiator's new child took the routes (it was installed last): the old one stops sealing.
    const old = child.replaces === undefined ? undefined : this.#children.get(child.replaces);
    if (old) table.retireOutbound(old);
    this.#settle(child.peerName, { ok: true, message: `${child.peerName}{${child.childId}} established` });
  }

  #uninstall(childId: number, ikeSaId: number): void {
    const child = this.#children.get(childId);
    if (child === undefined) return;
    this.#children.delete(childId);
    this.host.table.removeChild(child);
    const peer = child.peer;
    if (peer.children.size === 0) {
      this.host.table.removePeer(peer);
      this.#peerOfSa.delete(ikeSaId);
      this.#saOfPeer.delete(peer);
    }
  }

  #arm(): void {
    if (this.#stopped) return;
    const at = this.core.nextTimer();
    if (at === this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at ?? Number.POSITIVE_INFINITY;
    if (at === undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.#run(this.core.timeout(this.#now()));
    }, Math.max(0, Math.ceil(at - this.#now())));
    this.#timer.unref();
  }

  // ---------------------------------------------------------------- hooks from the data plane

  #acquire(peer: Peer): void {
    for (const [name, trap] of this.#traps) {
      if (trap !== peer || this.#entries.get(name)?.start !== "trap") continue;
      this.log.info({ event: "ike-acquire", peer: name }, `a packet for ${name}'s selectors: negotiating`);
      this.#run(this.core.initiate(name, this.#now()));
    }
  }

  #peerMoved(peer: Peer, address: SocketAddress): void {
    const ikeSaId = this.#saOfPeer.get(peer);
    if (ikeSaId !== undefined) this.#run(this.core.updateRemote(ikeSaId, { address: address.address, port: address.port }, this.#now()));
  }

  /**
   * Every IKE peer's configured selectors are routed to us from the start,
   * through a trap entry: the kernel routes exist before the first child
   * (no route change per negotiated child, and no packet leaks around the
   * TUN while a tunnel comes up), and until a child carries a packet it is
   * dropped ("no-sa"), never sent in clear. Only a `trap` peer's catches
   * start a negotiation.
   */
  #setTraps(): void {
    const table = this.host.table;
    for (const [name, trap] of this.#traps) {
      const entry = this.#entries.get(name);
      if (entry !== undefined && ikePeerSignature(entry) === this.#trapSignatures.get(name)) continue;
      table.removePeer(trap);
      this.#traps.delete(name);
    }
    for (const entry of this.#entries.values()) {
      if (this.#traps.has(entry.name)) continue;
      this.#traps.set(entry.name, table.addPeer({ name: entry.name, address: null, keepalive: false, trapSelectors: ikePeerRemotePrefixes(entry) }));
      this.#trapSignatures.set(entry.name, ikePeerSignature(entry));
    }
  }

  // ---------------------------------------------------------------- control

  /** `sluice initiate NAME`: resolves when its child SA is up or the attempt failed (or after 30 s). */
  initiate(name: string): Promise<ControlAnswer> {
    if (!this.#entries.has(name)) return Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
    if (this.core.list().some((sa) => sa.peer === name && sa.state === "established" && sa.children.length > 0)) {
      return Promise.resolve({ ok: true, message: `${name} is established already` });
    }
    const answer = new Promise<ControlAnswer>((resolve) => {
      const list = this.#waiters.get(name) ?? [];
      list.push(resolve);
      this.#waiters.set(name, list);
      setTimeout(() => this.#settle(name, { ok: false, error: `${name}: no child SA within ${INITIATE_WAIT_MS / 1000} s (still trying)` }), INITIATE_WAIT_MS).unref();
    });
    this.#run(this.core.initiate(name, this.#now()));
    return answer;
  }

  /** `sluice terminate NAME`. */
  terminate(name: string): Promise<ControlAnswer> {
    if (!this.#entries.has(name)) return Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
    const count = this.core.list().filter((sa) => sa.peer === name).length;
    this.#run(this.core.terminate(name, this.#now()));
    return Promise.resolve({ ok: true, message: count === 0 ? `${name} had no IKE SA` : `${name}: ${count} IKE SA(s) deleted` });
  }

  /** `sluice rekey NAME [--ike]`: starts the rekey; its outcome is in the log and in status. */
  rekey(name: string, ike: boolean): Promise<ControlAnswer> {
    if (!this.#entries.has(name)) return Promise.resolve({ ok: false, error: `no IKE peer named ${name}` });
    if (!this.core.list().some((sa) => sa.peer === name && sa.state === "established")) return Promise.resolve({ ok: false, error: `${name} has no established IKE SA` });
    this.#run(this.core.rekey(name, ike ? "ike" : "child", this.#now()));
    return Promise.resolve({ ok: true, message: `${name}: rekeying its ${ike ? "IKE SA" : "child SAs"}` });
  }

  #settle(name: string, answer: ControlAnswer): void {
    const list = this.#waiters.get(name);
    if (list === undefined) return;
    this.#waiters.delete(name);
    for (const resolve of list) resolve(answer);
  }

  /** What `sluice status` shows of IKE: every IKE SA with its children, their traffic, and when each is due to be rekeyed or to expire. */
  status(): IkeStatus[] {
    const now = this.#now();
    const inSeconds = (at: number | undefined): number | undefined => (at === undefined ? undefined : Math.max(0, Math.round((at - now) / 1000)));
    const byLabel = new Map<string, Child>();
    for (const child of this.#children.values()) byLabel.set(child.label, child);
    return this.core.list().map((sa) => ({
      ...sa,
      ageSeconds: Math.round((now - sa.createdAt) / 1000),
      rekeyInSeconds: inSeconds(sa.rekeyAt),
      expireInSeconds: inSeconds(sa.expireAt),
      children: sa.children.map((c) => {
        const data = byLabel.get(`${sa.peer}{${c.id}}`);
        const counters = data ? this.host.table.childCounters(data) : { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0 };
        return { ...c, ageSeconds: Math.round((now - c.createdAt) / 1000), rekeyInSeconds: inSeconds(c.rekeyAt), expireInSeconds: inSeconds(c.expireAt), ...counters };
      }),
    }));
  }

  // ---------------------------------------------------------------- reload and stop

  /** SIGHUP: changed or removed peers' SAs are deleted, unchanged ones kept, new `start` peers connected. */
  reload(config: EndpointConfig): void {
    if (JSON.stringify(config.pools) !== JSON.stringify(this.config.pools)) {
      this.log.warn({ event: "reload", setting: "pool" }, "changes to [[pool]] need a restart (leases live in the running pools); kept the running pools");
    }
    const peers = config.ikePeers.map((entry) => {
      try {
        return ikePeerConfig(entry, this.pools);
      } catch (error) {
        throw new Error(`peer ${entry.name}: ${(error as Error).message}`);
      }
    });
    if (JSON.stringify(config.ike) !== JSON.stringify(this.config.ike)) {
      this.log.warn({ event: "reload", setting: "ike" }, "changes to [ike] need a restart; kept the running values");
    }
    this.config = { ...this.config, ikePeers: config.ikePeers };
    this.#entries = new Map(config.ikePeers.map((e) => [e.name, e]));
    this.#run(this.core.setPeers(peers, this.#now()));
    this.#setTraps();
  }

  /** Sends a DELETE to every established peer, then closes the IKE socket. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#run(this.core.shutdown(this.#now()));
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const [name] of this.#waiters) this.#settle(name, { ok: false, error: "sluice is stopping" });
    this.#client?.remove();
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

/** The engine's name of a negotiated ESP cipher (DATA_PLANE_CIPHERS lists the ones that can be). */
function espCipherOf(cipher: Cipher): EspCipher {
  return checkCipher("negotiated cipher", cipherName(cipher));
}
