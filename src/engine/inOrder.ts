/**
 * In-order delivery of completions that arrive out of order: a bounded ring
 * of pending results indexed by submission number. Batches of one direction
 * finish on different workers in any order; TCP inside the tunnel would see
 * that as reordering, so results are released strictly in submission order.
 */
export class InOrder<T> {
  readonly #done: (T | undefined)[];
  readonly #ready: Uint8Array;
  #next = 0;      // submission number delivered next
  #issued = 0;    // submission numbers handed out

  constructor(readonly capacity: number, private readonly deliver: (value: T) => void) {
    this.#done = new Array<T | undefined>(capacity);
    this.#ready = new Uint8Array(capacity);
  }

  /** Submissions not delivered yet. */
  get pending(): number {
    return this.#issued - this.#next;
  }

  /** A submission number, or -1 when `capacity` are already pending. */
  issue(): number {
    if (this.pending >= this.capacity) return -1;
    return this.#issued++;
  }

  /** Records the result of submission `ticket` and delivers all that are now in order. */
  complete(ticket: number, value: T): void {
    const at = ticket % this.capacity;
    this.#done[at] = value;
    this.#ready[at] = 1;
    while (this.#ready[this.#next % this.capacity] === 1) {
      const slot = this.#next % this.capacity;
      const ready = this.#done[slot] as T;
      this.#done[slot] = undefined;
      this.#ready[slot] = 0;
      this.#next++;
      this.deliver(ready);
    }
  }
}
