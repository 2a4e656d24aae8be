/**
 * Counters in the Prometheus text format (version 0.0.4), served over HTTP
 * by `sluice up --metrics HOST:PORT`. Rendering reads the counters; it
 * stops nothing on the data path.
 */
import { createServer, type Server } from "node:http";
import type { EngineStats } from "../engine/stats.js";
import type { EndpointCounters } from "./endpoint.js";

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(values: Record<string, string | number>): string {
  return `{${Object.entries(values).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`).join(",")}}`;
}

export interface PeerMetrics {
  name: string;
  spiOut: number;
  spiIn: number;
}

/** The metrics page. */
export function renderMetrics(stats: EngineStats, endpoint: EndpointCounters, peers: PeerMetrics[]): string {
  const lines: string[] = [];
  const metric = (name: string, type: "counter" | "gauge", help: string, samples: [Record<string, string | number>, number | bigint][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labelValues, value] of samples) lines.push(`${name}${Object.keys(labelValues).length ? labels(labelValues) : ""} ${value}`);
  };
  const peerOf = new Map<string, string>();
  for (const peer of peers) {
    peerOf.set(`out:${peer.spiOut}`, peer.name);
    peerOf.set(`in:${peer.spiIn}`, peer.name);
  }
  const saLabels = (sa: EngineStats["sas"][number]): Record<string, string | number> => ({
    peer: peerOf.get(`${sa.direction}:${sa.spi}`) ?? "", spi: `0x${sa.spi.toString(16).padStart(8, "0")}`, direction: sa.direction,
  });
  metric("sluice_sa_packets_total", "counter", "Packets sealed (out) or opened (in) per SA.", stats.sas.map((sa) => [saLabels(sa), sa.packets]));
  metric("sluice_sa_bytes_total", "counter", "Inner packet bytes per SA.", stats.sas.map((sa) => [saLabels(sa), sa.bytes]));
  metric("sluice_sa_drops_total", "counter", "Packets dropped per SA, by reason.",
    stats.sas.flatMap((sa) => Object.entries(sa.drops).map(([reason, n]) => [{ ...saLabels(sa), reason }, n ?? 0] as [Record<string, string | number>, number])));
  metric("sluice_sa_sequence", "gauge", "Last sequence number sent (out) or highest accepted (in).", stats.sas.map((sa) => [saLabels(sa), sa.seq]));
  metric("sluice_engine_batches_total", "counter", "Batches completed by direction.", [[{ direction: "seal" }, stats.seal.batches], [{ direction: "open" }, stats.open.batches]]);
  metric("sluice_engine_inline_batches_total", "counter", "Of those, batches small enough to run on the main thread (no worker wake-up).", [[{ direction: "seal" }, stats.seal.inline], [{ direction: "open" }, stats.open.inline]]);
  metric("sluice_engine_backpressure_total", "counter", "Times slots or batch regions ran out.", [[{}, stats.backpressure]]);
  metric("sluice_engine_worker_restarts_total", "counter", "Worker threads that died and were replaced.", [[{}, stats.workerRestarts]]);
  metric("sluice_engine_worker_failures_total", "counter", "Batches failed because their worker died or threw.", [[{}, stats.workerFailures]]);
  metric("sluice_engine_slots_free", "gauge", "Free packet buffers.", [[{}, stats.slots.free]]);
  metric("sluice_endpoint_drops_total", "counter", "Packets the endpoint dropped before or after the engine, by reason.",
    Object.entries(endpoint.drops).map(([reason, n]) => [{ reason }, n]));
  metric("sluice_endpoint_keepalives_total", "counter", "NAT keepalives received and sent.", [[{ direction: "in" }, endpoint.keepalivesIn], [{ direction: "out" }, endpoint.keepalivesOut]]);
  if (endpoint.udpReceiveOverflows !== null) {
    metric("sluice_udp_receive_overflows_total", "counter", "Datagrams the kernel dropped at the UDP socket because its receive buffer was full.", [[{}, endpoint.udpReceiveOverflows]]);
  }
  if (endpoint.tunOffload) {
    metric("sluice_tun_offload_total", "counter",
      "TUN offloads: reads, TCP super-packets among them, packets handed out, checksums completed, malformed reads, writes, coalesced writes and the segments in them.",
      Object.entries(endpoint.tunOffload).map(([event, n]) => [{ event }, n]));
  }
  return `${lines.join("\n")}\n`;
}

/** Serves `render()` at /metrics on host:port. */
export function serveMetrics(host: string, port: number, render: () => string): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.url !== "/metrics") {
      response.writeHead(404).end("not found\n");
      return;
    }
    response.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(render());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
