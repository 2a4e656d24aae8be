/**
 * Engine counters. Kept by the main thread, which sees every completion in
 * order anyway; reading them stops nothing.
 */
import { PACKET_STATUSES, type PacketStatus } from "../kernel/status.js";
import type { SaHandle } from "./saTable.js";

export interface DirectionCounters {
  /** Batches completed. */
  batches: number;
  /** Of those, batches small enough to run on the submitting thread (EngineOptions.inlineBytes). */
  inline: number;
  /** Packets sealed or opened with status "ok". */
  packets: number;
  /** Their bytes (inner packet bytes). */
  bytes: number;
  /** Packets that did not come out "ok", by status. */
  drops: Partial<Record<PacketStatus, number>>;
}

export interface SaStats {
  spi: number;
  direction: "in" | "out";
  /** Last sequence number sent (out) or highest accepted (in). */
  seq: bigint;
  packets: number;
  bytes: number;
  drops: Partial<Record<PacketStatus, number>>;
}

export interface EngineStats {
  seal: DirectionCounters;
  open: DirectionCounters;
  /** Times a slot, a batch region or the in-flight budget ran out. */
  backpressure: number;
  /** Batches failed because their worker threw or died (or, run inline, the kernel trapped). */
  workerFailures: number;
  /** Workers that exited and were replaced. */
  workerRestarts: number;
  /** Batches submitted and not yet delivered. */
  inFlight: number;
  slots: { total: number; free: number };
  sas: SaStats[];
}

export function emptyDirection(): DirectionCounters {
  return { batches: 0, inline: 0, packets: 0, bytes: 0, drops: {} };
}

/** Adds one packet's outcome to its direction's and its SA's counters. */
export function countPacket(direction: DirectionCounters, sa: SaHandle, status: number, bytes: number): void {
  if (status === 0) {
    direction.packets++;
    direction.bytes += bytes;
    sa.counters.packets++;
    sa.counters.bytes += bytes;
    return;
  }
  const name = PACKET_STATUSES[status] ?? "malformed";
  direction.drops[name] = (direction.drops[name] ?? 0) + 1;
  sa.counters.drops[name] = (sa.counters.drops[name] ?? 0) + 1;
}
