/**
 * sluice's batch path, driven the way the engine drives it: SA records,
 * descriptors and packet slots in one shared memory, one seal_batch /
 * open_batch call per 64 packets, no copy of packet bytes through JavaScript
 * for sealing. Opening must start from ciphertext each time (it decrypts in
 * place and the window refuses a repeat), so each open batch first copies the
 * 64 ESP packets into their slots with copyWithin, as a receive would write
 * them, and rewinds the replay window; that copy is part of the time measured.
 * An AES-GCM SA (RFC 4106) takes the engine's passes too: the kernel frames,
 * the AES pass (src/kernel/gcm.ts: one native call per batch) seals or opens,
 * and the kernel checks the trailers.
 */
import {
  kernelModule, createKernelMemory, instantiateKernel, layout, validateSa, writeSaRecord, recordSize, statusName,
} from "../src/kernel/kernel.js";
import { aesGcmPass, GCM_SEAL, GCM_OPEN } from "../src/kernel/gcm.js";
import type { EspCipher } from "../src/kernel/cipher.js";

export const BATCH = 64;

export interface BatchRunner {
  /** Seals BATCH packets. */
  seal(): void;
  /** Opens BATCH packets; throws if any did not open. */
  open(): void;
  /** Verifies the last open batch (not timed). */
  checkOpened(): void;
}

/** Sets up a kernel instance for packets of `size` bytes. */
export function createBatchRunner(size: number, key: Uint8Array, salt: Uint8Array, cipher: EspCipher = "chacha20poly1305"): BatchRunner {
  const slotSize = Math.max(2048, 1 << Math.ceil(Math.log2(size + layout.ESP_HEADER + layout.ESP_TRAILER_MAX)));
  const window = 1024;
  const spec = validateSa({ spi: 0x1001, cipher, key: cipher === "aes128gcm16" ? key.subarray(0, 16) : key, salt }, window);
  const recordBytes = recordSize(spec);

  // Layout: [scratch for opening][outbound SA][inbound SA][descriptors][slots][pristine copies]
  const scratch = 0;
  const scratchBytes = 65536 + 512;
  const outSa = scratch + scratchBytes;
  const inSa = outSa + recordBytes;
  const descriptors = inSa + recordBytes;
  const slots = descriptors + BATCH * layout.DESCRIPTOR_SIZE;
  const pristine = slots + BATCH * slotSize;
  const end = pristine + BATCH * slotSize;

  const memory = createKernelMemory(Math.ceil(end / 65536));
  const kernel = instantiateKernel(memory, kernelModule());
  kernel.set_scratch(scratch, scratchBytes);
  const bytes = new Uint8Array(memory.buffer);
  const view = new DataView(memory.buffer);
  const aes = aesGcmPass();
  const sealBatch = (): void => {
    if (kernel.seal_batch(descriptors, BATCH) > 0) aes.run(bytes, descriptors, BATCH, GCM_SEAL);
  };
  const openBatch = (): void => {
    if (kernel.open_batch(descriptors, BATCH) > 0) {
      aes.run(bytes, descriptors, BATCH, GCM_OPEN);
      kernel.open_finish_batch(descriptors, BATCH, 1);
    }
  };
  writeSaRecord(bytes, view, outSa, spec);
  writeSaRecord(bytes, view, inSa, spec);

  const fillDescriptors = (sa: number, length: number): void => {
    for (let i = 0; i < BATCH; i++) {
      const d = descriptors + i * layout.DESCRIPTOR_SIZE;
      view.setUint32(d + layout.D_BUF, slots + i * slotSize, true);
      view.setUint32(d + layout.D_LEN, length, true);
      view.setUint32(d + layout.D_SA, sa, true);
      view.setUint8(d + layout.D_NEXT_HEADER, 4);
      view.setUint8(d + layout.D_FLAGS, 0);
      view.setBigUint64(d + layout.D_SEQ, 0n, true);
    }
  };

  // One sealed batch, kept as the pristine input of every open.
  for (let i = 0; i < BATCH; i++) bytes.fill(i, slots + i * slotSize + layout.ESP_HEADER, slots + i * slotSize + layout.ESP_HEADER + size);
  fillDescriptors(outSa, size);
  sealBatch();
  const espLength = view.getUint32(descriptors + layout.D_LEN, true);
  bytes.copyWithin(pristine, slots, slots + BATCH * slotSize);
  const windowBytes = recordBytes - layout.SA_BITMAP;

  return {
    seal() {
      fillDescriptors(outSa, size);
      sealBatch();
    },
    open() {
      for (let i = 0; i < BATCH; i++) {
        const from = pristine + i * slotSize;
        bytes.copyWithin(slots + i * slotSize, from, from + espLength);
      }
      view.setBigUint64(inSa + layout.SA_SEQ, 0n, true);
      bytes.fill(0, inSa + layout.SA_BITMAP, inSa + layout.SA_BITMAP + windowBytes);
      fillDescriptors(inSa, espLength);
      openBatch();
    },
    checkOpened() {
      for (let i = 0; i < BATCH; i++) {
        const status = statusName(view.getUint8(descriptors + i * layout.DESCRIPTOR_SIZE + layout.D_STATUS));
        if (status !== "ok") throw new Error(`sluice batch: packet ${i} opened with status ${status}`);
      }
    },
  };
}
