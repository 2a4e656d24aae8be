/**
 * A batch: up to batchSize packets, each in a slot of the engine's memory,
 * described by descriptors in one batch region. Building, submitting and
 * reading a batch allocates nothing per packet.
 *
 * Buffer contract. Sealing: the inner packet of `length` bytes is at
 * engine.packetOffset(slot); after completion the ESP packet is at
 * batch.offset(i) with batch.length(i) bytes. Opening: the ESP packet of
 * `length` bytes is at engine.espOffset(slot); after completion, when
 * batch.status(i) is "ok", the inner packet is at batch.offset(i) with
 * batch.length(i) bytes and protocol batch.nextHeader(i).
 */
import {
  D_BUF, D_LEN, D_SA, D_STATUS, D_NEXT_HEADER, D_FLAGS, D_SEQ, DESCRIPTOR_SIZE, ESP_HEADER,
} from "../kernel/layout.js";
import { statusName, type PacketStatus } from "../kernel/status.js";
import type { SaHandle } from "./saTable.js";

/** What a batch needs from its engine. */
export interface BatchHost {
  readonly view: DataView;
  readonly maxPacket: number;
  readonly maxEspPacket: number;
  slotInUse(slot: number): boolean;
  espOffset(slot: number): number;
  checkSa(sa: SaHandle, direction: "in" | "out"): void;
  releaseBatch(batch: Batch): void;
}

/**
 * The per-packet arrays of a batch region. They belong to the region, not
 * to one batch: a region holds one batch at a time, so its batches reuse
 * them, and beginning a batch allocates no typed array (which costs a
 * malloc and a sweep each; per batch that showed in the main thread's
 * profile).
 */
export class BatchArrays {
  /** The slot of each packet. */
  readonly slots: Int32Array;
  /** The length each packet was added with. */
  readonly inputLengths: Int32Array;
  /** The SA of each packet, for counters. */
  readonly sas: (SaHandle | undefined)[];

  constructor(capacity: number) {
    this.slots = new Int32Array(capacity);
    this.inputLengths = new Int32Array(capacity);
    this.sas = new Array<SaHandle | undefined>(capacity).fill(undefined);
  }
}

export class Batch {
  /** Packets added so far. */
  count = 0;
  /** @internal */
  readonly slots: Int32Array;
  /** @internal the length each packet was added with */
  readonly inputLengths: Int32Array;
  /** The input bytes of all its packets. */
  bytes = 0;
  /** @internal the SA of each packet, for counters */
  readonly sas: (SaHandle | undefined)[];
  /** @internal set while submitted */
  onComplete: ((batch: Batch) => void) | undefined;
  /** @internal */
  submitted = false;
  /** @internal a worker finished it and it was handed to in-order delivery */
  collected = false;
  /** @internal it ran on the submitting thread (EngineOptions.inlineBytes) */
  inline = false;
  /** @internal its number in its direction's in-order delivery */
  ticket = -1;
  #released = false;

  /** @internal */
  constructor(
    private readonly host: BatchHost,
    readonly op: "seal" | "open",
    /** @internal batch region index */
    readonly region: number,
    /** Byte offset of the first descriptor. */
    readonly descriptors: number,
    readonly capacity: number,
    arrays: BatchArrays,
  ) {
    this.slots = arrays.slots;
    this.inputLengths = arrays.inputLengths;
    this.sas = arrays.sas;
  }

  /** Whether another packet fits. */
  get full(): boolean {
    return this.count === this.capacity;
  }

  /**
   * Adds the packet in `slot` (see the buffer contract above). The batch takes
   * over the slot: release() returns it to the pool.
   * @param nextHeader sealing only: 4 (IPv4, default) or 41 (IPv6)
   * @returns false when the batch is full
   */
  add(slot: number, sa: SaHandle, length: number, nextHeader = 4): boolean {
    if (this.submitted || this.#released) throw new Error("this batch was already submitted");
    if (this.count === this.capacity) return false;
    this.host.checkSa(sa, this.op === "seal" ? "out" : "in");
    // A length past the slot would let the kernel write into the next slot.
    const limit = this.op === "seal" ? this.host.maxPacket : this.host.maxEspPacket;
    if (!Number.isInteger(length) || length < 0 || length > limit) throw badLength(this.op, limit, length);
    if (!this.host.slotInUse(slot)) throw slotNotTaken(slot);
    const view = this.host.view;
    const d = this.descriptors + this.count * DESCRIPTOR_SIZE;
    view.setUint32(d + D_BUF, this.host.espOffset(slot), true);
    view.setUint32(d + D_LEN, length, true);
    view.setUint32(d + D_SA, sa.record, true);
    view.setUint8(d + D_STATUS, 0);
    view.setUint8(d + D_NEXT_HEADER, nextHeader);
    view.setUint8(d + D_FLAGS, 0);
    view.setUint32(d + D_SEQ, 0, true); // the 64-bit number as two words: no BigInt per packet
    view.setUint32(d + D_SEQ + 4, 0, true);
    this.slots[this.count] = slot;
    this.inputLengths[this.count] = length;
    this.bytes += length;
    this.sas[this.count] = sa;
    sa.pending++;
    this.count++;
    return true;
  }

  /** Packet i's outcome. */
  status(i: number): PacketStatus {
    return statusName(this.statusCode(i));
  }

  /** Packet i's outcome as the kernel's number (0 = ok); cheaper than status(). */
  statusCode(i: number): number {
    return this.host.view.getUint8(this.descriptor(i) + D_STATUS);
  }

  /** Byte offset of packet i's result in engine.bytes: the ESP packet (seal) or the inner packet (open). */
  offset(i: number): number {
    const buf = this.host.view.getUint32(this.descriptor(i) + D_BUF, true);
    return this.op === "seal" ? buf : buf + ESP_HEADER;
  }

  /** Length of packet i's result. */
  length(i: number): number {
    return this.host.view.getUint32(this.descriptor(i) + D_LEN, true);
  }

  /** Opening: the inner packet's protocol (4 or 41). */
  nextHeader(i: number): number {
    return this.host.view.getUint8(this.descriptor(i) + D_NEXT_HEADER);
  }

  /** The sequence number packet i was sealed with, or (opening) its authenticated number. */
  seq(i: number): bigint {
    return this.host.view.getBigUint64(this.descriptor(i) + D_SEQ, true);
  }

  /** The slot packet i is in. */
  slot(i: number): number {
    if (!(i >= 0 && i < this.count)) throw notInBatch(i, this.count);
    return this.slots[i]!;
  }

  /** Returns the batch's slots and its batch region to the engine. Call once, after completion. */
  /** Whether release() was called. */
  get released(): boolean {
    return this.#released;
  }

  release(): void {
    if (this.#released) throw new Error("this batch was already released");
    if (this.submitted && this.onComplete !== undefined) throw new Error("this batch has not completed yet");
    this.#released = true;
    this.host.releaseBatch(this);
  }

  private descriptor(i: number): number {
    if (!(i >= 0 && i < this.count)) throw notInBatch(i, this.count);
    return this.descriptors + i * DESCRIPTOR_SIZE;
  }
}

// Error messages are built out of line: see slotPool.ts.
function badLength(op: "seal" | "open", limit: number, length: number): RangeError {
  return new RangeError(`length must be an integer from 0 to ${limit} for ${op === "seal" ? "an inner" : "an ESP"} packet, got ${length}`);
}

function slotNotTaken(slot: number): RangeError {
  return new RangeError(`slot ${slot} is not a slot taken with acquireSlot`);
}

function notInBatch(i: number, count: number): RangeError {
  return new RangeError(`packet ${i} is not in this batch of ${count}`);
}
