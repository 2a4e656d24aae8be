/**
 * One batched read's worth of slots, for the native ports.
 *
 * Why: the addon reads up to a batch of packets per system call straight into
 * engine slots (tunReadBatch, udpRecvBatch), so before each call a port takes
 * a batch and as many free slots as the call may fill, and gives back the
 * ones it did not fill. The arrays are allocated once per port and reused for
 * every read: nothing is allocated per packet.
 */
import type { Engine } from "../engine/engine.js";
import type { Batch } from "../engine/batch.js";

export class ReadScratch {
  /** The slots taken for the read, and where in each a packet lands. */
  readonly slots: Int32Array;
  readonly offsets: Int32Array;
  /** Filled by the read. */
  readonly lengths: Int32Array;
  /** How many slots the last start() took. */
  count = 0;

  constructor(readonly size: number) {
    this.slots = new Int32Array(size);
    this.offsets = new Int32Array(size);
    this.lengths = new Int32Array(size);
  }

  /**
   * A batch and up to `size` slots for one read (packet places for sealing,
   * ESP places for opening); null when the engine has neither to spare, and
   * the port pauses until "drain".
   */
  start(engine: Engine, op: "seal" | "open"): Batch | null {
    const batch = engine.beginBatch(op);
    if (batch === null) return null;
    let n = 0;
    while (n < this.size) {
      const slot = engine.acquireSlot();
      if (slot < 0) break;
      this.slots[n] = slot;
      this.offsets[n] = op === "seal" ? engine.packetOffset(slot) : engine.espOffset(slot);
      n++;
    }
    if (n === 0) {
      batch.release();
      return null;
    }
    this.count = n;
    return batch;
  }

  /** Gives back the slots from `filled` on, which the read did not fill. */
  releaseUnfilled(engine: Engine, filled: number): void {
    for (let i = filled; i < this.count; i++) engine.releaseSlot(this.slots[i]!);
  }
}
