/**
 * The convenient path, engine.seal(sa, packets) and engine.open(sa, packets):
 * packets copied into slots, results copied out, any number of packets per
 * call, without the caller knowing the engine's slots or batch regions.
 *
 * A call is cut into batches and pipelined through a window of them. A call
 * that fits the engine (its packets in the slots, its batches in the batch
 * regions) is its own window and goes out at once, as calls always did. A
 * longer one gets half the engine: with the default of 4 regions per worker
 * that still keeps every worker busy, and the other half stays free for
 * other callers and the zero-copy path. Each batch that completes is read,
 * released and replaced by the call's next batch in the same callback, so
 * the call never has more than its window in flight, and nobody can take in
 * between what it just freed: once started, a call meets no backpressure.
 *
 * Backpressure is decided once, at the start, as before calls were split: if
 * the window is not free now, the call rejects with EngineError
 * "backpressure" before anything is copied or sealed (counted in
 * stats().backpressure; "drain" follows). Nothing waits in a queue.
 *
 * A seal call stops submitting at the first packet that fails (a counter that
 * ran out fails every later packet too) and throws once its batches in flight
 * are back; an open call reports each packet's status and goes on. Closing
 * the engine or removing the SA mid-call rejects the call once its batches
 * in flight are back; close() does not wait for the rest of the call.
 */
import { STATUS_OK, type PacketStatus } from "../kernel/status.js";
import { describe } from "../argumentChecks.js";
import { ownedCopy } from "../resultSlab.js";
import { EngineError } from "./errors.js";
import type { Batch } from "./batch.js";
import type { Engine } from "./engine.js";
import type { EngineLayout } from "./layout.js";
import type { SaHandle } from "./saTable.js";

/** What one call may hold at once: `batches` batches of up to `chunk` packets. */
export interface CallWindow {
  chunk: number;
  batches: number;
}

/** The window of a call of `count` packets (see the top of this file). */
export function callWindow(layout: EngineLayout, count: number): CallWindow {
  const { batchSize, slotCount, maxInFlight } = layout;
  const batches = Math.ceil(count / batchSize);
  if (count <= slotCount && batches <= maxInFlight) return { chunk: batchSize, batches };
  const slots = Math.max(1, slotCount >> 1);
  const chunk = Math.min(batchSize, slots);
  return { chunk, batches: Math.max(1, Math.min(maxInFlight >> 1, Math.floor(slots / chunk))) };
}

/** See Engine.seal. */
export async function sealPackets(engine: Engine, sa: SaHandle, packets: Uint8Array[]): Promise<Uint8Array[]> {
  const sealed = new Array<Uint8Array>(packets.length);
  let failure: PacketStatus | undefined;
  await pipeline(engine, "seal", sa, packets, (batch, first) => {
    for (let i = 0; i < batch.count; i++) {
      if (batch.statusCode(i) === STATUS_OK) sealed[first + i] = copyResult(engine, batch, i);
      else failure ??= batch.status(i);
    }
    return failure === undefined;
  });
  if (failure !== undefined) {
    throw new EngineError(failure === "seq-exhausted" ? "seq-exhausted" : "worker-failed", `sealing failed: ${failure}`);
  }
  return sealed;
}

/** See Engine.open. */
export async function openPackets(engine: Engine, sa: SaHandle, packets: Uint8Array[]): Promise<{ packets: (Uint8Array | null)[]; statuses: PacketStatus[] }> {
  const opened = new Array<Uint8Array | null>(packets.length);
  const statuses = new Array<PacketStatus>(packets.length);
  await pipeline(engine, "open", sa, packets, (batch, first) => {
    for (let i = 0; i < batch.count; i++) {
      const status = batch.status(i);
      statuses[first + i] = status;
      opened[first + i] = status === "ok" ? copyResult(engine, batch, i) : null;
    }
    return true;
  });
  return { packets: opened, statuses };
}

function copyResult(engine: Engine, batch: Batch, i: number): Uint8Array {
  const at = batch.offset(i);
  return ownedCopy(engine.bytes.subarray(at, at + batch.length(i)));
}

/**
 * Runs `packets` through batches of `op`, at most the call's window at once,
 * and hands each completed batch to `read` (in order) with the index of its
 * first packet; `read` returns false to submit nothing more.
 */
function pipeline(engine: Engine, op: "seal" | "open", sa: SaHandle, packets: Uint8Array[], read: (batch: Batch, first: number) => boolean): Promise<void> {
  engine.checkOpen();
  engine.checkSa(sa, op === "seal" ? "out" : "in");
  checkPackets(engine, op, packets);
  const total = packets.length;
  if (total === 0) return Promise.resolve();
  const window = callWindow(engine.layout, total);
  if (engine.freeSlots < Math.min(total, window.chunk * window.batches) || engine.freeBatches < window.batches) {
    engine.countBackpressure();
    return Promise.reject(new EngineError("backpressure", `not enough free slots or batch regions for ${total} packets; retry after "drain"`));
  }

  return new Promise<void>((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    let more = true;
    let error: unknown;
    const settleIfDone = (): void => {
      if (inFlight > 0) return;
      if (error === undefined) resolve();
      else reject(error);
    };
    const startBatch = (): void => {
      // Never null and never short of a slot: the window was free at the
      // start, and a later batch reuses what the call's previous one freed.
      const batch = engine.beginBatch(op);
      if (batch === null) throw new Error("internal: no batch region for a call's next batch");
      const first = next;
      try {
        for (const end = Math.min(total, first + window.chunk); next < end; next++) {
          const packet = packets[next]!;
          const slot = engine.acquireSlot();
          if (slot < 0) throw new Error("internal: no slot for a call's next batch");
          try {
            engine.bytes.set(packet, op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot));
            batch.add(slot, sa, packet.length); // throws when the SA was removed mid-call
          } catch (thrown) {
            engine.releaseSlot(slot);
            throw thrown;
          }
        }
      } catch (thrown) {
        batch.release(); // unsubmitted: its slots go back
        throw thrown;
      }
      inFlight++;
      engine.submit(batch, (done) => {
        inFlight--;
        try {
          if (!read(done, first)) more = false;
        } catch (thrown) {
          error ??= thrown;
        }
        done.release();
        if (more && error === undefined && next < total) start();
        settleIfDone();
      });
    };
    const start = (): void => {
      try {
        startBatch();
      } catch (thrown) {
        // Closed, or the SA was removed: no new batch; reject once those in flight are back.
        error = thrown;
      }
    };
    for (let b = 0; b < window.batches && next < total && error === undefined; b++) start();
    settleIfDone();
  });
}

function checkPackets(engine: Engine, op: "seal" | "open", packets: Uint8Array[]): void {
  if (!Array.isArray(packets)) throw new TypeError(`packets must be an array of Uint8Array, got ${describe(packets)}`);
  const limit = op === "seal" ? engine.maxPacket : engine.maxEspPacket;
  packets.forEach((packet, i) => {
    if (!(packet instanceof Uint8Array)) throw new TypeError(`packets[${i}] must be a Uint8Array, got ${describe(packet)}`);
    if (packet.length > limit) throw new RangeError(`packets[${i}] is ${packet.length} bytes; slots of this engine hold at most ${limit}`);
  });
}
