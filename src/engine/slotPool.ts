/**
 * The buffer pool: a stack of free slot indices. Taking and returning a slot
 * is O(1) and allocates nothing; returning a slot twice is a bug in the
 * caller and throws rather than corrupting the pool.
 */
export class SlotPool {
  readonly #free: Int32Array;
  readonly #inUse: Uint8Array;
  #top: number;

  constructor(readonly size: number) {
    this.#free = new Int32Array(size);
    this.#inUse = new Uint8Array(size);
    for (let i = 0; i < size; i++) this.#free[i] = size - 1 - i;
    this.#top = size;
  }

  /** Free slots left. */
  get available(): number {
    return this.#top;
  }

  /** A free slot's index, or -1 when none is left. */
  acquire(): number {
    if (this.#top === 0) return -1;
    const slot = this.#free[--this.#top]!;
    this.#inUse[slot] = 1;
    return slot;
  }

  release(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.size) throw notASlot(slot);
    if (this.#inUse[slot] === 0) throw releasedTwice(slot);
    this.#inUse[slot] = 0;
    this.#free[this.#top++] = slot;
  }

  isInUse(slot: number): boolean {
    return this.#inUse[slot] === 1;
  }
}

// Error messages are built out of line. In a hot method, TurboFan (V8 11.3)
// was seen converting the number of a template literal to a string ahead of
// the check that guards the throw, on every call (Builtins_NumberToString in
// releaseBatch's profile).
function notASlot(slot: number): RangeError {
  return new RangeError(`slot ${slot} is not a slot of this engine`);
}

function releasedTwice(slot: number): Error {
  return new Error(`slot ${slot} was released twice`);
}
