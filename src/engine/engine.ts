/**
 * The engine: one shared WebAssembly memory, a slot pool, Piscina workers
 * running the kernel, and in-order completion.
 *
 * Threads. The main thread owns the slot pool, the SA table, the outbound
 * sequence counters and the replay windows: it assigns sequence numbers before
 * a seal batch leaves and commits an open batch's numbers when it completes,
 * in submission order, on its own kernel instance (the "one place" that
 * commits, so a duplicate opened by two workers at once is accepted once).
 * Workers only seal and open. A batch is { op, descriptors, count }: three
 * numbers in the shared control block (dispatch.ts); packets stay in the
 * shared memory. Piscina hosts the workers and replaces one that dies.
 *
 * Backpressure: when no slot or no batch region is free, acquireSlot returns
 * -1 and beginBatch returns null (the zero-copy path) and the convenient
 * seal/open reject with EngineError "backpressure" (when a call starts:
 * convenient.ts splits and pipelines the rest); each counts in
 * stats().backpressure, and "drain" is emitted once something is free again.
 * Batch regions bound the batches in flight; nothing queues without bound.
 *
 * Events: "drain" (see above); "workerError" (error) when a worker thread
 * died or failed to start, for logging: the engine has already failed its
 * batch and started a replacement.
 *
 * @example
 * ```ts
 * import { createEngine } from "sluice";
 * const engine = await createEngine({ workers: 2 });
 * const out = engine.addSa({ direction: "out", spi: 0x1001, key, salt });
 * const inb = engine.addSa({ direction: "in", spi: 0x1001, key, salt, replayWindow: 1024 });
 * const sealed = await engine.seal(out, [packetA, packetB]);
 * const { packets, statuses } = await engine.open(inb, sealed);
 * await engine.close();
 * ```
 */
import { EventEmitter } from "node:events";
import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import { kernelModule, createKernelMemory, instantiateKernel, type KernelExports } from "../kernel/wasm.js";
import { D_STATUS, DESCRIPTOR_SIZE, REPLAY_WINDOW_MAX, ESP_HEADER } from "../kernel/layout.js";
import { STATUS_OK, STATUS_WORKER_FAILED, type PacketStatus } from "../kernel/status.js";
import { describe } from "../argumentChecks.js";
import { computeLayout, descriptorsAt, packetAt, espAt, HEADROOM, type EngineLayout } from "./layout.js";
import { SlotPool } from "./slotPool.js";
import { InOrder } from "./inOrder.js";
import { Batch, BatchArrays, type BatchHost } from "./batch.js";
import { SaTable, SaHandle, type EngineSaParams } from "./saTable.js";
import { EngineError } from "./errors.js";
import { countPacket, emptyDirection, type EngineStats, type DirectionCounters } from "./stats.js";
import { ControlBlock, COMPLETE_GEN, OP_SEAL, OP_OPEN, SERVING, STATE_DONE, STATE_FAILED } from "./dispatch.js";
import { runBatch, type BatchRunner } from "./runBatch.js";
import { aesGcmPass } from "../kernel/gcm.js";
import { sealPackets, openPackets } from "./convenient.js";
import { warmUpEngine } from "./warmUp.js";
import type { ServeTask, KernelWorkerData } from "../workers/kernelWorker.js";

export interface EngineOptions {
  /** Worker threads (default: the number of cores). */
  workers?: number;
  /** Packet buffers (default 4096). */
  slots?: number;
  /** Bytes per buffer, headroom and tailroom included (default 2048). */
  slotSize?: number;
  /** Most packets per batch (default 64). */
  batchSize?: number;
  /** Batches in flight at once, both directions together (default workers × 4). */
  maxInFlight?: number;
  /** SAs at once (default 256). */
  maxSas?: number;
  /** Largest replay window an inbound SA may have (default 8192). */
  maxReplayWindow?: number;
  /** Bytes of shared memory after the slots for the caller's I/O (layout.ioScratchAt; default 0). */
  ioScratch?: number;
  /**
   * A batch of at most this many input bytes runs on the submitting thread
   * instead of a worker (default 4096; 0: never). Waking a worker and being
   * woken back costs more than the crypto of a few small packets (a TCP ACK,
   * a ping), in CPU and in latency; delivery stays in order either way.
   */
  inlineBytes?: number;
  /** @internal tests: a worker module to use instead of the kernel worker */
  workerFilename?: string | URL;
}

interface Delivery {
  batch: Batch;
  failed: boolean;
}

/** Called when every submitted batch was delivered. */
type Waiter = () => void;

export class Engine extends EventEmitter implements BatchHost {
  /** The whole shared memory; packets are read and written through it. */
  readonly bytes: Uint8Array;
  /** @internal */
  readonly view: DataView;
  readonly layout: EngineLayout;
  readonly memory: WebAssembly.Memory;
  readonly #kernel: KernelExports;
  readonly #runner: BatchRunner;
  readonly #pool: Piscina<ServeTask, number>;
  readonly #control: ControlBlock;
  readonly #servers: Promise<void>[] = [];
  readonly #slots: SlotPool;
  readonly #freeRegions: number[] = [];
  readonly #batches: (Batch | undefined)[];
  readonly #batchArrays: BatchArrays[];
  readonly #sas: SaTable;
  readonly #order: { seal: InOrder<Delivery>; open: InOrder<Delivery> };
  readonly #stats = { seal: emptyDirection(), open: emptyDirection(), backpressure: 0, workerFailures: 0, workerRestarts: 0 };
  #inFlight = 0;
  #closing = false;
  #closed: Promise<void> | undefined;
  #wantDrain = false;
  #idleWaiters: Waiter[] = [];
  /** Submissions so far, both directions: the order workers take batches in. */
  #submissions = 0;
  #workersAlive: number;
  #waitingForCompletion = false;
  readonly #inlineBytes: number;
  #seenCompletions = 0;

  /** Use createEngine. */
  private constructor(layout: EngineLayout, memory: WebAssembly.Memory, pool: Piscina<ServeTask, number>, kernel: KernelExports, workers: number, inlineBytes: number) {
    super();
    this.#inlineBytes = inlineBytes;
    this.layout = layout;
    this.memory = memory;
    this.bytes = new Uint8Array(memory.buffer);
    this.view = new DataView(memory.buffer);
    this.#kernel = kernel;
    this.#runner = { kernel, gcm: aesGcmPass(), memory: this.bytes };
    this.#pool = pool;
    this.#control = new ControlBlock(memory.buffer, layout.controlAt, layout.maxInFlight);
    this.#slots = new SlotPool(layout.slotCount);
    for (let r = layout.maxInFlight - 1; r >= 0; r--) this.#freeRegions.push(r);
    this.#batches = new Array<Batch | undefined>(layout.maxInFlight);
    this.#batchArrays = Array.from({ length: layout.maxInFlight }, () => new BatchArrays(layout.batchSize));
    // A wiped AES SA's key leaves this thread's AES context cache at once
    // (the workers' caches drop it when they next go idle).
    this.#sas = new SaTable(layout, this.bytes, this.view, () => this.#runner.gcm.sweep(this.bytes));
    const deliver = (delivery: Delivery): void => this.#deliver(delivery);
    this.#order = { seal: new InOrder(layout.maxInFlight, deliver), open: new InOrder(layout.maxInFlight, deliver) };
    this.#workersAlive = workers;
    pool.on("error", (error: unknown) => this.emit("workerError", error));
    for (let worker = 0; worker < workers; worker++) this.#servers.push(this.#serve(worker));
  }

  /**
   * Keeps worker `worker` serving batches. When its thread dies, the region
   * it held fails, Piscina starts a new thread, and serving resumes there.
   */
  async #serve(worker: number): Promise<void> {
    let startFailures = 0;
    while (!this.#closing) {
      try {
        await this.#pool.run({ worker });
        return; // stopped by close()
      } catch (error) {
        if (this.#closing) return;
        this.emit("workerError", error);
        // Did it die holding a batch (a poison batch), or before taking any?
        let heldBatch = false;
        for (let region = 0; region < this.layout.maxInFlight; region++) {
          if (this.#control.failIfOwnedBy(region, worker)) heldBatch = true;
        }
        startFailures = heldBatch ? 0 : startFailures + 1;
        if (startFailures > 5) {
          // A worker that cannot even start would be restarted forever.
          this.emit("workerError", new EngineError("worker-failed", `worker ${worker} died ${startFailures} times in a row before taking a batch; not restarting it`));
          this.#workersAlive--;
          if (this.#workersAlive === 0) this.#failUnserved();
          this.#collect();
          return;
        }
        this.#stats.workerRestarts++;
        this.#collect();
      }
    }
  }

  /** With no worker left, every submitted batch fails rather than waiting forever. */
  #failUnserved(): void {
    for (const batch of this.#batches) {
      if (batch !== undefined && batch.submitted && !batch.collected) this.#control.failIfSubmitted(batch.region);
    }
  }

  /** @internal */
  static async create(options: EngineOptions = {}): Promise<Engine> {
    const workers = option("workers", options.workers, Math.max(1, availableParallelism()), 1, 256);
    const slotSize = option("slotSize", options.slotSize, 2048, 256, 65536 + 512);
    const layout = computeLayout({
      slotCount: option("slots", options.slots, 4096, 1, 1 << 20),
      slotSize,
      batchSize: option("batchSize", options.batchSize, 64, 1, 4096),
      maxInFlight: option("maxInFlight", options.maxInFlight, workers * 4, 1, 4096),
      maxSas: option("maxSas", options.maxSas, 256, 1, 65536),
      maxReplayWindow: option("maxReplayWindow", options.maxReplayWindow, 8192, 64, REPLAY_WINDOW_MAX),
      ioScratch: option("ioScratch", options.ioScratch, 0, 0, 1 << 30),
    });
    if (layout.totalBytes > 2 ** 32 - 65536) throw new RangeError(`the engine would need ${layout.totalBytes} bytes of memory; wasm32 allows 4 GiB: use fewer or smaller slots`);
    const memory = createKernelMemory(layout.pages, layout.pages);
    const module = kernelModule();
    const workerData: KernelWorkerData = { module, memory, layout };
    const inlineBytes = option("inlineBytes", options.inlineBytes, 4096, 0, 1 << 20);
    const filename = options.workerFilename ?? new URL("../workers/kernelWorker.js", import.meta.url);
    const pool = new Piscina<ServeTask, number>({
      filename: filename instanceof URL ? filename.href : filename,
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 1,
      workerData,
    });
    return new Engine(layout, memory, pool, instantiateKernel(memory, module), workers, inlineBytes);
  }

  // ---- SAs -------------------------------------------------------------

  /**
   * Adds an SA. Outbound SAs seal, inbound SAs open; their records (key,
   * salt, counter, window) live in the shared memory.
   * @throws TypeError / RangeError naming the bad parameter
   */
  addSa(params: EngineSaParams): SaHandle {
    this.#checkOpen();
    return this.#sas.add(params);
  }

  /**
   * Resolves true once every worker's serve loop has begun (its thread
   * booted, the kernel instantiated), false if that takes longer than
   * `timeoutMs` or the engine closes first. Batches submitted before then
   * are served all the same, only later: this is for a caller whose first
   * packets or first exchange should not share the CPU with threads still
   * starting (on 2 cores, two workers booting held the endpoint's first
   * IKE exchange up for tens of milliseconds).
   *
   * @example
   * const engine = await createEngine({ workers: 2 });
   * await engine.serving();
   */
  async serving(timeoutMs = 5000): Promise<boolean> {
    const words = this.#control.words;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const started = Atomics.load(words, SERVING);
      if (started >= this.#workersAlive) return true;
      const left = deadline - performance.now();
      if (left <= 0 || this.#closing) return false;
      const wait = Atomics.waitAsync(words, SERVING, started, Math.min(left, 50));
      if (wait.async) await wait.value;
    }
  }

  /**
   * Seals and opens a few packets of each cipher on this thread, with
   * throwaway SAs removed afterwards and nothing counted in stats(), so that
   * the first real packets do not pay for compiling the path: WebAssembly
   * functions compile on their first call, and the batch path's JavaScript
   * on its first use. Measured on a fresh engine: the first small seal 2.7 ms,
   * the next 0.1 ms; the first open 0.4–0.7 ms. An endpoint calls it before
   * it forwards anything.
   *
   * @example
   * const engine = await createEngine({ workers: 2 });
   * await engine.warmUp();
   */
  warmUp(): Promise<void> {
    this.#checkOpen();
    return warmUpEngine(this);
  }

  /** Removes an SA; its key is wiped as soon as no packet in flight uses it. */
  removeSa(handle: SaHandle): void {
    this.#sas.remove(handle);
  }

  /**
   * Where AES-GCM SAs run: "native" (one call per batch into the addon, on
   * Node's OpenSSL and the CPU's AES instructions) or "portable" (node:crypto
   * per packet); `aesPathReason` says why when portable.
   */
  get aesPath(): "native" | "portable" {
    return this.#runner.gcm.path;
  }

  get aesPathReason(): string | null {
    return this.#runner.gcm.reason;
  }

  /** The SA's counter: last sequence number sent (out) or highest accepted (in). */
  saSeq(handle: SaHandle): bigint {
    return this.#sas.seq(handle);
  }

  /** @internal */
  checkSa(sa: SaHandle, direction: "in" | "out"): void {
    this.#sas.check(sa, direction);
  }

  // ---- the zero-copy path ------------------------------------------------

  /** The longest inner packet a slot holds. */
  get maxPacket(): number {
    return this.layout.maxPacket;
  }

  /** The longest ESP packet a slot holds (opening). */
  get maxEspPacket(): number {
    return this.layout.slotSize - HEADROOM + ESP_HEADER;
  }

  /** @internal whether a slot was acquired and not released */
  slotInUse(slot: number): boolean {
    return Number.isInteger(slot) && slot >= 0 && slot < this.layout.slotCount && this.#slots.isInUse(slot);
  }

  /** Free slots (cheap, unlike stats()). */
  get freeSlots(): number {
    return this.#slots.available;
  }

  /** Batch regions free for beginBatch. */
  get freeBatches(): number {
    return this.#freeRegions.length;
  }

  /** Takes a free slot; -1 when none is free (counted as backpressure; "drain" follows). */
  acquireSlot(): number {
    const slot = this.#slots.acquire();
    if (slot < 0) this.#backpressure();
    return slot;
  }

  /** Returns a slot taken with acquireSlot and not given to a batch. */
  releaseSlot(slot: number): void {
    this.#slots.release(slot);
    this.#maybeDrain();
  }

  /** Where an inner packet goes in a slot (byte offset in `bytes`). */
  packetOffset(slot: number): number {
    return packetAt(this.layout, slot);
  }

  /** Where a received ESP packet goes in a slot (byte offset in `bytes`). */
  espOffset(slot: number): number {
    return espAt(this.layout, slot);
  }

  /** An empty batch, or null when every batch region is in use (backpressure). */
  beginBatch(op: "seal" | "open"): Batch | null {
    this.#checkOpen();
    if (op !== "seal" && op !== "open") throw new TypeError(`op must be "seal" or "open", got ${describe(op)}`);
    const region = this.#freeRegions.pop();
    if (region === undefined) {
      this.#backpressure();
      return null;
    }
    const batch = new Batch(this, op, region, descriptorsAt(this.layout, region), this.layout.batchSize, this.#batchArrays[region]!);
    this.#batches[region] = batch;
    return batch;
  }

  /**
   * Hands a batch to the workers. `onComplete` runs once, in submission order
   * per direction, with every status set; then read the results and call
   * batch.release().
   */
  submit(batch: Batch, onComplete: (batch: Batch) => void): void {
    this.#checkOpen();
    if (this.#batches[batch.region] !== batch || batch.submitted) throw new Error("this batch is not open for submission");
    const ticket = this.#order[batch.op].issue();
    if (ticket < 0) throw new Error("internal: more batches in flight than batch regions");
    batch.submitted = true;
    batch.onComplete = onComplete;
    this.#inFlight++;
    if (batch.count === 0) {
      // Delivered from a microtask like an inline batch: never from inside submit().
      batch.collected = true;
      queueMicrotask(() => this.#order[batch.op].complete(ticket, { batch, failed: false }));
      return;
    }
    if (batch.op === "seal") this.#kernel.assign_seq(batch.descriptors, batch.count);
    batch.ticket = ticket;
    if (this.#inlineBytes > 0 && batch.bytes <= this.#inlineBytes) return this.#runInline(batch, ticket);
    this.#control.submit(batch.region, batch.op === "seal" ? OP_SEAL : OP_OPEN, batch.count, this.#submissions++);
    if (this.#workersAlive === 0) this.#failUnserved();
    this.#awaitCompletions();
  }

  /**
   * Runs a small batch here, on this thread's kernel instance and the batch's
   * own region (see inlineBytes). It is delivered from a microtask, in order
   * with the batches the workers have, never from inside submit(): a caller
   * submitting from a read loop is not re-entered.
   */
  #runInline(batch: Batch, ticket: number): void {
    let failed = false;
    try {
      runBatch(this.#runner, this.layout, batch.op === "seal" ? OP_SEAL : OP_OPEN, batch.descriptors, batch.count);
    } catch {
      failed = true;
    }
    batch.collected = true;
    batch.inline = true;
    queueMicrotask(() => this.#order[batch.op].complete(ticket, { batch, failed }));
  }

  /** Arms one wake-up for the next completion a worker publishes. */
  #awaitCompletions(): void {
    if (this.#waitingForCompletion) return;
    this.#waitingForCompletion = true;
    this.#control.awaitingCompletion();
    const wait = Atomics.waitAsync(this.#control.words, COMPLETE_GEN, this.#seenCompletions);
    if (wait.async) wait.value.then(() => this.#collect());
    else queueMicrotask(() => this.#collect());
  }

  /** Delivers every batch a worker finished (in order, via InOrder), then waits for more. */
  #collect(): void {
    this.#waitingForCompletion = false;
    this.#seenCompletions = Atomics.load(this.#control.words, COMPLETE_GEN);
    for (const batch of this.#batches) {
      if (batch === undefined || !batch.submitted || batch.collected) continue;
      const state = this.#control.state(batch.region);
      if (state !== STATE_DONE && state !== STATE_FAILED) continue;
      batch.collected = true;
      this.#order[batch.op].complete(batch.ticket, { batch, failed: state === STATE_FAILED });
    }
    if (this.#hasUncollected()) this.#awaitCompletions();
  }

  #hasUncollected(): boolean {
    for (const batch of this.#batches) if (batch !== undefined && batch.submitted && !batch.collected) return true;
    return false;
  }

  #deliver({ batch, failed }: Delivery): void {
    const direction = batch.sas[0]?.uncounted === true ? emptyDirection() : this.#stats[batch.op];
    direction.batches++;
    if (batch.inline) direction.inline++;
    if (failed) {
      this.#stats.workerFailures++;
      for (let i = 0; i < batch.count; i++) this.view.setUint8(batch.descriptors + i * DESCRIPTOR_SIZE + D_STATUS, STATUS_WORKER_FAILED);
    } else if (batch.op === "open") {
      this.#kernel.commit_batch(batch.descriptors, batch.count);
    }
    for (let i = 0; i < batch.count; i++) {
      const sa = batch.sas[i]!;
      const status = this.view.getUint8(batch.descriptors + i * DESCRIPTOR_SIZE + D_STATUS);
      // Bytes count inner packets both ways: the input of a seal, the output of an open.
      const bytes = status !== STATUS_OK ? 0 : batch.op === "seal" ? batch.inputLengths[i]! : batch.length(i);
      countPacket(direction, sa, status, bytes);
      this.#sas.settle(sa, 1);
    }
    const onComplete = batch.onComplete!;
    batch.onComplete = undefined;
    this.#inFlight--;
    try {
      onComplete(batch);
    } catch (error) {
      // The caller's bug must not stop the delivery of other batches: report
      // it the way an EventEmitter would, and go on.
      if (this.listenerCount("error") > 0) this.emit("error", error);
      else queueMicrotask(() => { throw error; });
    }
    if (this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /** @internal */
  releaseBatch(batch: Batch): void {
    for (let i = 0; i < batch.count; i++) this.#slots.release(batch.slots[i]!);
    if (!batch.submitted) for (let i = 0; i < batch.count; i++) this.#sas.settle(batch.sas[i]!, 1);
    // The region's next batch reuses the array: hold no SA. (A loop: Array.prototype.fill is a runtime call, seen in the profile.)
    for (let i = 0; i < batch.count; i++) batch.sas[i] = undefined;
    this.#batches[batch.region] = undefined;
    this.#control.free(batch.region);
    this.#freeRegions.push(batch.region);
    this.#maybeDrain();
  }

  // ---- the convenient path (convenient.ts) ------------------------------

  /**
   * Seals packets (copies in, seals on the workers, copies out), any number
   * of them: a long array is cut into batches and pipelined, never holding
   * more than half the engine (convenient.ts).
   * @returns the ESP packets, in order
   * @throws EngineError "backpressure" when the slots or batch regions the call
   *   starts with are not free (nothing was sealed then), "seq-exhausted" when
   *   the SA's counter ran out, "worker-failed", "closed" when the engine was
   *   closed mid-call
   */
  seal(sa: SaHandle, packets: Uint8Array[]): Promise<Uint8Array[]> {
    return sealPackets(this, sa, packets);
  }

  /**
   * Opens ESP packets (copies in, opens on the workers, commits the replay
   * window in order, copies out), any number of them, as seal does. Never
   * throws for a bad packet.
   * @returns for each packet its status and, when "ok", the inner packet
   * @throws EngineError "backpressure" as seal does, "closed" when the engine was closed mid-call
   */
  open(sa: SaHandle, packets: Uint8Array[]): Promise<{ packets: (Uint8Array | null)[]; statuses: PacketStatus[] }> {
    return openPackets(this, sa, packets);
  }

  /** @internal a convenient call was refused */
  countBackpressure(): void {
    this.#backpressure();
  }

  /** @internal throws EngineError "closed" once close() was called */
  checkOpen(): void {
    this.#checkOpen();
  }

  // ---- state -------------------------------------------------------------

  /** Counters per engine and per SA; see EngineStats. */
  stats(): EngineStats {
    const copy = (d: DirectionCounters): DirectionCounters => ({ ...d, drops: { ...d.drops } });
    return {
      seal: copy(this.#stats.seal),
      open: copy(this.#stats.open),
      backpressure: this.#stats.backpressure,
      workerFailures: this.#stats.workerFailures,
      workerRestarts: this.#stats.workerRestarts,
      inFlight: this.#inFlight,
      slots: { total: this.layout.slotCount, free: this.#slots.available },
      sas: [...this.#sas.live].map((sa) => ({
        spi: sa.spi, direction: sa.direction, seq: this.#sas.seq(sa),
        packets: sa.counters.packets, bytes: sa.counters.bytes, drops: { ...sa.counters.drops },
      })),
    };
  }

  /** Resolves once no batch is in flight (at once if none is). */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Batches submitted and not yet delivered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Waits for the batches in flight, stops the workers and wipes the shared
   * memory (keys, keystream scratch and packets). Idempotent.
   */
  close(): Promise<void> {
    return (this.#closed ??= this.#shutDown());
  }

  async #shutDown(): Promise<void> {
    this.#closing = true;
    await this.idle();
    this.#control.stop();
    await Promise.all(this.#servers);
    await this.#pool.destroy();
    this.bytes.fill(0);
  }

  #checkOpen(): void {
    if (this.#closing) throw new EngineError("closed", "this engine is closed");
  }

  #backpressure(): void {
    this.#stats.backpressure++;
    this.#wantDrain = true;
  }

  #maybeDrain(): void {
    if (!this.#wantDrain || this.#freeRegions.length === 0 || this.#slots.available === 0) return;
    this.#wantDrain = false;
    // After the microtasks: a convenient call learns of its refusal through a
    // promise, and its catch must be listening before "drain" comes (a batch
    // completed from a microtask could otherwise free room in between).
    setImmediate(() => this.emit("drain"));
  }
}

function option(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

/** Creates an engine and starts its workers. See Engine. */
export function createEngine(options?: EngineOptions): Promise<Engine> {
  return Engine.create(options);
}

