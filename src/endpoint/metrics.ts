/**
 * The endpoint's metrics, through prom-client (the library Node services use
 * for Prometheus), served over HTTP by `sluice up --metrics HOST:PORT`.
 *
 * Why counters are read at scrape time: the data path already counts (the
 * engine per SA and per direction, the forwarder per drop reason), and
 * adding to a prom-client counter per packet would cost on every packet.
 * So each counter has a collect() that copies the current values when
 * Prometheus asks, and nothing happens per packet. SA labels come from the
 * live peer table (peer name, SPI, direction), so children installed at run
 * time show up and removed ones go. Histograms are observed once per batch
 * (sizes and submit-to-completion latency), never per packet; the process
 * metrics (memory, event-loop lag, GC) are prom-client's defaults.
 *
 * The registry is the endpoint's, exposed so that the control plane (the IKE
 * shell) registers its own metrics beside these and they are served on the
 * same page.
 */
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Engine } from "../engine/engine.js";
import type { SaHandle } from "../engine/saTable.js";
import type { EndpointCounters } from "./forwarder.js";
import type { PeerTable } from "./peerTable.js";

/** What the metrics read, at scrape time. */
export interface MetricsSource {
  engine: Engine;
  table: PeerTable;
  /** The endpoint's counters (reading them refreshes the device counters). */
  counters(): EndpointCounters;
}

type SaLabels = { peer: string; spi: string; direction: "in" | "out" };

/** Batch sizes: a batch holds at most 64 packets in the endpoint. */
const BATCH_PACKETS = [1, 2, 4, 8, 16, 32, 48, 64];
/** Batch latency, submit to in-order completion: 20 µs (inline) to 80 ms (a queue behind slow workers). */
const BATCH_SECONDS = [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08];

/**
 * The endpoint's registry and the histograms it feeds per batch.
 *
 * @example The IKE shell adding its own metric beside the endpoint's.
 * ```ts
 * import { Counter } from "prom-client";
 * const handshakes = new Counter({ name: "sluice_ike_handshakes_total", help: "IKE handshakes by result.", labelNames: ["result"], registers: [endpoint.metrics.registry] });
 * handshakes.inc({ result: "ok" });
 * ```
 */
export class EndpointMetrics {
  readonly registry = new Registry();
  readonly #batchPackets: Histogram<"direction">;
  readonly #batchSeconds: Histogram<"direction">;
  readonly #observers: { seal: { packets: (v: number) => void; seconds: (v: number) => void }; open: { packets: (v: number) => void; seconds: (v: number) => void } };

  constructor(source: MetricsSource, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const { engine, table } = source;
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    /** Every SA of the live table with its labels: inbound SAs until removed, outbound ones until retired. */
    const liveSas = (): [SaHandle, SaLabels][] => {
      const out: [SaHandle, SaLabels][] = [];
      for (const peer of table.peers) {
        for (const child of peer.children) {
          out.push([child.in, { peer: peer.name, spi: spiLabel(child.in.spi), direction: "in" }]);
          if (child.outboundActive) out.push([child.out, { peer: peer.name, spi: spiLabel(child.out.spi), direction: "out" }]);
        }
      }
      return out;
    };
    const saLabelNames = ["peer", "spi", "direction"] as const;
    new Counter({
      name: "sluice_sa_packets_total", help: "Packets sealed (out) or opened (in) per SA.", labelNames: saLabelNames, registers,
      collect() {
        this.reset();
        for (const [sa, labels] of liveSas()) this.inc(labels, sa.counters.packets);
      },
    });
    new Counter({
      name: "sluice_sa_bytes_total", help: "Inner packet bytes per SA.", labelNames: saLabelNames, registers,
      collect() {
        this.reset();
        for (const [sa, labels] of liveSas()) this.inc(labels, sa.counters.bytes);
      },
    });
    new Counter({
      name: "sluice_sa_drops_total", help: "Packets dropped per SA, by reason.", labelNames: [...saLabelNames, "reason"], registers,
      collect() {
        this.reset();
        for (const [sa, labels] of liveSas()) {
          for (const [reason, n] of Object.entries(sa.counters.drops)) this.inc({ ...labels, reason }, n ?? 0);
        }
      },
    });
    new Gauge({
      name: "sluice_sa_sequence", help: "Last sequence number sent (out) or highest accepted (in).", labelNames: saLabelNames, registers,
      collect() {
        this.reset();
        for (const [sa, labels] of liveSas()) this.set(labels, Number(engine.saSeq(sa)));
      },
    });

    const byDirection = (name: string, help: string, read: (stats: ReturnType<Engine["stats"]>) => { seal: number; open: number }): void => {
      new Counter({
        name, help, labelNames: ["direction"], registers,
        collect() {
          const values = read(engine.stats());
          this.reset();
          this.inc({ direction: "seal" }, values.seal);
          this.inc({ direction: "open" }, values.open);
        },
      });
    };
    byDirection("sluice_engine_batches_total", "Batches completed by direction.", (s) => ({ seal: s.seal.batches, open: s.open.batches }));
    byDirection("sluice_engine_inline_batches_total", "Of those, batches small enough to run on the main thread (no worker wake-up).",
      (s) => ({ seal: s.seal.inline, open: s.open.inline }));
    const engineCounter = (name: string, help: string, read: (stats: ReturnType<Engine["stats"]>) => number): void => {
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          this.inc(read(engine.stats()));
        },
      });
    };
    engineCounter("sluice_engine_backpressure_total", "Times slots or batch regions ran out.", (s) => s.backpressure);
    engineCounter("sluice_engine_worker_restarts_total", "Worker threads that died and were replaced.", (s) => s.workerRestarts);
    engineCounter("sluice_engine_worker_failures_total", "Batches failed because their worker died or threw.", (s) => s.workerFailures);
    new Gauge({
      name: "sluice_engine_slots_free", help: "Free packet buffers.", registers,
      collect() {
        this.set(engine.freeSlots);
      },
    });
    new Gauge({
      name: "sluice_engine_batches_in_flight", help: "Batches submitted and not yet delivered.", registers,
      collect() {
        this.set(engine.inFlight);
      },
    });

    new Counter({
      name: "sluice_endpoint_drops_total", help: "Packets the endpoint dropped before or after the engine, by reason.", labelNames: ["reason"], registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(source.counters().drops)) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: "sluice_endpoint_keepalives_total", help: "NAT keepalives received and sent.", labelNames: ["direction"], registers,
      collect() {
        const counters = source.counters();
        this.reset();
        this.inc({ direction: "in" }, counters.keepalivesIn);
        this.inc({ direction: "out" }, counters.keepalivesOut);
      },
    });
    new Counter({
      name: "sluice_endpoint_control_datagrams_total", help: "IKE datagrams handed to the control plane (in) and sent for it (out).", labelNames: ["direction"], registers,
      collect() {
        const counters = source.counters();
        this.reset();
        this.inc({ direction: "in" }, counters.controlIn);
        this.inc({ direction: "out" }, counters.controlOut);
      },
    });
    // Only where the path can tell (the native one): a 0 that means "unknown" would mislead.
    if (source.counters().udpReceiveOverflows !== null) {
      new Counter({
        name: "sluice_udp_receive_overflows_total", help: "Datagrams the kernel dropped at the UDP socket because its receive buffer was full.", registers,
        collect() {
          this.reset();
          this.inc(source.counters().udpReceiveOverflows ?? 0);
        },
      });
    }
    new Counter({
      name: "sluice_tun_offload_total",
      help: "TUN offloads: reads, TCP super-packets among them, packets handed out, checksums completed, malformed reads, writes, coalesced writes and the segments in them.",
      labelNames: ["event"], registers,
      collect() {
        this.reset();
        for (const [event, n] of Object.entries(source.counters().tunOffload ?? {})) this.inc({ event }, n);
      },
    });

    new Gauge({
      name: "sluice_peers", help: "Peers in the table.", registers,
      collect() {
        let n = 0;
        for (const _ of table.peers) n++;
        this.set(n);
      },
    });
    new Gauge({
      name: "sluice_child_sas", help: "Child SA pairs in the table, by whether their outbound SA still seals.", labelNames: ["outbound"], registers,
      collect() {
        let active = 0;
        let retired = 0;
        for (const peer of table.peers) for (const child of peer.children) child.outboundActive ? active++ : retired++;
        this.reset();
        this.set({ outbound: "active" }, active);
        this.set({ outbound: "retired" }, retired);
      },
    });
    new Gauge({
      name: "sluice_peer_last_inbound_age_seconds", help: "Seconds since a packet of the peer last passed authentication (absent: never).", labelNames: ["peer"], registers,
      collect() {
        const now = performance.now();
        this.reset();
        for (const peer of table.peers) if (peer.lastInbound > 0) this.set({ peer: peer.name }, (now - peer.lastInbound) / 1000);
      },
    });

    this.#batchPackets = new Histogram({
      name: "sluice_engine_batch_packets", help: "Packets per completed batch, by direction.", labelNames: ["direction"], buckets: BATCH_PACKETS, registers,
    });
    this.#batchSeconds = new Histogram({
      name: "sluice_engine_batch_latency_seconds", help: "Time from a batch's submission to its in-order completion, by direction.", labelNames: ["direction"], buckets: BATCH_SECONDS, registers,
    });
    const bind = (direction: "seal" | "open") => {
      const packets = this.#batchPackets.labels(direction);
      const seconds = this.#batchSeconds.labels(direction);
      return { packets: (v: number) => packets.observe(v), seconds: (v: number) => seconds.observe(v) };
    };
    this.#observers = { seal: bind("seal"), open: bind("open") };
  }

  /** Feeds the batch histograms (Forwarder.observeBatch): once per completed batch. */
  readonly observeBatch = (op: "seal" | "open", packets: number, seconds: number): void => {
    const observer = this.#observers[op];
    observer.packets(packets);
    observer.seconds(seconds);
  };

  /** The page Prometheus scrapes (text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** An SPI as metrics label it: 0x and eight hex digits. */
export function spiLabel(spi: number): string {
  return `0x${spi.toString(16).padStart(8, "0")}`;
}

/**
 * Serves the registry at /metrics on host:port.
 * @throws (rejects) the listen error, e.g. EADDRINUSE, with nothing left listening
 */
export function serveMetrics(host: string, port: number, metrics: EndpointMetrics): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.url !== "/metrics") {
      response.writeHead(404).end("not found\n");
      return;
    }
    metrics.render().then(
      (text) => response.writeHead(200, { "content-type": metrics.contentType }).end(text),
      (error: unknown) => response.writeHead(500).end(`${String(error)}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", (error) => {
      server.close();
      reject(error);
    });
    server.listen(port, host, () => resolve(server));
  });
}
