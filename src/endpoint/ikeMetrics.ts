/**
 * The IKE shell's metrics, in the endpoint's prom-client registry beside the
 * data plane's: IKE SAs by state, handshakes completed and failed by reason,
 * retransmissions, requests answered from the cache, messages dropped by
 * reason (all read from the core's counters at scrape time), and the
 * liveness round trip per peer as a histogram (observed once per check);
 * for a gateway, its road-warrior clients per peer config and each virtual
 * IP pool's size and addresses by state.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { IkeCore } from "../ike/core.js";
import type { AddressPool } from "../ike/addressPool.js";

/** Liveness RTT buckets: 100 µs on a LAN to 2 s across continents. */
const RTT_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];

export class IkeMetrics {
  readonly #rtt: Histogram<"peer">;

  constructor(registry: Registry, core: () => IkeCore, pools: () => Iterable<AddressPool> = () => []) {
    const registers = [registry];
    new Gauge({
      name: "sluice_ike_sas", help: "IKE SAs by state.", labelNames: ["state"], registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(core().countByState())) if (state !== "closed") this.set({ state }, n);
      },
    });
    new Counter({
      name: "sluice_ike_handshakes_total", help: "IKE handshakes (IKE_SA_INIT + IKE_AUTH) by result; failures by reason (the notify, or TIMEOUT).", labelNames: ["result", "reason"], registers,
      collect() {
        const counters = core().counters;
        this.reset();
        this.inc({ result: "completed", reason: "" }, counters.handshakesCompleted);
        for (const [reason, n] of Object.entries(counters.handshakesFailed)) this.inc({ result: "failed", reason }, n);
      },
    });
    new Counter({
      name: "sluice_ike_retransmits_total", help: "IKE requests retransmitted.", registers,
      collect() {
        this.reset();
        this.inc(core().counters.retransmits);
      },
    });
    new Counter({
      name: "sluice_ike_cached_responses_total", help: "Retransmitted IKE requests answered from the response cache.", registers,
      collect() {
        this.reset();
        this.inc(core().counters.cachedResponses);
      },
    });
    new Counter({
      name: "sluice_ike_drops_total", help: "IKE messages dropped, by reason.", labelNames: ["reason"], registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(core().counters.drops)) this.inc({ reason }, n);
      },
    });
    new Gauge({
      name: "sluice_ike_cookies_required", help: "1 while new IKE_SA_INIT requests must carry a cookie (RFC 7296 §2.6: too many half-open IKE SAs).", registers,
      collect() {
        this.set(core().dosStatus().cookiesRequired ? 1 : 0);
      },
    });
    new Gauge({
      name: "sluice_ike_clients", help: "Clients: established IKE SAs in which sluice is the responder, per peer config; with_vip those holding a virtual IP from a pool.", labelNames: ["peer", "vip"], registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const sa of core().list()) {
          if (sa.role !== "responder" || sa.state !== "established") continue;
          const key = `${sa.peer}\0${sa.virtualIps.length > 0 ? "yes" : "no"}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
        for (const [key, n] of counts) {
          const [peer, vip] = key.split("\0") as [string, string];
          this.set({ peer, vip }, n);
        }
      },
    });
    new Gauge({
      name: "sluice_pool_size", help: "Addresses a virtual IP pool can hand out.", labelNames: ["pool"], registers,
      collect() {
        this.reset();
        for (const pool of pools()) this.set({ pool: pool.name }, pool.usage().size);
      },
    });
    new Gauge({
      name: "sluice_pool_addresses", help: "A pool's leased addresses: online (held by a live IKE SA) or offline (kept for a client that left, given to it again when it comes back).", labelNames: ["pool", "state"], registers,
      collect() {
        this.reset();
        for (const pool of pools()) {
          const usage = pool.usage();
          this.set({ pool: pool.name, state: "online" }, usage.online);
          this.set({ pool: pool.name, state: "offline" }, usage.offline);
        }
      },
    });
    this.#rtt = new Histogram({ name: "sluice_ike_liveness_rtt_seconds", help: "Round trip of answered liveness checks (RFC 7296 §1.4), per peer.", labelNames: ["peer"], buckets: RTT_SECONDS, registers });
  }

  observeRtt(peer: string, rttMs: number): void {
    this.#rtt.observe({ peer }, rttMs / 1000);
  }
}
