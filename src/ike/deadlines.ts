/**
 * A min-heap of deadlines with lazy removal: the core's one timer over
 * thousands of IKE SAs.
 *
 * Why lazy: an SA's deadline moves at nearly every message (a response
 * clears a retransmission, traffic pushes a liveness check back). Instead of
 * finding and moving its heap entry, the SA bumps a stamp and a new entry is
 * pushed; entries whose stamp is old are dropped when they reach the top.
 * The heap holds at most a few entries per SA between two pops.
 */
export interface Stamped {
  timerStamp: number;
  /** Whether the heap holds a live entry for the item. */
  timerLive: boolean;
}

interface Entry<T> {
  at: number;
  item: T;
  stamp: number;
}

export class DeadlineQueue<T extends Stamped> {
  #heap: Entry<T>[] = [];
  /** Entries that are not stale; when they are a small part of the heap, it is rebuilt. */
  #live = 0;

  /** (Re)schedules `item` at `at`; undefined: no deadline. Earlier entries of the item become stale. */
  schedule(item: T, at: number | undefined): void {
    if (item.timerLive) this.#live--;
    const stamp = ++item.timerStamp;
    item.timerLive = at !== undefined;
    if (at === undefined) return;
    this.#live++;
    this.#heap.push({ at, item, stamp });
    this.#up(this.#heap.length - 1);
    if (this.#heap.length > 64 && this.#heap.length > 4 * this.#live) this.#rebuild();
  }

  #rebuild(): void {
    const live = this.#heap.filter((e) => e.stamp === e.item.timerStamp);
    this.#heap = [];
    for (const entry of live) {
      this.#heap.push(entry);
      this.#up(this.#heap.length - 1);
    }
  }

  /** The earliest live deadline. */
  peek(): number | undefined {
    this.#dropStale();
    return this.#heap[0]?.at;
  }

  /** Removes and returns the earliest item due at or before `now`. */
  popDue(now: number): T | undefined {
    this.#dropStale();
    const top = this.#heap[0];
    if (top === undefined || top.at > now) return undefined;
    this.#pop();
    top.item.timerStamp++;
    top.item.timerLive = false;
    this.#live--;
    return top.item;
  }

  get size(): number {
    return this.#heap.length;
  }

  #dropStale(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.stamp !== this.#heap[0]!.item.timerStamp) this.#pop();
  }

  #pop(): void {
    const last = this.#heap.pop()!;
    if (this.#heap.length === 0) return;
    this.#heap[0] = last;
    this.#down(0);
  }

  #up(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= heap[i]!.at) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  #down(i: number): void {
    const heap = this.#heap;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && heap[left]!.at < heap[least]!.at) least = left;
      if (right < heap.length && heap[right]!.at < heap[least]!.at) least = right;
      if (least === i) return;
      [heap[least], heap[i]] = [heap[i]!, heap[least]!];
      i = least;
    }
  }
}
