/**
 * Admission of new IKE_SA_INIT requests (RFC 7296 §2.6): what a flood of
 * them, spoofed or not, may cost a responder.
 *
 * A request that is not a retransmission passes these checks in order, each
 * cheaper than what it protects, before any Diffie-Hellman or state:
 *
 *   1. cookies     once `cookieThreshold` half-open SAs (plus recent
 *                  requests answered without state) exist, a request without
 *                  a valid cookie gets N(COOKIE) back, statelessly, and
 *                  nothing else (cookies.ts). A spoofing flooder never sees
 *                  its cookies, so nothing it sends gets further.
 *   2. per source  at most `blockThreshold` half-open SAs per source address
 *                  (strongSwan's block_threshold): dropped silently.
 *   3. in all      at most `initLimitHalfOpen` half-open SAs (strongSwan's
 *                  init_limit_half_open): dropped silently.
 *   4. work        at most `initRatePerSource` admitted requests per second
 *                  per source address (a token bucket): one address cannot
 *                  buy a key exchange per round trip by failing IKE_AUTH
 *                  on purpose or sending KE values that fail late.
 *
 * Cookies stay required until none were needed for CALM_DOWN_MS (as
 * strongSwan does): an initiator whose retransmissions straddle the switch
 * would otherwise see one answered with a cookie and the next without, and
 * the cookie is part of what its AUTH signs.
 *
 * Memory: the half-open table is bounded by check 3, the per-source tables
 * by check 3 and MAX_SOURCES (least recently used evicted), and the log
 * by LogLimiter: one line per cause per interval however many requests.
 * Every refusal is counted in core.counters.drops by reason.
 */
import { Exchange, Flag, Notify, Payload } from "./constants.js";
import { encodeMessage, type DecodedMessage } from "./codec/message.js";
import { findPayload, notifies, notify } from "./codec/payloads.js";
import { CookieSecrets } from "./cookies.js";
import { LogLimiter } from "./logLimiter.js";
import type { IkeCore } from "./core.js";
import type { IkeSa, Path } from "./ikeSa.js";

export interface DosSettings {
  /** Half-open IKE SAs from which a cookie is required; 0 = never (strongSwan's cookie_threshold, 30). */
  cookieThreshold: number;
  /** Half-open IKE SAs one source address may have; 0 = no limit (strongSwan's block_threshold, 5). */
  blockThreshold: number;
  /** Half-open IKE SAs in all; 0 = no limit (strongSwan's init_limit_half_open). */
  initLimitHalfOpen: number;
  /** IKE_SA_INIT requests per second one source address may have processed; 0 = no limit. */
  initRatePerSource: number;
  /** How long one cookie secret is used; the previous one is accepted for as long again. */
  cookieSecretLifetimeMs: number;
}

export const DEFAULT_DOS: DosSettings = {
  cookieThreshold: 30,
  blockThreshold: 5,
  initLimitHalfOpen: 1000,
  initRatePerSource: 20,
  cookieSecretLifetimeMs: 60_000,
};

/** Cookies stay required this long after they were last needed (strongSwan's COOKIE_CALMDOWN_DELAY). */
export const CALM_DOWN_MS = 10_000;
/** Source addresses whose request rate is tracked at once. */
export const MAX_SOURCES = 4096;
/** Requests answered without state count towards the cookie threshold for this long. */
const STATELESS_WINDOW_MS = 10_000;

/** What a refusal is counted as (core.counters.drops). */
export type DosDropReason = "cookie-required" | "cookie-invalid" | "block-threshold" | "half-open-limit" | "init-rate-limit";

export interface DosStatus {
  halfOpen: number;
  cookiesRequired: boolean;
  /** Source addresses with half-open SAs, and with a tracked request rate. */
  sources: number;
  rateTracked: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

type GuardHost = Pick<IkeCore, "send" | "drop" | "log" | "random">;

export class DosGuard {
  readonly settings: DosSettings;
  readonly #cookies: CookieSecrets;
  /** Each half-open responder SA and the address it counts against. */
  readonly #halfOpen = new Map<IkeSa, string>();
  readonly #perSource = new Map<string, number>();
  /** Request-rate buckets by source address, least recently used first. */
  readonly #buckets = new Map<string, Bucket>();
  #cookiesUntil = Number.NEGATIVE_INFINITY;
  #cookieMode = false;
  #statelessWindow = { start: Number.NEGATIVE_INFINITY, count: 0, previous: 0 };
  readonly #limiter = new LogLimiter();

  constructor(private readonly host: GuardHost, settings: Partial<DosSettings> = {}) {
    this.settings = { ...DEFAULT_DOS, ...settings };
    this.#cookies = new CookieSecrets((n) => host.random(n), this.settings.cookieSecretLifetimeMs);
  }

  /**
   * Runs `respond` (the stateful IKE_SA_INIT handler) if the request passes
   * the checks above; otherwise counts the refusal (and answers N(COOKIE)
   * when that is the refusal).
   */
  screen(message: DecodedMessage, path: Path, now: number, respond: () => void): void {
    if (!this.#admit(message, path, now)) return;
    const before = this.#halfOpen.size;
    respond();
    if (this.#halfOpen.size === before) this.#noteStateless(now);
  }

  /** A responder SA became half-open (it answered an IKE_SA_INIT). */
  opened(sa: IkeSa): void {
    if (this.#halfOpen.has(sa)) return;
    const address = sa.remote.address;
    this.#halfOpen.set(sa, address);
    this.#perSource.set(address, (this.#perSource.get(address) ?? 0) + 1);
  }

  /** An SA is no longer half-open (established, failed, expired); no-op for others. */
  closed(sa: IkeSa): void {
    const address = this.#halfOpen.get(sa);
    if (address === undefined) return;
    this.#halfOpen.delete(sa);
    const left = (this.#perSource.get(address) ?? 1) - 1;
    if (left > 0) this.#perSource.set(address, left);
    else this.#perSource.delete(address);
  }

  status(): DosStatus {
    return { halfOpen: this.#halfOpen.size, cookiesRequired: this.#cookieMode, sources: this.#perSource.size, rateTracked: this.#buckets.size };
  }

  /** Forgets the cookie secrets (shutdown). */
  wipe(): void {
    this.#cookies.wipe();
  }

  #admit(message: DecodedMessage, path: Path, now: number): boolean {
    const nonce = findPayload(message.payloads, Payload.NONCE);
    // Without a nonce respondInit drops it as invalid syntax, before any work.
    if (nonce === undefined) return true;
    const settings = this.settings;
    const address = path.remote.address;
    const spiI = message.header.spiI;
    // §2.6: the cookie is the first payload.
    const first = message.payloads[0];
    const offered = first !== undefined && notifies([first])[0]?.notifyType === Notify.COOKIE ? notifies([first])[0]!.data : undefined;
    if (this.#cookieRequired(now) && (offered === undefined || !this.#cookies.verify(offered, spiI, nonce.data, address, now))) {
      const cookie = this.#cookies.make(spiI, nonce.data, address, now);
      const answer = encodeMessage({ spiI, spiR: 0n, exchange: Exchange.IKE_SA_INIT, flags: Flag.RESPONSE, messageId: 0 }, [notify(Notify.COOKIE, cookie)]);
      this.host.send(answer, path.remote, path.natT);
      this.host.drop(offered === undefined ? "cookie-required" : "cookie-invalid");
      return false;
    }
    if (settings.blockThreshold > 0 && (this.#perSource.get(address) ?? 0) >= settings.blockThreshold) {
      return this.#refuse("block-threshold", now, address, `${address} has ${settings.blockThreshold} half-open IKE SAs (block_threshold)`);
    }
    if (settings.initLimitHalfOpen > 0 && this.#halfOpen.size >= settings.initLimitHalfOpen) {
      return this.#refuse("half-open-limit", now, address, `${this.#halfOpen.size} half-open IKE SAs (init_limit_half_open ${settings.initLimitHalfOpen})`);
    }
    if (settings.initRatePerSource > 0 && !this.#takeToken(address, now)) {
      return this.#refuse("init-rate-limit", now, address, `more than ${settings.initRatePerSource} IKE_SA_INIT requests per second from ${address} (init_rate_per_source)`);
    }
    return true;
  }

  #refuse(reason: DosDropReason, now: number, address: string, detail: string): false {
    this.host.drop(reason);
    const left = this.#limiter.allow(reason, now);
    if (left !== undefined) {
      this.host.log("warn", "ike-dos", `IKE_SA_INIT dropped: ${detail}${left > 0 ? `; ${left} more dropped for this reason since the last such line` : ""}`, { reason, remote: address, suppressed: left });
    }
    return false;
  }

  /** §2.6: cookies are required while many SAs are half-open, and for CALM_DOWN_MS after. */
  #cookieRequired(now: number): boolean {
    const threshold = this.settings.cookieThreshold;
    if (threshold <= 0) return false;
    const pressure = this.#halfOpen.size + this.#recentStateless(now);
    if (pressure >= threshold || now < this.#cookiesUntil) {
      this.#cookiesUntil = now + CALM_DOWN_MS;
      if (!this.#cookieMode) {
        this.#cookieMode = true;
        this.host.log("warn", "ike-cookies-on", `requiring cookies for IKE_SA_INIT: ${this.#halfOpen.size} half-open IKE SAs, ${this.#recentStateless(now)} requests answered without state recently (cookie_threshold ${threshold})`, { halfOpen: this.#halfOpen.size, threshold });
      }
      return true;
    }
    if (this.#cookieMode) {
      this.#cookieMode = false;
      this.host.log("info", "ike-cookies-off", `cookies no longer required: ${this.#halfOpen.size} half-open IKE SAs`, { halfOpen: this.#halfOpen.size });
    }
    return false;
  }

  /**
   * Requests admitted but answered without state (a refusal after proposal
   * matching, a KE value that failed after the key exchange) cost work
   * without leaving a half-open SA to count: they count for a while instead.
   */
  #noteStateless(now: number): void {
    this.#recentStateless(now);
    this.#statelessWindow.count++;
  }

  #recentStateless(now: number): number {
    const window = this.#statelessWindow;
    if (now - window.start >= STATELESS_WINDOW_MS) {
      window.previous = now - window.start >= 2 * STATELESS_WINDOW_MS ? 0 : window.count;
      window.count = 0;
      window.start = now;
    }
    return Math.max(window.count, window.previous);
  }

  #takeToken(address: string, now: number): boolean {
    const rate = this.settings.initRatePerSource;
    let bucket = this.#buckets.get(address);
    if (bucket !== undefined) {
      this.#buckets.delete(address);
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) * rate) / 1000);
      bucket.at = now;
    } else {
      bucket = { tokens: rate, at: now };
      if (this.#buckets.size >= MAX_SOURCES) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    this.#buckets.set(address, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
