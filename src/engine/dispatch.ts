/**
 * Handing batches to workers through the shared memory instead of messages.
 *
 * Why: a Piscina task round trip (structured-clone message out, message
 * back, promise) measured 48–90 µs here, against ~117 µs of crypto in a
 * 64 × 1420 B batch. So Piscina hosts the workers (start, replace a dead one)
 * and each worker runs one long task, `serve`, that takes batches from this
 * control block; a batch is still just { op, descriptors, count }, written
 * into its region's words.
 *
 * The control block (Int32 words, layout.controlAt):
 *   SUBMIT_GEN      bumped by the main thread after each submission
 *   COMPLETE_GEN    bumped by a worker after each completion
 *   SLEEPERS        workers blocked in Atomics.wait (notify only if > 0)
 *   STOP            1 = serve loops return
 *   SERVING         serve loops started so far (a restarted worker counts again)
 *   MAIN_WAITING    1 while the main thread waits for a completion and no worker woke it yet
 *   per region r:   STATE, OP, COUNT, TICKET
 *
 * A region's state goes FREE → SUBMITTED (main) → TAKEN | worker << 8
 * (worker, by compare-and-swap, so exactly one worker claims it and the main
 * thread knows whose it was if that worker dies) → DONE or FAILED (worker)
 * → FREE (main, at delivery). Workers claim the oldest submitted region, so
 * batches start in submission order.
 */

export const SUBMIT_GEN = 0;
export const COMPLETE_GEN = 1;
export const SLEEPERS = 2;
export const STOP = 3;
export const SERVING = 4;
export const MAIN_WAITING = 5;
const REGIONS_AT = 8;
const WORDS_PER_REGION = 4;
const R_STATE = 0;
const R_OP = 1;
const R_COUNT = 2;
const R_TICKET = 3;

export const STATE_FREE = 0;
export const STATE_SUBMITTED = 1;
export const STATE_TAKEN = 2;
export const STATE_DONE = 3;
export const STATE_FAILED = 4;

export const OP_SEAL = 1;
export const OP_OPEN = 2;

/** Bytes of the control block for `regions` batch regions. */
export function controlBytes(regions: number): number {
  return (REGIONS_AT + regions * WORDS_PER_REGION) * 4;
}

/** A view of the control block, shared by the main thread and the workers. */
export class ControlBlock {
  readonly words: Int32Array;

  constructor(buffer: ArrayBufferLike, at: number, readonly regions: number) {
    this.words = new Int32Array(buffer, at, controlBytes(regions) / 4);
  }

  private word(region: number, field: number): number {
    return REGIONS_AT + region * WORDS_PER_REGION + field;
  }

  state(region: number): number {
    return Atomics.load(this.words, this.word(region, R_STATE)) & 0xff;
  }

  /** The worker that took the region (meaningful in STATE_TAKEN). */
  owner(region: number): number {
    return Atomics.load(this.words, this.word(region, R_STATE)) >> 8;
  }

  op(region: number): number {
    return this.words[this.word(region, R_OP)]!;
  }

  count(region: number): number {
    return this.words[this.word(region, R_COUNT)]!;
  }

  // ---- main thread ----

  /** Publishes a batch and wakes a sleeping worker. */
  submit(region: number, op: number, count: number, ticket: number): void {
    const w = this.words;
    w[this.word(region, R_OP)] = op;
    w[this.word(region, R_COUNT)] = count;
    w[this.word(region, R_TICKET)] = ticket;
    Atomics.store(w, this.word(region, R_STATE), STATE_SUBMITTED);
    Atomics.add(w, SUBMIT_GEN, 1);
    if (Atomics.load(w, SLEEPERS) > 0) Atomics.notify(w, SUBMIT_GEN, 1);
  }

  /** The main thread is about to wait on COMPLETE_GEN: the next completion (only that one) wakes it. */
  awaitingCompletion(): void {
    Atomics.store(this.words, MAIN_WAITING, 1);
  }

  /** Marks a delivered region free. */
  free(region: number): void {
    Atomics.store(this.words, this.word(region, R_STATE), STATE_FREE);
  }

  /** Marks a region whose worker died as failed; false if it was no longer that worker's. */
  failIfOwnedBy(region: number, worker: number): boolean {
    const taken = STATE_TAKEN | (worker << 8);
    return Atomics.compareExchange(this.words, this.word(region, R_STATE), taken, STATE_FAILED) === taken;
  }

  /** Fails a region no worker took; false if one already did. */
  failIfSubmitted(region: number): boolean {
    return Atomics.compareExchange(this.words, this.word(region, R_STATE), STATE_SUBMITTED, STATE_FAILED) === STATE_SUBMITTED;
  }

  /** Tells every serve loop to return, and wakes them. */
  stop(): void {
    Atomics.store(this.words, STOP, 1);
    Atomics.add(this.words, SUBMIT_GEN, 1);
    Atomics.notify(this.words, SUBMIT_GEN);
  }

  // ---- workers ----

  /** Claims the oldest submitted region for `worker`; -1 if none. */
  claim(worker: number): number {
    const w = this.words;
    for (;;) {
      let best = -1;
      let bestTicket = 0;
      for (let r = 0; r < this.regions; r++) {
        if ((Atomics.load(w, this.word(r, R_STATE)) & 0xff) !== STATE_SUBMITTED) continue;
        const ticket = w[this.word(r, R_TICKET)]!;
        if (best < 0 || ticket - bestTicket < 0) {
          best = r;
          bestTicket = ticket;
        }
      }
      if (best < 0) return -1;
      const taken = STATE_TAKEN | (worker << 8);
      if (Atomics.compareExchange(w, this.word(best, R_STATE), STATE_SUBMITTED, taken) === STATE_SUBMITTED) return best;
      // Another worker took it first: look again.
    }
  }

  /**
   * Publishes a region's outcome, and wakes the main thread only when it
   * waits and is needed. Each notify of an Atomics.waitAsync waiter costs
   * the worker a lock in V8 and a task posted to the main thread's loop, and
   * each wake-up takes a core from the workers: with 2 workers on 2 cores,
   * complete() took 23–30 µs on average (outliers of milliseconds, the
   * worker preempted by the thread it woke) against ~95 µs of crypto per
   * 64 × 1420 B batch. So:
   * - only the first completion after the main thread began to wait
   *   notifies (it takes MAIN_WAITING from 1 to 0); the main thread collects
   *   every finished region when it wakes;
   * - while two or more batches still wait to be claimed, the workers have
   *   work and the main thread is not woken: the completion that leaves
   *   fewer does it, so a batch waits at most that long for delivery, and
   *   one completing alone (a ping) wakes it at once.
   * No wake-up is lost: the counter goes up before MAIN_WAITING is read, and
   * the main thread sets MAIN_WAITING before it compares the counter.
   */
  complete(region: number, ok: boolean): void {
    const w = this.words;
    Atomics.store(w, this.word(region, R_STATE), ok ? STATE_DONE : STATE_FAILED);
    Atomics.add(w, COMPLETE_GEN, 1);
    if (this.#waitingToBeClaimed() >= 2) return;
    if (Atomics.compareExchange(w, MAIN_WAITING, 1, 0) === 1) Atomics.notify(w, COMPLETE_GEN);
  }

  #waitingToBeClaimed(): number {
    let waiting = 0;
    for (let r = 0; r < this.regions; r++) if ((Atomics.load(this.words, this.word(r, R_STATE)) & 0xff) === STATE_SUBMITTED) waiting++;
    return waiting;
  }

  /** A worker's serve loop has begun: it can take batches from now on. */
  serving(): void {
    Atomics.add(this.words, SERVING, 1);
    Atomics.notify(this.words, SERVING);
  }

  /** Blocks until something may have been submitted since `generation` was read. */
  sleep(generation: number): void {
    const w = this.words;
    Atomics.add(w, SLEEPERS, 1);
    Atomics.wait(w, SUBMIT_GEN, generation, 1000);
    Atomics.sub(w, SLEEPERS, 1);
  }
}
