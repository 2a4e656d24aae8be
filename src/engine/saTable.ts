/**
 * The SA table in shared memory: fixed-size records (kernel SA layout) that
 * the main thread writes and the workers read. A removed SA's record is
 * zeroed, key included, once no batch in flight still uses it. ChaCha20 and
 * AES-GCM SAs (SaParams.cipher) share the table; the record says which.
 */
import { validateSa, writeSaRecord, type SaParams } from "../kernel/saRecord.js";
import { describe } from "../argumentChecks.js";
import { SA_SEQ, SA_BITMAP } from "../kernel/layout.js";
import type { PacketStatus } from "../kernel/status.js";
import type { EngineLayout } from "./layout.js";
import type { EspCipher } from "../kernel/cipher.js";

/** Parameters of engine.addSa. */
export interface EngineSaParams extends SaParams {
  /** "out" seals, "in" opens. */
  direction: "in" | "out";
  /** Inbound only: the anti-replay window in packets, a multiple of 64 (default 1024). */
  replayWindow?: number;
  /**
   * Restoring an SA after a restart. Outbound: the last sequence number that
   * may have been used; sealing continues after it. Inbound: the highest
   * number that may have been accepted; it and everything before it count as
   * seen, so no packet from before the restart is accepted again. Default 0.
   */
  seq?: bigint;
}

/** Per-SA counters. */
export interface SaCounters {
  packets: number;
  bytes: number;
  drops: Partial<Record<PacketStatus, number>>;
}

/** An SA added to an engine; pass it to seal/open and to Batch.add. */
export class SaHandle {
  /** @internal packets of this SA in batches not yet completed */
  pending = 0;
  /** @internal */
  removed = false;
  /** @internal the engine's own warm-up SA (warmUp.ts): its batches stay out of stats() */
  uncounted = false;
  readonly counters: SaCounters = { packets: 0, bytes: 0, drops: {} };

  /** @internal */
  constructor(
    readonly spi: number,
    readonly direction: "in" | "out",
    /** @internal byte offset of the record in the engine's memory */
    readonly record: number,
    /** @internal */
    readonly index: number,
    /** @internal the table it belongs to */
    readonly table: object,
    /** The SA's AEAD. */
    readonly cipher: EspCipher = "chacha20poly1305",
  ) {}
}

export class SaTable {
  readonly #free: number[] = [];
  readonly #live = new Set<SaHandle>();

  constructor(
    private readonly layout: EngineLayout,
    private readonly bytes: Uint8Array,
    private readonly view: DataView,
    /** Called after a record was wiped (the AES pass drops its cached key). */
    private readonly onWipe: () => void = () => {},
  ) {
    for (let i = layout.maxSas - 1; i >= 0; i--) this.#free.push(i);
  }

  add(params: EngineSaParams): SaHandle {
    if (typeof params !== "object" || params === null) throw new TypeError("addSa needs an object of SA parameters");
    if (params.direction !== "in" && params.direction !== "out") {
      throw new TypeError(`direction must be "in" or "out", got ${describe(params.direction)}`);
    }
    const window = params.direction === "in" ? params.replayWindow ?? 1024 : 64;
    if (window > this.layout.maxReplayWindow) {
      throw new RangeError(`replayWindow must be at most this engine's maxReplayWindow (${this.layout.maxReplayWindow}), got ${window}`);
    }
    const spec = validateSa(params, window, params.seq ?? 0n);
    const index = this.#free.pop();
    if (index === undefined) throw new RangeError(`the SA table is full (maxSas ${this.layout.maxSas})`);
    const record = this.layout.saTableAt + index * this.layout.saStride;
    this.bytes.fill(0, record, record + this.layout.saStride);
    writeSaRecord(this.bytes, this.view, record, spec);
    // A restored inbound window: every number up to the top counts as seen.
    if (params.direction === "in" && spec.seq > 0n) this.bytes.fill(0xff, record + SA_BITMAP, record + this.layout.saStride);
    const handle = new SaHandle(spec.spi, params.direction, record, index, this, spec.cipher);
    this.#live.add(handle);
    return handle;
  }

  /** Marks an SA removed; its record is wiped now or when its last packet completes. */
  remove(handle: SaHandle): void {
    if (!this.#live.has(handle)) throw new TypeError("not an SA of this engine, or already removed");
    handle.removed = true;
    this.#live.delete(handle);
    if (handle.pending === 0) this.wipe(handle);
  }

  /** Called when packets of `handle` complete. */
  settle(handle: SaHandle, packets: number): void {
    handle.pending -= packets;
    if (handle.removed && handle.pending === 0) this.wipe(handle);
  }

  check(handle: SaHandle, direction: "in" | "out"): void {
    if (!(handle instanceof SaHandle)) throw new TypeError("expected an SaHandle from engine.addSa");
    // `table` rather than a lookup in #live: this runs for every packet added to a batch.
    if (handle.removed || handle.table !== this) throw saRemoved(handle);
    if (handle.direction !== direction) throw wrongDirection(handle, direction);
  }

  /** Last sequence number sent (out) or highest accepted (in). */
  seq(handle: SaHandle): bigint {
    return this.view.getBigUint64(handle.record + SA_SEQ, true);
  }

  get live(): Iterable<SaHandle> {
    return this.#live;
  }

  private wipe(handle: SaHandle): void {
    this.bytes.fill(0, handle.record, handle.record + this.layout.saStride);
    this.#free.push(handle.index);
    if (handle.cipher !== "chacha20poly1305") this.onWipe();
  }
}

// Error messages are built out of line: see slotPool.ts.
function saRemoved(handle: SaHandle): TypeError {
  return new TypeError(`SA ${handle.spi} was removed`);
}

function wrongDirection(handle: SaHandle, direction: "in" | "out"): TypeError {
  return new TypeError(`SA ${handle.spi} is ${handle.direction}bound; ${direction === "out" ? "sealing" : "opening"} needs an ${direction}bound SA`);
}
