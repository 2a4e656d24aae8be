/**
 * The IKEv2 core (RFC 7296), sans-I/O: bytes and the time in; datagrams to
 * send, child SAs to install or remove, and log events out; the next timer
 * on request. It owns no socket, no clock and no randomness but what it is
 * handed, so every exchange, refusal, retransmission and timeout runs in
 * one process in tests, with two cores talking to each other.
 *
 * @example A shell's loop (see src/endpoint/ikeShell.ts for the real one).
 * ```ts
 * const core = new IkeCore({ peers, random: (n) => crypto.getRandomValues(new Uint8Array(n)) });
 * run(core.start(Date.now()));
 * socket.on("message", (datagram, from) => run(core.receive(datagram, { local, remote: from, natT }, Date.now())));
 * // after every call: arm one timer for core.nextTimer(), and on it run(core.timeout(Date.now()))
 * ```
 *
 * How messages find their SA: our SPI (SPIr for a responder, SPIi for an
 * initiator) is the key; a new IKE_SA_INIT request is recognised by SPIi
 * and source address, so its retransmissions get the cached answer.
 * Everything that fails to parse, authenticate or fit the message-ID window
 * is dropped and counted by reason (counters.drops), never thrown.
 */
import type { IkeAction } from "./actions.js";
import { DEFAULT_HALF_OPEN_TIMEOUT_MS, DEFAULT_REKEY_LINGER_MS, DEFAULT_RETRANSMIT, DEFAULT_RETRY_DELAY_MS, PEER_DELETE_RECONNECT_MS, type IkeCoreOptions, type IkePeerConfig, type RetransmitPolicy } from "./config.js";
import { Exchange, Notify, nameOf } from "./constants.js";
import { ParseError, equalBytes, spiHex } from "./codec/bytes.js";
import { decodeMessage, fromInitiator, isResponse } from "./codec/message.js";
import type { ChildSa } from "./childSa.js";
import { hex32 } from "./childSa.js";
import { DeadlineQueue } from "./deadlines.js";
import { formatIdentity } from "./identity.js";
import { IkeSa, type Answer, type IkeSaState, type Path } from "./ikeSa.js";
import type { Endpoint } from "./natDetection.js";
import { describeEsp, describeIke } from "./proposals.js";
import { formatSelector } from "./trafficSelectors.js";
import { initiate, respondInit } from "./exchanges/ikeSaInit.js";
import { answerAuth } from "./exchanges/ikeAuth.js";
import { answerInformational, sendIkeDelete, sendLivenessCheck } from "./exchanges/informational.js";
import { answerCreateChild, rekeyChild, rekeyIke } from "./exchanges/createChildSa.js";
import { schedule, sequenceRekeyPackets } from "./lifetimes.js";
import { Payload, Protocol } from "./constants.js";
import { spiToBytes } from "./proposals.js";
import { notify, type IkePayload } from "./codec/payloads.js";
import { DosGuard, type DosStatus } from "./dosGuard.js";
import { DEFAULT_FRAGMENTATION, type FragmentSettings } from "./fragments.js";
import { LogLimiter } from "./logLimiter.js";

/** How often the children's traffic is looked at (volume limits, sequence numbers): cheap, and far inside any margin. */
const USAGE_INTERVAL_MS = 10_000;

/** What the core has counted; read at scrape time (metrics) and by `sluice status`. */
export interface IkeCounters {
  /** Messages dropped, by reason ("bad-icv", "truncated", "message-id-out-of-window", …). */
  drops: Record<string, number>;
  retransmits: number;
  /** Retransmitted requests answered from the response cache. */
  cachedResponses: number;
  handshakesCompleted: number;
  /** Failed handshakes by reason (the notify, or what went wrong). */
  handshakesFailed: Record<string, number>;
}

/** One IKE SA for `sluice status`. */
export interface IkeSaStatus {
  id: number;
  peer: string;
  role: "initiator" | "responder";
  state: IkeSaState;
  spiI: string;
  spiR: string;
  local: string;
  remote: string;
  natT: boolean;
  natLocal: boolean;
  natRemote: boolean;
  localId?: string;
  remoteId?: string;
  /** Virtual IPs: the client's (given) or the gateway's client's (leased). */
  virtualIps: string[];
  /** The subject of the peer's certificate, when it authenticated with one. */
  remoteCertificate?: string;
  ike?: string;
  createdAt: number;
  establishedAt?: number;
  lastRttMs?: number;
  /** When the IKE SA is due to be rekeyed and when it expires (the core's clock). */
  rekeyAt?: number;
  expireAt?: number;
  children: { id: number; state: string; spiIn: string; spiOut: string; esp: string; localTs: string[]; remoteTs: string[]; createdAt: number; rekeyAt?: number; expireAt?: number }[];
}

/** Our side: the bound address and the two ports. */
export interface LocalPorts {
  /** The bound address; a wildcard ("0.0.0.0", "::") when bound to all. */
  address: string;
  ikePort: number;
  natTPort: number;
  /**
   * With a wildcard bind: this host's addresses. NAT detection (§2.23) asks
   * whether the address the peer sent to is ours; any of them is.
   */
  addresses?(): readonly string[];
}

export class IkeCore {
  readonly counters: IkeCounters = { drops: {}, retransmits: 0, cachedResponses: 0, handshakesCompleted: 0, handshakesFailed: {} };
  readonly retransmit: RetransmitPolicy;
  readonly halfOpenTimeoutMs: number;
  /** How long a replaced child's inbound SA keeps opening stragglers. */
  readonly rekeyLingerMs: number;
  readonly random: (length: number) => Uint8Array;
  readonly fragmentation: FragmentSettings;
  /** The time of the call in progress (handlers read it). */
  now = 0;
  #peers = new Map<string, IkePeerConfig>();
  readonly #bySpi = new Map<bigint, IkeSa>();
  /**
   * Established IKE SAs by the peer's identity (formatIdentity): INITIAL_CONTACT
   * (§3.10.1) looks up the client's older SAs here instead of formatting the
   * identity of every SA, which on a gateway with a thousand clients made
   * each new client cost a thousand formatted identities.
   */
  readonly #byRemoteId = new Map<string, Set<IkeSa>>();
  /** Half-open responder SAs by SPIi and source: retransmitted IKE_SA_INIT requests find their answer. */
  readonly #byInit = new Map<string, IkeSa>();
  /** The #byInit key each half-open SA was filed under (its remote may move before it is forgotten). */
  readonly #initKeys = new Map<IkeSa, string>();
  readonly #deadlines = new DeadlineQueue<IkeSa>();
  /** Peers to connect again at a time (a `start` or `restart` peer whose attempt was refused). */
  readonly #reconnects = new Map<string, number>();
  readonly #childSpis = new Set<number>();
  #actions: IkeAction[] = [];
  #nextSaId = 1;
  #nextChildId = 1;
  readonly #retryDelayMs: number;
  /** Admission of new IKE_SA_INIT requests: cookies and half-open limits (dosGuard.ts). */
  readonly #dos: DosGuard;
  /** Drop and refusal lines: one per cause per interval (a flood must not flood the log). */
  readonly #logLimiter = new LogLimiter();

  constructor(private readonly options: IkeCoreOptions & { local?: LocalPorts }) {
    this.random = options.random;
    this.retransmit = { ...DEFAULT_RETRANSMIT, ...options.retransmit };
    this.halfOpenTimeoutMs = options.halfOpenTimeoutMs ?? DEFAULT_HALF_OPEN_TIMEOUT_MS;
    this.rekeyLingerMs = options.rekeyLingerMs ?? DEFAULT_REKEY_LINGER_MS;
    this.#retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.fragmentation = { ...DEFAULT_FRAGMENTATION, ...options.fragmentation };
    this.#dos = new DosGuard(this, options.dos);
    for (const peer of options.peers) this.#peers.set(peer.name, peer);
  }

  // ---------------------------------------------------------------- entry points

  /** Initiates every `start` peer. */
  start(now: number): IkeAction[] {
    return this.#run(now, () => {
      for (const peer of this.#peers.values()) if (peer.start === "start") this.#initiate(peer, true);
    });
  }

  /** A datagram from `path.remote` (the NAT-T marker already stripped). Never throws for what the datagram holds. */
  receive(datagram: Uint8Array, path: Path, now: number): IkeAction[] {
    return this.#run(now, () => {
      try {
        this.#receive(datagram, path);
      } catch (error) {
        // A bug must cost one message, not the daemon (the hostile-input tests look for these).
        this.drop("internal-error");
        this.log("warn", "ike-internal-error", `IKE message dropped by an internal error: ${error instanceof Error ? error.message : String(error)}`, { remote: `${path.remote.address}:${path.remote.port}` });
      }
    });
  }

  /** The clock reached nextTimer(): retransmissions, expiries, liveness checks, reconnects. */
  timeout(now: number): IkeAction[] {
    return this.#run(now, () => {
      const handled = new Set<IkeSa>();
      for (let sa = this.#deadlines.popDue(now); sa !== undefined; sa = this.#deadlines.popDue(now)) {
        if (handled.has(sa)) {
          // Due again within one call: a deadline nothing acts on. A bug, but it must cost a second, not the daemon (a spin).
          this.drop("internal-error", sa);
          this.log("warn", "ike-internal-error", `IKE_SA ${sa.peerName}[${sa.id}] (${sa.state}) has a deadline nothing acts on; checked again in 1 s`, sa.logFields);
          this.#deadlines.schedule(sa, now + 1000);
          continue;
        }
        handled.add(sa);
        this.#onTimer(sa);
      }
      for (const [name, at] of this.#reconnects) {
        if (at > now) continue;
        this.#reconnects.delete(name);
        const peer = this.#peers.get(name);
        if (peer && !this.#hasSa(name)) this.#initiate(peer, true);
      }
    });
  }

  /** When timeout() should next be called (ms, the clock of the calls), or undefined. */
  nextTimer(): number | undefined {
    let at = this.#deadlines.peek();
    for (const t of this.#reconnects.values()) if (at === undefined || t < at) at = t;
    return at;
  }

  /**
   * Connects to a peer now (`sluice initiate`, a trap's first packet).
   * Nothing happens when an IKE SA with it exists or is being made.
   */
  initiate(name: string, now: number, autoRetry = false): IkeAction[] {
    return this.#run(now, () => {
      const peer = this.#peers.get(name);
      if (peer === undefined) return this.log("warn", "initiate-unknown", `no peer named ${name}`, { peer: name });
      if (peer.remote === undefined) return this.log("warn", "initiate-no-endpoint", `${name} has no endpoint to initiate to`, { peer: name });
      if (this.#hasSa(name)) return;
      this.#initiate(peer, autoRetry);
    });
  }

  /** Deletes every IKE SA with a peer (`sluice terminate`). */
  terminate(name: string, now: number): IkeAction[] {
    return this.#run(now, () => {
      this.#reconnects.delete(name);
      for (const sa of this.#sasOf(name)) this.terminateSa(sa, "terminated by the operator");
    });
  }

  /** Deletes one child SA of a peer (by the core's child id): out of the data plane now, a DELETE to the peer. */
  deleteChild(name: string, childId: number, now: number): IkeAction[] {
    return this.#run(now, () => {
      for (const sa of this.#sasOf(name)) {
        const child = sa.children.find((c) => c.id === childId);
        if (child === undefined || sa.state !== "established") continue;
        this.#deleteChild(sa, child, "deleted by the operator");
        this.#reschedule(sa);
      }
    });
  }

  /**
   * Rekeys a peer's child SAs, or with `ike` its IKE SA (`sluice rekey`),
   * as their lifetime would. Returns false when the peer has no established IKE SA.
   */
  rekey(name: string, what: "child" | "ike", now: number): IkeAction[] {
    return this.#run(now, () => {
      const established = this.#sasOf(name).filter((sa) => sa.state === "established");
      if (established.length === 0) return this.log("warn", "rekey-nothing", `${name} has no established IKE_SA to rekey`, { peer: name });
      for (const sa of established) {
        if (what === "ike") rekeyIke(sa);
        else for (const child of [...sa.children]) if (child.state === "installed") rekeyChild(sa, child);
        this.#reschedule(sa);
      }
    });
  }

  /**
   * SIGHUP: the new peer list. A peer whose `signature` is unchanged keeps its
   * SAs; a changed or removed one's SAs are deleted; new `start` peers connect.
   */
  setPeers(peers: readonly (IkePeerConfig & { signature: string })[], now: number): IkeAction[] {
    return this.#run(now, () => {
      const old = this.#peers as Map<string, IkePeerConfig & { signature?: string }>;
      const next = new Map(peers.map((p) => [p.name, p]));
      for (const [name, before] of old) {
        const after = next.get(name);
        if (after !== undefined && after.signature === before.signature) {
          for (const sa of this.#sasOf(name)) sa.peer = after;
          continue;
        }
        this.#reconnects.delete(name);
        for (const sa of this.#sasOf(name)) this.terminateSa(sa, after ? "peer config changed" : "peer removed from the config");
      }
      this.#peers = next;
      for (const peer of peers) if (peer.start === "start" && !this.#hasSa(peer.name)) this.#initiate(peer, true);
    });
  }

  /** Clean shutdown: a Delete to every established peer (not waited for), and every SA forgotten. */
  shutdown(now: number): IkeAction[] {
    return this.#run(now, () => {
      this.#reconnects.clear();
      for (const sa of [...this.#bySpi.values()]) {
        if (sa.state === "established") sendIkeDelete(sa, now);
        this.removeSa(sa, "shutting down");
      }
      this.#dos.wipe();
    });
  }

  /** Every IKE SA, for status. */
  list(): IkeSaStatus[] {
    return [...this.#bySpi.values()].map((sa) => ({
      id: sa.id,
      peer: sa.peerName,
      role: sa.role,
      state: sa.state,
      spiI: spiHex(sa.spiI),
      spiR: spiHex(sa.spiR),
      local: `${sa.local.address}:${sa.local.port}`,
      remote: `${sa.remote.address}:${sa.remote.port}`,
      natT: sa.natT,
      natLocal: sa.natLocal,
      natRemote: sa.natRemote,
      localId: sa.localId && formatIdentity(sa.localId),
      remoteId: sa.remoteId && formatIdentity(sa.remoteId),
      virtualIps: sa.virtualIps,
      remoteCertificate: sa.remoteCertSubject,
      ike: sa.algorithms && describeIke(sa.algorithms),
      createdAt: sa.createdAt,
      establishedAt: sa.establishedAt,
      lastRttMs: sa.lastRttMs,
      rekeyAt: sa.rekeyAt,
      expireAt: sa.ikeExpireAt,
      children: sa.children.map((c) => ({
        id: c.id, state: c.state, spiIn: hex32(c.inboundSpi), spiOut: hex32(c.outboundSpi), esp: describeEsp(c.algorithms),
        localTs: c.localTs.map(formatSelector), remoteTs: c.remoteTs.map(formatSelector), createdAt: c.createdAt,
        rekeyAt: c.rekeyAt, expireAt: c.lingerUntil ?? c.expireAt,
      })),
    }));
  }

  /** IKE SAs by state, for metrics. */
  countByState(): Record<IkeSaState, number> {
    const counts: Record<IkeSaState, number> = { connecting: 0, "half-open": 0, authenticating: 0, established: 0, deleting: 0, rekeyed: 0, closed: 0 };
    for (const sa of this.#bySpi.values()) counts[sa.state]++;
    return counts;
  }

  /**
   * What the core holds, by table: for tests that check memory stays
   * bounded under floods and fuzzing (every table here must shrink back).
   */
  footprint(): { sas: number; byIdentity: number; halfOpenIndex: number; timers: number; childSpis: number; reconnects: number; reassemblyBytes: number; dos: DosStatus } {
    let reassemblyBytes = 0;
    for (const sa of this.#bySpi.values()) reassemblyBytes += sa.fragments.heldBytes;
    return { sas: this.#bySpi.size, byIdentity: this.#byRemoteId.size, halfOpenIndex: this.#byInit.size + this.#initKeys.size, timers: this.#deadlines.size, childSpis: this.#childSpis.size, reconnects: this.#reconnects.size, reassemblyBytes, dos: this.#dos.status() };
  }

  /** Half-open SAs and whether cookies are required now, for metrics and status. */
  dosStatus(): DosStatus {
    return this.#dos.status();
  }

  get peers(): IkePeerConfig[] {
    return [...this.#peers.values()];
  }

  // ---------------------------------------------------------------- dispatch

  #run(now: number, work: () => void): IkeAction[] {
    this.now = now;
    this.#actions = [];
    work();
    const actions = this.#actions;
    this.#actions = [];
    return actions;
  }

  #receive(datagram: Uint8Array, path: Path): void {
    let message;
    try {
      message = decodeMessage(datagram);
    } catch (error) {
      if (error instanceof ParseError) return this.drop(error.reason);
      throw error;
    }
    const header = message.header;
    if (header.exchange === Exchange.IKE_SA_INIT) {
      if (isResponse(header)) {
        const sa = this.#bySpi.get(header.spiI);
        if (sa === undefined || sa.role !== "initiator" || sa.state !== "connecting" || fromInitiator(header)) return this.drop("unknown-spi");
        sa.receiveInitResponse(message, path, this.now);
        return this.#reschedule(sa);
      }
      if (!fromInitiator(header) || header.spiR !== 0n || header.messageId !== 0) return this.drop("invalid-syntax");
      const existing = this.#byInit.get(initKey(header.spiI, path.remote));
      if (existing !== undefined) {
        // A retransmission of a request we answered (§2.1), or a new request reusing the SPI: only the first is answered again.
        if (existing.initRequest !== undefined && equalBytes(existing.initRequest, datagram)) existing.resendInitResponse();
        else this.drop("duplicate-spi");
        return;
      }
      return this.#dos.screen(message, path, this.now, () => respondInit(this, message, path, this.now));
    }
    // The original initiator sets the I flag (§3.1): if it is set we are the responder, whose SPI is SPIr.
    const ourSpi = fromInitiator(header) ? header.spiR : header.spiI;
    const sa = this.#bySpi.get(ourSpi);
    if (sa === undefined || sa.spiI !== header.spiI || sa.spiR !== header.spiR || (sa.role === "responder") !== fromInitiator(header)) {
      return this.drop("unknown-spi");
    }
    sa.receive(message, path, this.now, (target, exchange, payloads) => this.#answer(target, exchange, payloads));
    if (sa.state !== "closed") this.#reschedule(sa);
  }

  #answer(sa: IkeSa, exchange: number, payloads: IkePayload[]): Answer | undefined {
    switch (exchange) {
      case Exchange.IKE_AUTH:
        return answerAuth(sa, payloads);
      case Exchange.INFORMATIONAL:
        return answerInformational(sa, payloads);
      case Exchange.CREATE_CHILD_SA:
        return answerCreateChild(sa, payloads);
      default:
        // An authenticated request of an exchange we do not know still took its message ID: answer it,
        // or the peer retransmits it until it gives the IKE SA up (§1.5 asks for INVALID_SYNTAX here).
        this.drop("unknown-exchange", sa);
        return { payloads: [notify(Notify.INVALID_SYNTAX)] };
    }
  }

  #onTimer(sa: IkeSa): void {
    if (sa.state === "closed") return;
    const now = this.now;
    switch (sa.onTimer(now)) {
      case "dead": {
        const what = nameOf(Exchange, sa.outstandingExchange ?? 0);
        const reason = `no answer to ${what} after ${this.retransmit.tries} retransmissions`;
        if (sa.state === "rekeyed") {
          // Our rekey crossed the peer's, whose new SA took the children, and its answer never came (lost, and
          // the peer deleted this SA since, so retransmissions go unanswered): nothing failed, nothing to restart.
          this.removeSa(sa, `rekeyed (the peer never answered our colliding rekey: ${reason})`);
          return;
        }
        if (sa.state === "established" || sa.state === "deleting") {
          const action = sa.state === "deleting" ? "clear" : sa.peer?.dpdAction ?? "clear";
          this.log("warn", "peer-dead", `${sa.peerName} is unreachable (${reason}); ${action === "restart" ? "clearing its SAs and connecting again" : "clearing its SAs"}`, { ...sa.logFields, action });
          const restart = action === "restart" && sa.peer?.remote !== undefined;
          const peer = sa.peer;
          this.removeSa(sa, "peer unreachable");
          if (restart && peer) this.#initiate(peer, true);
        } else {
          this.fail(sa, "TIMEOUT", reason);
        }
        return;
      }
      case "expired":
        if (sa.state === "rekeyed") return this.removeSa(sa, "rekeyed (the peer never deleted it)");
        if (sa.redundant && sa.state === "established") {
          // §2.8.2: the peer made it in the rekey that lost and should have deleted it. A peer that aborted its rekey
          // when our DELETE of the old SA came (strongSwan: "peer did not notice IKE_SA rekey collision") never will.
          sa.expiresAt = undefined;
          return this.terminateSa(sa, "redundant after a rekey collision, not deleted by the peer");
        }
        this.drop("half-open-expired", sa);
        this.removeSa(sa, "half-open IKE_SA expired", "debug");
        return;
      case "liveness": {
        sa.livenessAt = undefined;
        const peer = sa.peer!;
        const dataPlane = this.options.lastInbound?.(sa.children.map((c) => c.inboundSpi));
        if (dataPlane !== undefined && dataPlane > sa.lastInboundAt) sa.lastInboundAt = dataPlane;
        if (sa.lastInboundAt + peer.dpdMs > now) break;
        if (!sa.busy) sendLivenessCheck(sa, now);
        break;
      }
    }
    if (sa.state === "established") this.#lifetimes(sa);
    this.#reschedule(sa);
  }

  /**
   * Lifetimes (lifetimes.ts, §2.8): replaced children's inbound SAs go after
   * their linger time, expired children are deleted, due ones rekeyed (on
   * time, volume, or before the sequence number runs out), and the IKE SA
   * itself rekeyed or, past its life, deleted.
   */
  #lifetimes(sa: IkeSa): void {
    const now = this.now;
    for (const child of [...sa.children]) {
      if (child.lingerUntil !== undefined && child.lingerUntil <= now) {
        this.removeChild(sa, child, "rekeyed");
      } else if (child.expireAt !== undefined && child.expireAt <= now) {
        // Also a child that lost a rekey collision and still waits for the peer's DELETE (§2.8.1): past its life, it goes.
        this.#deleteChild(sa, child, "life time reached");
      } else if (child.rekeyAt !== undefined && child.rekeyAt <= now) {
        if (child.state === "installed") rekeyChild(sa, child);
        else child.rekeyAt = undefined; // being rekeyed or deleted already
      }
    }
    if (sa.usageAt !== undefined && sa.usageAt <= now) {
      sa.usageAt = now + USAGE_INTERVAL_MS;
      this.#checkUsage(sa);
    }
    if (sa.rekeyAt !== undefined && sa.rekeyAt <= now) {
      rekeyIke(sa);
      if (sa.rekeyAt !== undefined && sa.rekeyAt <= now) sa.rekeyAt = undefined; // one is under way already
    }
    if (sa.ikeExpireAt !== undefined && sa.ikeExpireAt <= now) this.terminateSa(sa, "IKE_SA life time reached");
  }

  /** Volume limits and the sequence number guard, from the data plane's counters. */
  #checkUsage(sa: IkeSa): void {
    const limits = sa.peer!.childLifetime;
    for (const child of [...sa.children]) {
      if (child.state !== "installed") continue;
      const usage = this.options.childUsage?.(child.inboundSpi);
      if (usage === undefined) continue;
      if ((limits.lifeBytes > 0 && usage.bytes >= limits.lifeBytes) || (limits.lifePackets > 0 && usage.packets >= limits.lifePackets)) {
        this.#deleteChild(sa, child, "volume limit reached");
      } else if ((limits.rekeyBytes > 0 && usage.bytes >= limits.rekeyBytes) || (limits.rekeyPackets > 0 && usage.packets >= limits.rekeyPackets)
        || usage.sentSequence >= sequenceRekeyPackets(child.algorithms.esn)) {
        rekeyChild(sa, child);
      }
    }
  }

  /**
   * Deletes one child SA the regular way (§1.4.1): out of the data plane
   * now, a DELETE to the peer, and forgotten when that is answered (until
   * then it is "deleting": a crossing rekey of it gets TEMPORARY_FAILURE and
   * a crossing DELETE an answer without one, §2.25.1).
   */
  #deleteChild(sa: IkeSa, child: ChildSa, reason: string): void {
    this.#unplug(sa, child, reason);
    child.state = "deleting";
    child.rekeyAt = child.expireAt = child.lingerUntil = undefined;
    sa.request(Exchange.INFORMATIONAL, [{ type: Payload.DELETE, protocol: Protocol.ESP, spiSize: 4, spis: [spiToBytes(child.inboundSpi)] }], () => this.removeChild(sa, child, reason), this.now);
  }

  /** Takes a child out of the data plane (child-down), once. */
  #unplug(sa: IkeSa, child: ChildSa, reason: string): void {
    if (child.state === "deleting") return;
    this.emit({ type: "child-down", childId: child.id, ikeSaId: sa.id, peerName: sa.peerName, reason });
    this.log("info", "child-down", `CHILD_SA ${sa.peerName}{${child.id}} with SPIs ${hex32(child.inboundSpi)}_i ${hex32(child.outboundSpi)}_o removed: ${reason}`, { ...sa.logFields, child: child.id, reason });
  }

  /** Re-arms an SA's timer after its deadlines changed outside a call's usual path (children moved to it). */
  reschedule(sa: IkeSa): void {
    this.#reschedule(sa);
  }

  /** Recomputes an SA's liveness deadline and re-arms its timer. */
  #reschedule(sa: IkeSa): void {
    if (sa.state === "closed") return this.#deadlines.schedule(sa, undefined);
    const dpd = sa.peer?.dpdMs ?? 0;
    sa.livenessAt = sa.state === "established" && dpd > 0 && !sa.busy ? sa.lastInboundAt + dpd : undefined;
    this.#deadlines.schedule(sa, sa.nextDeadline());
  }

  // ---------------------------------------------------------------- for SAs and exchanges

  emit(action: IkeAction): void {
    this.#actions.push(action);
  }

  send(datagram: Uint8Array, remote: Endpoint, natT: boolean): void {
    this.#actions.push({ type: "send", datagram, remote: { ...remote }, natT });
  }

  log(level: "debug" | "info" | "warn", event: string, message: string, fields: Record<string, string | number | boolean | undefined>): void {
    this.#actions.push({ type: "log", level, event, message, fields });
  }

  /** A message dropped: counted by reason; logged at debug level, one line per reason per interval (a flood must not flood the log). */
  drop(reason: string, sa?: IkeSa): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + 1;
    const suppressed = this.#logLimiter.allow(`drop:${reason}`, this.now);
    if (suppressed === undefined) return;
    this.log("debug", "ike-drop", `IKE message dropped: ${reason}${suppressed > 0 ? ` (${suppressed} more since the last such line)` : ""}`, sa ? { ...sa.logFields, reason, suppressed } : { reason, suppressed });
  }

  /** A stateless refusal of an IKE_SA_INIT request: counted; logged once per reason per interval. */
  refused(reason: string, detail: string, fields: Record<string, string>): void {
    this.counters.handshakesFailed[reason] = (this.counters.handshakesFailed[reason] ?? 0) + 1;
    const suppressed = this.#logLimiter.allow(`refused:${reason}`, this.now);
    if (suppressed === undefined) return;
    this.log("warn", "ike-refused", `IKE_SA_INIT refused with ${reason}: ${detail}${suppressed > 0 ? ` (${suppressed} more refused so since the last such line)` : ""}`, { ...fields, reason, suppressed });
  }

  newSa(role: "initiator" | "responder", spiI: bigint, local: Endpoint, remote: Endpoint, now: number): IkeSa {
    const sa = new IkeSa(this, this.#nextSaId++, role, spiI, local, remote, now);
    if (role === "initiator") this.#bySpi.set(spiI, sa);
    return sa;
  }

  /** An SA is findable by our SPI (an initiator's is from newSa on). */
  indexSa(sa: IkeSa): void {
    this.#bySpi.set(sa.ourSpi, sa);
  }

  /** A responder's SA is findable by its SPI and, while half-open, by the request that made it. */
  indexHalfOpen(sa: IkeSa): void {
    this.#bySpi.set(sa.spiR, sa);
    const key = initKey(sa.spiI, sa.remote);
    this.#byInit.set(key, sa);
    this.#initKeys.set(sa, key);
    this.#dos.opened(sa);
    this.#reschedule(sa);
  }

  /** A fresh 64-bit IKE SPI, never zero, not in use. */
  newIkeSpi(): bigint {
    for (;;) {
      const bytes = this.random(8);
      const spi = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
      if (spi !== 0n && !this.#bySpi.has(spi)) return spi;
    }
  }

  /** A fresh inbound ESP SPI (≥ 256, RFC 4303 §2.1), reserved for `sa` until a child takes it or the SA closes. */
  allocateChildSpi(sa: IkeSa): number {
    for (;;) {
      const bytes = this.random(4);
      const spi = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
      if (spi < 256 || this.#childSpis.has(spi) || this.options.spiInUse?.(spi)) continue;
      this.#childSpis.add(spi);
      sa.pendingSpis.add(spi);
      return spi;
    }
  }

  /** Gives back an inbound SPI reserved for a negotiation that made no child. */
  releaseChildSpi(sa: IkeSa, spi: number): void {
    if (sa.pendingSpis.delete(spi)) this.#childSpis.delete(spi);
  }

  nextChildId(): number {
    return this.#nextChildId++;
  }

  localFor(natT: boolean): Endpoint {
    const local = this.options.local;
    return { address: local?.address ?? "0.0.0.0", port: natT ? local?.natTPort ?? 4500 : local?.ikePort ?? 500 };
  }

  /** The endpoints a peer may have addressed us at: `local`, or with a wildcard bind each of this host's addresses. */
  localCandidates(local: Endpoint): Endpoint[] {
    const wildcard = local.address === "0.0.0.0" || local.address === "::";
    const addresses = wildcard ? this.options.local?.addresses?.() : undefined;
    return addresses ? addresses.map((address) => ({ address, port: local.port })) : [local];
  }

  /**
   * The data plane saw the peer's ESP arrive, authenticated, from another
   * address (NAT rebinding): IKE follows, so liveness checks and deletes
   * reach it (the issue's "learned from authenticated packets, IKE and ESP").
   */
  updateRemote(ikeSaId: number, remote: Endpoint, now: number): IkeAction[] {
    return this.#run(now, () => {
      for (const sa of this.#bySpi.values()) {
        if (sa.id !== ikeSaId || sa.state !== "established") continue;
        if (sa.remote.address === remote.address && sa.remote.port === remote.port) return;
        sa.remote = { ...remote };
        this.log("info", "peer-address", `${sa.peerName} moved to ${remote.address}:${remote.port} (seen on ESP)`, sa.logFields);
      }
    });
  }

  candidatesFor(remote: Endpoint): IkePeerConfig[] {
    const peers = [...this.#peers.values()];
    const exact = peers.filter((p) => p.remote?.address === remote.address);
    return [...exact, ...peers.filter((p) => p.remote === undefined)];
  }

  hasEstablished(name: string): boolean {
    return this.#sasOf(name).some((sa) => sa.state === "established");
  }

  /** IKE_AUTH completed (either role), or a rekey made the SA (`rekeyed`: no handshake to count or log). */
  established(sa: IkeSa, rekeyed = false): void {
    sa.state = "established";
    sa.establishedAt = this.now;
    sa.expiresAt = undefined;
    const times = schedule(this.now, sa.peer!.ikeLifetime, this.random);
    sa.rekeyAt = times.rekeyAt;
    sa.ikeExpireAt = times.expireAt;
    sa.usageAt = this.options.childUsage ? this.now + USAGE_INTERVAL_MS : undefined;
    if (sa.remoteId !== undefined && sa.remoteIdKey === undefined) {
      sa.remoteIdKey = formatIdentity(sa.remoteId);
      let set = this.#byRemoteId.get(sa.remoteIdKey);
      if (set === undefined) this.#byRemoteId.set(sa.remoteIdKey, (set = new Set()));
      set.add(sa);
    }
    if (rekeyed) return this.#reschedule(sa);
    this.#forgetInit(sa);
    this.#dos.closed(sa);
    this.#reconnects.delete(sa.peerName);
    this.counters.handshakesCompleted++;
    this.log("info", "ike-up", `IKE_SA ${sa.peerName}[${sa.id}] established between ${sa.localId ? formatIdentity(sa.localId) : "?"} and ${sa.remoteId ? formatIdentity(sa.remoteId) : "?"} (${describeIke(sa.algorithms!)})`, {
      ...sa.logFields, localId: sa.localId && formatIdentity(sa.localId), remoteId: sa.remoteId && formatIdentity(sa.remoteId), ike: describeIke(sa.algorithms!), role: sa.role,
    });
  }

  /** The first child SA was refused; the IKE SA stands (§1.2). */
  childFailed(sa: IkeSa, reason: string, detail: string): void {
    this.log("warn", "child-failed", `${sa.peerName}: child SA not established: ${detail}`, { ...sa.logFields, reason });
  }

  /** A handshake failed: counted by reason, logged, the SA forgotten, and a `start`/`restart` peer tried again later. */
  fail(sa: IkeSa, reason: string, detail: string): void {
    this.counters.handshakesFailed[reason] = (this.counters.handshakesFailed[reason] ?? 0) + 1;
    this.log("warn", "ike-failed", `IKE_SA ${sa.peerName}[${sa.id}] failed: ${detail}`, { ...sa.logFields, reason, remoteId: sa.remoteId && formatIdentity(sa.remoteId) });
    const retry = sa.autoRetry && sa.peer !== undefined ? sa.peer : undefined;
    this.removeSa(sa, reason, "debug");
    if (retry) {
      // A timeout is its own pacing (the retransmissions took minutes); a refusal waits.
      if (reason === "TIMEOUT") this.#initiate(retry, true);
      else this.#reconnects.set(retry.name, this.now + this.#retryDelayMs);
    }
  }

  /**
   * The peer deleted an IKE SA (§1.4.1) that we keep up: a peer we connect
   * to with `dpd_action = "restart"` (a road warrior's gateway that
   * restarts or reboots, whose DELETE would otherwise leave the client
   * without a tunnel for good) is connected again after a second, as
   * strongSwan's close_action = start does; an unanswered attempt then
   * retransmits, a refused one waits retry_delay.
   */
  peerDeleted(sa: IkeSa): void {
    const peer = sa.peer;
    if (peer === undefined || peer.remote === undefined || peer.dpdAction !== "restart" || this.#hasSa(peer.name)) return;
    this.#reconnects.set(peer.name, this.now + PEER_DELETE_RECONNECT_MS);
    this.log("info", "ike-reconnect", `${peer.name} deleted the IKE SA; connecting again in ${PEER_DELETE_RECONNECT_MS / 1000} s (dpd_action restart)`, { ...sa.logFields });
  }

  /** Deletes an IKE SA the regular way: children leave the data plane now, the SA when the Delete is answered. */
  terminateSa(sa: IkeSa, reason: string): void {
    if (sa.state !== "established" && sa.state !== "rekeyed") return this.removeSa(sa, reason);
    for (const child of [...sa.children]) this.removeChild(sa, child, reason);
    sa.state = "deleting";
    this.log("info", "ike-deleting", `deleting IKE_SA ${sa.peerName}[${sa.id}]: ${reason}`, { ...sa.logFields, reason });
    sendIkeDelete(sa, this.now);
    this.#reschedule(sa);
  }

  /** Removes a child SA from its IKE SA and the data plane. */
  removeChild(sa: IkeSa, child: ChildSa, reason: string): void {
    const at = sa.children.indexOf(child);
    if (at < 0) return;
    this.#unplug(sa, child, reason);
    sa.children.splice(at, 1);
    this.#childSpis.delete(child.inboundSpi);
    // A peer's rekey whose new child is gone (its initiator deleted it) no longer holds the old one.
    for (const other of sa.children) if (other.peerRekey?.child === child) other.peerRekey = undefined;
  }

  /** Forgets an IKE SA and its children at once (no message sent). */
  removeSa(sa: IkeSa, reason: string, level: "debug" | "info" = "info"): void {
    if (sa.state === "closed") return;
    const wasUp = sa.state === "established" || sa.state === "deleting" || sa.state === "rekeyed";
    for (const child of [...sa.children]) this.removeChild(sa, child, reason);
    for (const spi of sa.pendingSpis) this.#childSpis.delete(spi);
    sa.pendingSpis.clear();
    // A client's address stays its own while it is away (addressPool.ts): released, not forgotten.
    for (const lease of sa.leases.splice(0)) lease.pool.release(lease.identity, lease.family, this.now);
    if (this.#bySpi.get(sa.ourSpi) === sa) this.#bySpi.delete(sa.ourSpi);
    if (sa.remoteIdKey !== undefined) {
      const set = this.#byRemoteId.get(sa.remoteIdKey);
      set?.delete(sa);
      if (set?.size === 0) this.#byRemoteId.delete(sa.remoteIdKey);
    }
    this.#forgetInit(sa);
    this.#dos.closed(sa);
    sa.close();
    this.#deadlines.schedule(sa, undefined);
    this.log(wasUp ? "info" : level, "ike-down", `IKE_SA ${sa.peerName}[${sa.id}] closed: ${reason}`, { ...sa.logFields, reason });
  }

  /** INITIAL_CONTACT (§3.10.1): the peer lost its state; our other SAs with that identity are stale. */
  initialContact(sa: IkeSa): void {
    if (sa.remoteId === undefined) return;
    for (const other of [...(this.#byRemoteId.get(formatIdentity(sa.remoteId)) ?? [])]) {
      if (other === sa || other.peer !== sa.peer) continue;
      this.removeSa(other, "replaced (INITIAL_CONTACT)");
    }
  }

  noteRetransmit(sa: IkeSa, exchange: number, count: number): void {
    this.counters.retransmits++;
    this.log("info", "ike-retransmit", `retransmit ${count} of ${nameOf(Exchange, exchange)} to ${sa.remote.address}:${sa.remote.port}`, { ...sa.logFields, exchange: nameOf(Exchange, exchange), count });
  }

  noteCachedResponse(sa: IkeSa): void {
    this.counters.cachedResponses++;
    this.log("debug", "ike-cached-response", "retransmitted request answered from the cache", sa.logFields);
  }

  noteLivenessRtt(sa: IkeSa, rttMs: number): void {
    sa.lastRttMs = rttMs;
    this.emit({ type: "liveness", ikeSaId: sa.id, peerName: sa.peerName, rttMs });
  }

  /** The peer's address changed on an authenticated message: ESP follows it. */
  noteAddress(sa: IkeSa): void {
    this.emit({ type: "address", ikeSaId: sa.id, peerName: sa.peerName, remote: { ...sa.remote } });
    this.log("info", "peer-address", `${sa.peerName} moved to ${sa.remote.address}:${sa.remote.port}`, sa.logFields);
  }

  // ---------------------------------------------------------------- internals

  #initiate(peer: IkePeerConfig, autoRetry: boolean): void {
    const sa = initiate(this, peer, this.now, autoRetry);
    if (sa.state !== "closed") this.#reschedule(sa);
  }

  /** The half-open index entry of an SA, by the key it was filed under (not its current remote: IKE_AUTH may float it to 4500). */
  #forgetInit(sa: IkeSa): void {
    const key = this.#initKeys.get(sa);
    if (key === undefined) return;
    this.#initKeys.delete(sa);
    if (this.#byInit.get(key) === sa) this.#byInit.delete(key);
  }

  #sasOf(name: string): IkeSa[] {
    return [...this.#bySpi.values()].filter((sa) => sa.peer?.name === name);
  }

  #hasSa(name: string): boolean {
    return this.#sasOf(name).some((sa) => sa.state !== "closed" && sa.state !== "deleting");
  }
}

function initKey(spiI: bigint, remote: Endpoint): string {
  return `${spiI}|${remote.address}|${remote.port}`;
}
