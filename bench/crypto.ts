/**
 * The crypto suite: seal and open of one packet size at a time, for sluice's
 * batch path, sluice's one-shot API (allocating its result, and into an
 * output array) and every peer, all in the same run, so the ratios to
 * node:crypto and to the batch path are of figures measured side by side.
 */
import { randomBytes } from "node:crypto";
import { createBatchRunner, BATCH } from "./sluiceBatch.js";
import { loadPeers, NODE_CRYPTO } from "./peers.js";
import { measure, type MeasureOptions, type TimedTask } from "./measure.js";

export const CRYPTO_SIZES = [64, 512, 1420, 8192];
export const SLUICE_BATCH = "sluice batch";

export interface CryptoRow {
  suite: "crypto";
  size: number;
  op: "seal" | "open";
  impl: string;
  nsPerPacket: number;
  gbitPerSecond: number;
  packetsPerSecond: number;
  /** sluice batch's throughput divided by this row's. */
  batchRatio: number;
  /** This row's throughput divided by node:crypto's (same size and op, same run). */
  nodeRatio: number;
}

export async function runCryptoSuite(options: MeasureOptions, sizes = CRYPTO_SIZES, log: (line: string) => void = () => {}): Promise<CryptoRow[]> {
  const factories = await loadPeers();
  const rows: CryptoRow[] = [];
  for (const size of sizes) {
    const key = new Uint8Array(randomBytes(32));
    const salt = new Uint8Array(randomBytes(4));
    const inputs = { key, nonce: new Uint8Array(randomBytes(12)), aad: new Uint8Array(randomBytes(8)), plaintext: new Uint8Array(randomBytes(size)) };
    const batch = createBatchRunner(size, key, salt);
    batch.open();
    batch.checkOpened();
    const peers = factories.map((make) => make(inputs));
    for (const peer of peers) peer.open(); // each must authenticate its own output

    const tasks: TimedTask[] = [];
    for (const op of ["seal", "open"] as const) {
      tasks.push({ name: `${op}|${SLUICE_BATCH}`, fn: op === "seal" ? batch.seal : batch.open, units: BATCH });
      for (const peer of peers) tasks.push({ name: `${op}|${peer.name}`, fn: peer[op], units: 1 });
    }
    log(`crypto ${size} B: ${tasks.length} tasks × ${options.rounds} rounds`);
    const latency = measure(tasks, options);
    batch.checkOpened();

    for (const op of ["seal", "open"] as const) {
      const batchNs = latency.get(`${op}|${SLUICE_BATCH}`)!;
      const nodeNs = latency.get(`${op}|${NODE_CRYPTO}`)!;
      for (const impl of [SLUICE_BATCH, ...peers.map((p) => p.name)]) {
        const ns = latency.get(`${op}|${impl}`)!;
        rows.push({
          suite: "crypto", size, op, impl,
          nsPerPacket: ns,
          gbitPerSecond: (size * 8) / ns,
          packetsPerSecond: 1e9 / ns,
          batchRatio: ns / batchNs,
          nodeRatio: nodeNs / ns,
        });
      }
    }
  }
  return rows;
}
