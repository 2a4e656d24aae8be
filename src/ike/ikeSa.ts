/**
 * One IKE SA: its state, its keys, and the reliable exchange of RFC 7296
 * §2.1–§2.3 that every exchange rides on.
 *
 *   requests we send:     one outstanding (window size 1), the rest queued;
 *                         retransmitted with exponential backoff, the same
 *                         bytes each time; given up after `tries`
 *   requests we receive:  processed once, in message-ID order; the response
 *                         is cached, and a retransmitted request (the ID
 *                         before the expected one, ICV verified) gets the
 *                         cached bytes again, never a second processing
 *
 * What each exchange means lives in exchanges/; this file only moves
 * messages, keeps the windows and the timers, and knows which messages may
 * change state: none that fail the ICV, and no unencrypted one once keys
 * exist.
 */
import type { IkeCore } from "./core.js";
import type { IkePeerConfig } from "./config.js";
import { Exchange, Flag } from "./constants.js";
import { encodeMessage, isResponse, openSk, type DecodedMessage, type HeaderFields } from "./codec/message.js";
import { Reassembler, largestMessage, retransmissionTrigger, sealMessage } from "./fragments.js";
import type { IkePayload } from "./codec/payloads.js";
import { ParseError, spiHex } from "./codec/bytes.js";
import type { Identity } from "./identity.js";
import type { KeyExchange } from "./crypto/keyExchange.js";
import type { IkeAlgorithms } from "./proposals.js";
import { wipeIkeKeys, type IkeKeys } from "./keySchedule.js";
import type { Endpoint } from "./natDetection.js";
import { SkCipher } from "./sk.js";
import type { ChildSa } from "./childSa.js";
import type { AddressPool } from "./addressPool.js";

export type IkeSaState =
  /** Initiator: IKE_SA_INIT sent. */
  | "connecting"
  /** Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open). */
  | "half-open"
  /** Initiator: IKE_AUTH sent. */
  | "authenticating"
  | "established"
  /** A Delete for the IKE SA sent; waiting for its answer. */
  | "deleting"
  /** Replaced by a rekey (§2.18): its children moved on; it only waits for its DELETE. */
  | "rekeyed"
  | "closed";

/** Where a datagram came from or goes to. */
export interface Path {
  local: Endpoint;
  remote: Endpoint;
  /** On the NAT-T port, behind the non-ESP marker. */
  natT: boolean;
}

type ResponseHandler = (payloads: IkePayload[], message: DecodedMessage) => void;

interface Request {
  exchange: number;
  payloads: IkePayload[];
  onResponse: ResponseHandler;
  /** For the liveness histogram: a DPD request. */
  liveness?: boolean;
}

interface Outstanding extends Request {
  messageId: number;
  /** The request as sent: one datagram, or its RFC 7383 fragments. */
  datagrams: Uint8Array[];
  natT: boolean;
  firstSentAt: number;
  retransmits: number;
  deadline: number;
}

/** What a request handler answers: the response's payloads, and what to do once it is sent. */
export interface Answer {
  payloads: IkePayload[];
  after?: () => void;
}

export class IkeSa {
  state: IkeSaState;
  /** The matched peer config (a responder knows it only after IKE_AUTH). */
  peer: IkePeerConfig | undefined;
  /** A responder's peers that the source address allows, before IDi picks one. */
  candidates: IkePeerConfig[] = [];
  spiR = 0n;
  natT = false;
  /** A NAT in front of us (the peer's DESTINATION hash did not match): we send keepalives. */
  natLocal = false;
  /** A NAT in front of the peer. */
  natRemote = false;
  algorithms: IkeAlgorithms | undefined;
  ni: Uint8Array | undefined;
  nr: Uint8Array | undefined;
  keyExchange: KeyExchange | undefined;
  keys: IkeKeys | undefined;
  /** The IKE_SA_INIT request and response exactly as sent (RealMessage1/2 of §2.15). */
  initRequest: Uint8Array | undefined;
  initResponse: Uint8Array | undefined;
  localId: Identity | undefined;
  remoteId: Identity | undefined;
  /** formatIdentity(remoteId) once established: the SA's key in the core's index by identity. */
  remoteIdKey: string | undefined;
  readonly children: ChildSa[] = [];
  /** Virtual IPs: a client's given by the gateway; a gateway's leases to this client (released when the SA goes). */
  virtualIps: string[] = [];
  /** The subject DN of the certificate the peer authenticated with (strongSwan's notation), for status; undefined with a PSK. */
  remoteCertSubject: string | undefined;
  leases: { pool: AddressPool; identity: string; family: 4 | 6 }[] = [];
  /** Inbound SPIs reserved for child SAs being negotiated (released when the SA closes). */
  readonly pendingSpis = new Set<number>();
  establishedAt: number | undefined;
  /** Last authenticated message from the peer. */
  lastInboundAt: number;
  /** The last liveness round trip, ms. */
  lastRttMs: number | undefined;
  /**
   * A responder's half-open SA is forgotten at this time; a rekeyed one too
   * (the peer should have deleted it); and a redundant one, made by the
   * peer's rekey that lost a collision (§2.8.2), is deleted by us then if
   * the peer has not deleted it (`redundant`).
   */
  expiresAt: number | undefined;
  /** Made by the peer's IKE rekey that lost a collision: the peer is to delete it. */
  redundant = false;
  /** When the next liveness check is due (dpd), if enabled and established. */
  livenessAt: number | undefined;
  /** Lifetimes (lifetimes.ts): when to rekey the IKE SA and when it expires. */
  rekeyAt: number | undefined;
  ikeExpireAt: number | undefined;
  /** When to look at the children's traffic next (rekey on volume, before the sequence number runs out). */
  usageAt: number | undefined;
  /** Our rekey of this IKE SA in flight: its nonce and the new SPI (§2.8.2). */
  ourIkeRekey: { ni: Uint8Array; spi: bigint } | undefined;
  /** The peer's rekey of it that we answered while ours was in flight: the new SA and that exchange's nonces. */
  peerIkeRekey: { sa: IkeSa; ni: Uint8Array; nr: Uint8Array } | undefined;
  /** An attempt made for a `start` or `restart` peer: it is retried when it fails. */
  autoRetry = false;
  /** RFC 7383 fragmentation agreed in IKE_SA_INIT: big encrypted messages go out in fragments. */
  fragmentation = false;
  /** Inbound fragments being put together (fragments.ts). */
  readonly fragments = new Reassembler();
  /** Bumped whenever a deadline changes: stale timer entries are ignored (core.ts). */
  timerStamp = 0;
  timerLive = false;
  #out: SkCipher | undefined;
  #in: SkCipher | undefined;
  #nextMessageId = 0;
  #outstanding: Outstanding | undefined;
  readonly #queue: Request[] = [];
  #expectedRequestId = 0;
  #cachedResponse: { messageId: number; datagrams: Uint8Array[] } | undefined;

  constructor(
    readonly core: IkeCore,
    readonly id: number,
    readonly role: "initiator" | "responder",
    readonly spiI: bigint,
    public local: Endpoint,
    public remote: Endpoint,
    readonly createdAt: number,
  ) {
    this.state = role === "initiator" ? "connecting" : "half-open";
    this.lastInboundAt = createdAt;
  }

  /** Our SPI: how messages to us are found. */
  get ourSpi(): bigint {
    return this.role === "initiator" ? this.spiI : this.spiR;
  }

  get peerName(): string {
    return this.peer?.name ?? this.candidates[0]?.name ?? "?";
  }

  /** Log fields that identify this SA (never a key or a nonce). */
  get logFields(): Record<string, string | number | undefined> {
    return {
      peer: this.peerName,
      ikeSa: this.id,
      spiI: spiHex(this.spiI),
      spiR: spiHex(this.spiR),
      remote: `${this.remote.address}:${this.remote.port}`,
    };
  }

  /** Installs the keys and the SK ciphers (after IKE_SA_INIT). */
  setKeys(keys: IkeKeys): void {
    this.keys = keys;
    const ours = this.role === "initiator" ? keys.skEi : keys.skEr;
    const theirs = this.role === "initiator" ? keys.skEr : keys.skEi;
    this.#out = new SkCipher(this.algorithms!.cipher.id, ours);
    this.#in = new SkCipher(this.algorithms!.cipher.id, theirs);
  }

  get hasKeys(): boolean {
    return this.#out !== undefined;
  }

  #header(exchange: number, messageId: number, response: boolean): HeaderFields {
    return {
      spiI: this.spiI,
      spiR: this.spiR,
      exchange,
      flags: (this.role === "initiator" ? Flag.INITIATOR : 0) | (response ? Flag.RESPONSE : 0),
      messageId,
    };
  }

  // ---------------------------------------------------------------- requests we send

  /**
   * IKE_SA_INIT goes out in the clear and is message 0. A retry (cookie,
   * INVALID_KE_PAYLOAD) replaces the outstanding request with a new one of
   * the same ID (§2.6, §1.2).
   */
  sendInit(payloads: IkePayload[], onResponse: ResponseHandler, now: number): Uint8Array {
    const datagram = encodeMessage(this.#header(Exchange.IKE_SA_INIT, 0, false), payloads);
    this.#nextMessageId = 1;
    this.#transmitNew({ exchange: Exchange.IKE_SA_INIT, payloads, onResponse }, 0, [datagram], now);
    return datagram;
  }

  /** Queues an encrypted request; it goes out when the one before it is answered. */
  request(exchange: number, payloads: IkePayload[], onResponse: ResponseHandler, now: number, liveness = false): void {
    this.#queue.push({ exchange, payloads, onResponse, liveness });
    this.#sendNext(now);
  }

  get busy(): boolean {
    return this.#outstanding !== undefined || this.#queue.length > 0;
  }

  #sendNext(now: number): void {
    if (this.#outstanding !== undefined || this.state === "closed") return;
    const next = this.#queue.shift();
    if (next === undefined) return;
    const messageId = this.#nextMessageId++;
    const datagrams = this.#seal(this.#header(next.exchange, messageId, false), next.payloads);
    this.#transmitNew(next, messageId, datagrams, now);
  }

  /** An encrypted message as datagrams: its fragments when agreed and it is too big for one (RFC 7383 §2.5). */
  #seal(header: HeaderFields, payloads: IkePayload[]): Uint8Array[] {
    const largest = this.fragmentation ? largestMessage(this.core.fragmentation, this.remote, this.natT) : undefined;
    return sealMessage(header, payloads, this.#out!, largest);
  }

  #sendAll(datagrams: readonly Uint8Array[]): void {
    for (const datagram of datagrams) this.core.send(datagram, this.remote, this.natT);
  }

  #transmitNew(request: Request, messageId: number, datagrams: Uint8Array[], now: number): void {
    const policy = this.core.retransmit;
    this.#outstanding = { ...request, messageId, datagrams, natT: this.natT, firstSentAt: now, retransmits: 0, deadline: now + policy.timeoutMs };
    this.#sendAll(datagrams);
  }

  /** §2.1: the retransmission timer of the outstanding request. Returns false when the peer is given up on. */
  #retransmit(now: number): boolean {
    const out = this.#outstanding!;
    const policy = this.core.retransmit;
    if (out.retransmits >= policy.tries) return false;
    out.retransmits++;
    out.deadline = now + policy.timeoutMs * policy.base ** out.retransmits;
    this.core.noteRetransmit(this, out.exchange, out.retransmits);
    this.#sendAll(out.datagrams);
    return true;
  }

  // ---------------------------------------------------------------- receiving

  /**
   * A message for this SA (its SPIs matched). Decrypts, checks message IDs,
   * and hands requests to `answer` and responses to the outstanding
   * request's handler. Drops are counted by reason.
   */
  receive(message: DecodedMessage, path: Path, now: number, answer: (sa: IkeSa, exchange: number, payloads: IkePayload[], path: Path) => Answer | undefined): void {
    const header = message.header;
    if (isResponse(header)) {
      const out = this.#outstanding;
      if (out === undefined || header.messageId !== out.messageId || header.exchange !== out.exchange) {
        return this.core.drop("unexpected-response", this);
      }
      const payloads = this.#decrypt(message);
      if (payloads === null) return;
      this.#authenticated(path, now);
      this.#outstanding = undefined;
      if (out.liveness && out.retransmits === 0) this.core.noteLivenessRtt(this, now - out.firstSentAt);
      out.onResponse(payloads, message);
      this.#sendNext(now);
      return;
    }
    if (!this.hasKeys) return this.core.drop("unexpected-request", this);
    const id = header.messageId;
    if (this.#cachedResponse !== undefined && id === this.#cachedResponse.messageId) {
      // A retransmitted request: answered from the cache once its ICV verifies (§2.1); a fragmented one on its fragment 1 only (RFC 7383 §2.6.1).
      if (message.skf !== undefined ? !retransmissionTrigger(message, this.#in!, (reason) => this.core.drop(reason, this)) : this.#decrypt(message) === null) return;
      this.core.noteCachedResponse(this);
      this.#sendAll(this.#cachedResponse.datagrams);
      return;
    }
    if (id !== this.#expectedRequestId) return this.core.drop("message-id-out-of-window", this);
    const payloads = this.#decrypt(message);
    if (payloads === null) return;
    this.#expectedRequestId++;
    this.#authenticated(path, now);
    const result = answer(this, header.exchange, payloads, path);
    if (result === undefined) return;
    const datagrams = this.#seal(this.#header(header.exchange, id, true), result.payloads);
    this.#cachedResponse = { messageId: id, datagrams };
    this.#sendAll(datagrams);
    result.after?.();
  }

  /** The inner payloads, or null (counted) when the ICV fails or the plaintext does not parse; null too while fragments are missing. */
  #decrypt(message: DecodedMessage): IkePayload[] | null {
    if (message.skf !== undefined && this.#in !== undefined) {
      try {
        return this.fragments.take(message, this.#in, this.core.fragmentation, this.core.now, (reason) => this.core.drop(reason, this));
      } catch (error) {
        if (!(error instanceof ParseError)) throw error;
        this.core.drop(error.reason, this);
        return null;
      }
    }
    if (message.sk === undefined || this.#in === undefined) {
      this.core.drop("not-encrypted", this);
      return null;
    }
    try {
      const payloads = openSk(message, this.#in);
      if (payloads === null) this.core.drop("bad-icv", this);
      return payloads;
    } catch (error) {
      // Anything but a ParseError is a bug: the core's safety net counts it as "internal-error" (the fuzzer looks for those).
      if (!(error instanceof ParseError)) throw error;
      this.core.drop(error.reason, this);
      return null;
    }
  }

  /**
   * An authenticated message: the peer is alive, and where it came from is
   * where it is (§2.23: behind a NAT its address and port may change; only
   * an authenticated message may move the SA).
   */
  #authenticated(path: Path, now: number): void {
    this.lastInboundAt = now;
    if (path.natT && !this.natT) this.natT = true;
    if (path.remote.address !== this.remote.address || path.remote.port !== this.remote.port) {
      const moved = this.state === "established" || this.state === "deleting";
      this.remote = path.remote;
      if (moved) this.core.noteAddress(this);
    }
    this.local = path.local;
  }

  /** An IKE_SA_INIT response: the handler of the outstanding IKE_SA_INIT request (unencrypted by nature). */
  receiveInitResponse(message: DecodedMessage, path: Path, now: number): void {
    const out = this.#outstanding;
    if (out === undefined || out.exchange !== Exchange.IKE_SA_INIT || message.header.messageId !== 0) return this.core.drop("unexpected-response", this);
    this.#outstanding = undefined;
    this.lastInboundAt = now;
    this.remote = path.remote;
    this.local = path.local;
    out.onResponse(message.payloads, message);
  }

  /** A responder's IKE_SA_INIT response, kept to answer retransmitted requests. */
  cacheInitResponse(datagram: Uint8Array): void {
    this.#cachedResponse = { messageId: 0, datagrams: [datagram] };
    this.#expectedRequestId = 1;
  }

  resendInitResponse(): void {
    if (this.#cachedResponse?.messageId === 0) {
      this.core.noteCachedResponse(this);
      this.#sendAll(this.#cachedResponse.datagrams);
    }
  }

  // ---------------------------------------------------------------- timers

  /** The earliest time this SA needs the clock. */
  nextDeadline(): number | undefined {
    let at = this.#outstanding?.deadline;
    const consider = (t: number | undefined): void => {
      if (t !== undefined && (at === undefined || t < at)) at = t;
    };
    for (const t of [this.expiresAt, this.livenessAt]) consider(t);
    // Lifetimes are acted on only while established (IkeCore's #lifetimes): a rekeyed or deleting SA
    // that kept one past due would be due again at once, for ever (seen: sluice spun at 100% CPU when
    // the usage check came due on an IKE SA waiting, rekeyed, for the answer to its colliding rekey).
    if (this.state === "established") {
      for (const t of [this.rekeyAt, this.ikeExpireAt, this.usageAt]) consider(t);
      for (const child of this.children) for (const t of [child.rekeyAt, child.expireAt, child.lingerUntil]) consider(t);
    }
    return at;
  }

  /**
   * The clock reached a deadline. Returns "dead" when the peer did not
   * answer the last retransmission, "expired" when a half-open SA timed out.
   */
  onTimer(now: number): "dead" | "expired" | "liveness" | undefined {
    if (this.#outstanding !== undefined && now >= this.#outstanding.deadline && !this.#retransmit(now)) return "dead";
    if (this.expiresAt !== undefined && now >= this.expiresAt) return "expired";
    if (this.livenessAt !== undefined && now >= this.livenessAt) return "liveness";
    return undefined;
  }

  /** What the outstanding request is (for the reason a dead peer is logged with). */
  get outstandingExchange(): number | undefined {
    return this.#outstanding?.exchange;
  }

  /** Forgets keys and pending work; the SA answers nothing more. */
  close(): void {
    this.state = "closed";
    this.#outstanding = undefined;
    this.#queue.length = 0;
    this.#cachedResponse = undefined;
    this.fragments.clear();
    this.keyExchange?.wipe();
    this.keyExchange = undefined;
    if (this.keys) wipeIkeKeys(this.keys);
    this.#out?.wipe();
    this.#in?.wipe();
    for (const nonce of [this.ni, this.nr]) nonce?.fill(0);
    this.expiresAt = undefined;
    this.livenessAt = undefined;
    this.rekeyAt = undefined;
    this.ikeExpireAt = undefined;
    this.usageAt = undefined;
    this.ourIkeRekey = undefined;
    this.peerIkeRekey = undefined;
  }
}
