/**
 * Batches for packets that arrive one at a time: the portable path's
 * datagrams (one 'message' event each) and the application's sendInner calls.
 *
 * Why: the engine works in batches, and a worker woken for one packet costs
 * more than sealing it (DESIGN.md, "Threads"). So single packets go into one
 * open batch, which is submitted when it is full or, at the latest, in the
 * event loop's check phase (setImmediate) after the packets of this turn were
 * added: one batch per I/O turn instead of one per packet, and never a wait
 * beyond the current turn. At most one batch is held open per accumulator, so
 * nothing queues without bound: when the engine has no batch to spare,
 * batch() returns null and the caller drops the packet.
 */
import type { Engine } from "../engine/engine.js";
import type { Batch } from "../engine/batch.js";

export class Accumulator {
  #batch: Batch | null = null;
  #timer: NodeJS.Immediate | undefined;
  readonly #flush = (): void => this.flush();

  constructor(
    private readonly engine: Engine,
    private readonly op: "seal" | "open",
    private readonly submit: (batch: Batch) => void,
  ) {}

  /** The open batch to add one packet to (begun now if there is none), or null when the engine has none to spare. */
  batch(): Batch | null {
    if (this.#batch !== null) return this.#batch;
    const batch = this.engine.beginBatch(this.op);
    if (batch === null) return null;
    this.#batch = batch;
    this.#timer ??= setImmediate(this.#flush);
    return batch;
  }

  /** Call after adding a packet to batch(): a full batch is submitted at once. */
  added(): void {
    if (this.#batch?.full) this.flush();
  }

  /** Submits the open batch (an empty one is released). */
  flush(): void {
    if (this.#timer !== undefined) clearImmediate(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch;
    this.#batch = null;
    if (batch === null) return;
    if (batch.count === 0) batch.release();
    else this.submit(batch);
  }
}
