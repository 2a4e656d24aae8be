/**
 * The engine's one shared memory, laid out in one place. Every offset the
 * kernel, the workers and the main thread use comes from here.
 *
 *   [0, 64)                 never used: address 0 means "none"
 *   control block           batch hand-over between threads (dispatch.ts)
 *   SA table                maxSas records of saStride bytes (kernel SA layout)
 *   batch regions           maxInFlight × (batchSize descriptors ‖ open scratch)
 *   slots                   slotCount packet buffers of slotSize bytes
 *   I/O scratch             ioScratch bytes an I/O path may use (e.g. UDP GRO super-packets)
 *
 * A packet in a slot: the inner packet starts at slot + HEADROOM, so sealing
 * writes the ESP header and IV in the 16 bytes before it and the trailer and
 * ICV after it; a received ESP packet is placed at slot + HEADROOM - 16 so
 * that opening leaves the inner packet at slot + HEADROOM too. The rest of
 * the headroom is for outer headers an I/O path may add.
 */
import { DESCRIPTOR_SIZE, ESP_HEADER, ESP_TRAILER_MAX, saRecordSize } from "../kernel/layout.js";
import { controlBytes } from "./dispatch.js";

/** Bytes before the inner packet in a slot. */
export const HEADROOM = 64;

export interface LayoutOptions {
  slotCount: number;
  slotSize: number;
  batchSize: number;
  maxInFlight: number;
  maxSas: number;
  maxReplayWindow: number;
  /** Bytes after the slots for an I/O path of its own (default 0). */
  ioScratch?: number;
}

export interface EngineLayout extends LayoutOptions {
  controlAt: number;
  saTableAt: number;
  saStride: number;
  batchRegionsAt: number;
  batchRegionSize: number;
  /** Keystream scratch of one batch region, after its descriptors (kernel set_scratch). */
  scratchBytes: number;
  slotsAt: number;
  /** Where the I/O scratch starts (layout.ioScratch bytes). */
  ioScratchAt: number;
  /** The longest inner packet a slot holds. */
  maxPacket: number;
  totalBytes: number;
  pages: number;
}

const PAGE = 65536;

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

export function computeLayout(options: LayoutOptions): EngineLayout {
  const { slotCount, slotSize, batchSize, maxInFlight, maxSas, maxReplayWindow } = options;
  const maxPacket = slotSize - HEADROOM - ESP_TRAILER_MAX;
  const saStride = align(saRecordSize(maxReplayWindow), 64);
  const controlAt = 64;
  const saTableAt = align(controlAt + controlBytes(maxInFlight), 64);
  // Opening stitched needs the keystream of the whole ciphertext (aead.ts, scratchNeeded).
  const scratchBytes = align(slotSize + 64, 256);
  const batchRegionSize = align(batchSize * DESCRIPTOR_SIZE, 64) + scratchBytes;
  const batchRegionsAt = align(saTableAt + maxSas * saStride, 64);
  const slotsAt = align(batchRegionsAt + maxInFlight * batchRegionSize, 64);
  const ioScratchAt = align(slotsAt + slotCount * slotSize, 64);
  const totalBytes = ioScratchAt + (options.ioScratch ?? 0);
  return {
    ...options, controlAt, saTableAt, saStride, batchRegionsAt, batchRegionSize, scratchBytes, slotsAt, ioScratchAt, maxPacket,
    totalBytes, pages: Math.ceil(totalBytes / PAGE),
  };
}

/** Where batch region r's descriptors start. */
export function descriptorsAt(layout: EngineLayout, region: number): number {
  return layout.batchRegionsAt + region * layout.batchRegionSize;
}

/** Where the scratch of the batch region whose descriptors start at `descriptors` is. */
export function scratchAt(layout: Pick<EngineLayout, "batchSize">, descriptors: number): number {
  return descriptors + align(layout.batchSize * DESCRIPTOR_SIZE, 64);
}

/** Where slot s starts. */
export function slotAt(layout: EngineLayout, slot: number): number {
  return layout.slotsAt + slot * layout.slotSize;
}

/** Where the inner packet of slot s starts. */
export function packetAt(layout: EngineLayout, slot: number): number {
  return layout.slotsAt + slot * layout.slotSize + HEADROOM;
}

/** Where an ESP packet of slot s starts (16 bytes before the inner packet). */
export function espAt(layout: EngineLayout, slot: number): number {
  return packetAt(layout, slot) - ESP_HEADER;
}
