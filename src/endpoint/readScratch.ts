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
  /** The slots are still the port's: taken by start(), not yet all added to the batch or released. */
  #owned = false;

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
    this.#owned = true;
    return batch;
  }

  /** The read's slots were all added to the batch or released: abandon() leaves them alone. */
  handedOver(): void {
    this.#owned = false;
  }

  /**
   * After a read loop threw: gives back the batch it was filling (unless it
   * was submitted) and the read's slots it still held, so an exception costs
   * the packets at hand, never slots or batch regions.
   */
  abandon(engine: Engine, batch: Batch | null): void {
    const inBatch = new Set<number>();
    if (batch !== null && !batch.submitted && !batch.released) {
      for (let i = 0; i < batch.count; i++) inBatch.add(batch.slot(i));
      batch.release();
    }
    if (this.#owned) {
      for (let i = 0; i < this.count; i++) {
        const slot = this.slots[i]!;
        if (!inBatch.has(slot) && engine.slotInUse(slot)) engine.releaseSlot(slot);
      }
    }
    this.#owned = false;
  }

  /** Gives back the slots from `filled` on, which the read did not fill. */
  releaseUnfilled(engine: Engine, filled: number): void {
    for (let i = filled; i < this.count; i++) engine.releaseSlot(this.slots[i]!);
  }
}
