/**
 * ESP (RFC 4303) with ChaCha20-Poly1305 (RFC 7634) or AES-GCM (RFC 4106,
 * `cipher: "aes128gcm16" | "aes256gcm16"`), one packet at a time on the
 * calling thread's WASM kernel (and, for AES, the AES pass of
 * kernel/gcm.ts): the simple, synchronous face of the same code the engine
 * runs in batches.
 *
 * @example
 * ```ts
 * import { OutboundSa, InboundSa } from "sluice/esp";
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const salt = crypto.getRandomValues(new Uint8Array(4));
 * const out = new OutboundSa({ spi: 0x1001, key, salt });
 * const inb = new InboundSa({ spi: 0x1001, key, salt, replayWindow: 1024 });
 * const esp = out.seal(ipv4Packet);           // SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV
 * const { status, packet } = inb.open(esp);   // "ok" and the inner packet
 * inb.open(esp).status;                       // "replay"
 * ```
 */
import { checkBytes, describe } from "./argumentChecks.js";
import { localKernel, SCRATCH_DESCRIPTOR } from "./kernel/localKernel.js";
import { ownedCopy } from "./resultSlab.js";
import {
  D_BUF, D_LEN, D_SA, D_STATUS, D_NEXT_HEADER, D_FLAGS, D_SEQ, D_IV, D_FLAG_IV, DESCRIPTOR_SIZE,
  ESP_HEADER, ESP_TRAILER_MAX, SA_SEQ, SA_BITMAP,
} from "./kernel/layout.js";
import { validateSa, writeSaRecord, recordSize, type SaParams } from "./kernel/saRecord.js";
import { statusName, type PacketStatus } from "./kernel/status.js";
import { aesGcmPass, GCM_SEAL, GCM_OPEN } from "./kernel/gcm.js";

export type { PacketStatus } from "./kernel/status.js";
export type { SaParams } from "./kernel/saRecord.js";
export type { EspCipher } from "./kernel/cipher.js";

/** Next header values of tunnel mode (IANA protocol numbers). */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;

/** An error with a machine-readable code, e.g. `seq-exhausted` or `destroyed`. */
export class EspError extends Error {
  constructor(readonly code: PacketStatus | "destroyed", message: string) {
    super(message);
    this.name = "EspError";
  }
}

/** The result of opening one ESP packet. */
export interface OpenResult {
  status: PacketStatus;
  /** The inner packet, when status is "ok". */
  packet?: Uint8Array;
  /** The inner packet's protocol (4 or 41), when status is "ok". */
  nextHeader?: number;
  /** The full (ESN-inferred) sequence number, when the packet was authentic. */
  seq?: bigint;
}

abstract class SaBase {
  #record: number;
  readonly #size: number;
  readonly #aes: boolean;

  protected constructor(record: number, size: number, aes: boolean) {
    this.#record = record;
    this.#size = size;
    this.#aes = aes;
  }

  protected get record(): number {
    if (this.#record < 0) throw new EspError("destroyed", "this SA was destroyed");
    return this.#record;
  }

  /** Wipes the key from memory; the SA cannot be used afterwards. */
  destroy(): void {
    if (this.#record < 0) return;
    const local = localKernel();
    local.freeRecord(this.#record, this.#size);
    this.#record = -1;
    // The AES pass's cached context for this key goes with the record.
    if (this.#aes) aesGcmPass().sweep(local.bytes);
  }

  /** The sequence counter: last number sent (outbound) or highest accepted (inbound). */
  get seq(): bigint {
    return localKernel().view.getBigUint64(this.record + SA_SEQ, true);
  }
}

/** Options of OutboundSa. */
export interface OutboundSaParams extends SaParams {
  /** The last sequence number already used under this key (e.g. restored after a restart). Default 0. */
  seq?: bigint;
}

/** The sending side of an SA: assigns sequence numbers and seals. */
export class OutboundSa extends SaBase {
  constructor(params: OutboundSaParams) {
    const spec = validateSa(params, 64, params?.seq ?? 0n);
    const local = localKernel();
    const size = recordSize(spec);
    const record = local.allocRecord(size);
    writeSaRecord(local.bytes, local.view, record, spec);
    super(record, size, spec.cipher !== "chacha20poly1305");
  }

  /**
   * Seals an inner packet into a whole ESP packet with the next sequence number.
   * @param nextHeader 4 for IPv4 (default), 41 for IPv6
   * @param knownAnswer for known-answer tests only: a fixed sequence number and IV
   *   (RFC 7634 Appendix A uses an IV that is not its sequence number). Reusing
   *   an IV under one key destroys confidentiality; never use this for traffic.
   * @returns the ESP packet, a new array; one of up to 8 KiB shares its
   *   `.buffer` with other results, as a pooled Buffer does
   * @throws EspError with code "seq-exhausted" once 2^32 − 1 (2^64 − 1 with ESN) packets were sealed
   */
  seal(innerPacket: Uint8Array, nextHeader = NEXT_HEADER_IPV4, knownAnswer?: { seq: bigint; iv: bigint }): Uint8Array {
    checkBytes("innerPacket", innerPacket);
    if (!Number.isInteger(nextHeader) || nextHeader < 0 || nextHeader > 255) {
      throw new RangeError(`nextHeader must be an integer from 0 to 255, got ${describe(nextHeader)}`);
    }
    const local = localKernel();
    const record = this.record;
    const buf = local.scratch(ESP_HEADER + innerPacket.length + ESP_TRAILER_MAX);
    local.bytes.set(innerPacket, buf + ESP_HEADER);
    const d = SCRATCH_DESCRIPTOR;
    const view = local.view;
    view.setUint32(d + D_BUF, buf, true);
    view.setUint32(d + D_LEN, innerPacket.length, true);
    view.setUint32(d + D_SA, record, true);
    view.setUint8(d + D_NEXT_HEADER, nextHeader);
    view.setUint8(d + D_FLAGS, knownAnswer ? D_FLAG_IV : 0);
    view.setBigUint64(d + D_SEQ, knownAnswer ? knownAnswer.seq : 0n, true);
    view.setBigUint64(d + D_IV, knownAnswer ? knownAnswer.iv : 0n, true);
    if (local.kernel.esp_seal(d)) aesGcmPass().run(local.bytes, d, 1, GCM_SEAL);
    const status = statusName(view.getUint8(d + D_STATUS));
    if (status !== "ok") {
      throw new EspError(status, status === "seq-exhausted"
        ? "sequence number space exhausted: this SA must be rekeyed"
        : `sealing failed: ${status}`);
    }
    return ownedCopy(local.bytes.subarray(buf, buf + view.getUint32(d + D_LEN, true)));
  }
}

/** Options of InboundSa. */
export interface InboundSaParams extends SaParams {
  /** Anti-replay window in packets: a multiple of 64 from 64 to 65536. Default 1024. */
  replayWindow?: number;
  /**
   * Restoring an SA (e.g. after a restart): the highest number that may have
   * been accepted; it and everything before it count as seen. Default 0.
   */
  seq?: bigint;
}

/** The receiving side of an SA: checks replay, verifies, decrypts. */
export class InboundSa extends SaBase {
  constructor(params: InboundSaParams) {
    const spec = validateSa(params, params?.replayWindow ?? 1024, params?.seq ?? 0n);
    const local = localKernel();
    const size = recordSize(spec);
    const record = local.allocRecord(size);
    writeSaRecord(local.bytes, local.view, record, spec);
    // A restored window: every number up to the top counts as seen.
    if (spec.seq > 0n) local.bytes.fill(0xff, record + SA_BITMAP, record + size);
    super(record, size, spec.cipher !== "chacha20poly1305");
  }

  /**
   * Opens one ESP packet. Never throws for bad packets: every outcome is a
   * status (see PacketStatus). Nothing is decrypted unless the ICV verified,
   * and the replay window moves only for authentic packets.
   */
  open(espPacket: Uint8Array): OpenResult {
    checkBytes("espPacket", espPacket);
    const local = localKernel();
    const record = this.record;
    const buf = local.scratch(espPacket.length);
    local.bytes.set(espPacket, buf);
    const d = SCRATCH_DESCRIPTOR;
    const view = local.view;
    local.bytes.fill(0, d, d + DESCRIPTOR_SIZE);
    view.setUint32(d + D_BUF, buf, true);
    view.setUint32(d + D_LEN, espPacket.length, true);
    view.setUint32(d + D_SA, record, true);
    if (local.kernel.esp_open(d)) {
      aesGcmPass().run(local.bytes, d, 1, GCM_OPEN);
      local.kernel.open_finish_batch(d, 1, 1);
    }
    const status = statusName(view.getUint8(d + D_STATUS));
    if (status !== "ok") {
      const authentic = status === "bad-padding" || status === "bad-pad-length" || status === "bad-next-header" || status === "dummy";
      return authentic ? { status, seq: view.getBigUint64(d + D_SEQ, true) } : { status };
    }
    const inner = buf + ESP_HEADER;
    return {
      status,
      packet: ownedCopy(local.bytes.subarray(inner, inner + view.getUint32(d + D_LEN, true))),
      nextHeader: view.getUint8(d + D_NEXT_HEADER),
      seq: view.getBigUint64(d + D_SEQ, true),
    };
  }
}
