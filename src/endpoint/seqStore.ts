/**
 * Sequence-number reservations on disk, so a restarted endpoint never seals
 * with a number it already used under the same key (a repeated nonce breaks
 * ChaCha20-Poly1305), and never accepts again a packet it accepted before.
 *
 * Outbound: before a number is used, a bound above it is on disk (written,
 * fsynced, renamed); blocks are reserved ahead, so the disk is touched once
 * per OUT_BLOCK packets. After a crash sealing resumes above the bound: at
 * most one block of numbers is skipped, none is repeated.
 *
 * Inbound: the same for the window's top; after a restart every number up to
 * the bound counts as seen. The price is that up to IN_BLOCK of the peer's
 * next numbers are refused once after a crash (under a second at 1 Gbit/s).
 * A clean stop writes the exact counters instead (Endpoint.stop), so a
 * planned restart skips nothing.
 *
 * The packet path does not wait for the disk: a reservation is extended in
 * the background (libuv's thread pool) once the counter comes within half a
 * block of the durable bound, which leaves half a block of packets (32768
 * inbound, over 0.1 s at the tunnel's rate) for two fsyncs to finish. Only
 * a counter that passes the durable bound first waits for a synchronous
 * save. Before, each extension stopped the main thread for the fsyncs:
 * seven times a second inbound at 2.5 Gbit/s, for milliseconds each on a
 * disk without a write cache.
 *
 * Files are named by direction, SPI and a fingerprint of the key, so a new
 * key starts from zero and the key itself is never written.
 */
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync } from "node:fs";
import { open, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";

/** Background saves started in this process: each writes a temporary file of its own. */
let backgroundSaves = 0;

export const OUT_BLOCK = 1n << 20n;
export const IN_BLOCK = 1n << 16n;

export class SeqStore {
  /** Background saves not finished yet, and who waits for none to be left. */
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** The file name of an SA's reservation. */
  static id(direction: "in" | "out", spi: number, key: Uint8Array, salt: Uint8Array): string {
    const fingerprint = createHash("sha256").update("sluice seq store").update(key).update(salt).digest("hex").slice(0, 16);
    return `${direction}-${spi.toString(16).padStart(8, "0")}-${fingerprint}`;
  }

  /** The reserved bound for an SA, 0 if none was ever written. */
  load(id: string): bigint {
    let text: string;
    try {
      text = readFileSync(join(this.dir, id), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0n;
      throw error;
    }
    if (!/^\d+\n?$/.test(text)) throw new Error(`state file ${join(this.dir, id)} is corrupt; refusing to guess a sequence number`);
    return BigInt(text.trim());
  }

  /** Makes `bound` durable: write a temporary file, fsync it, rename it over the old one, fsync the directory. */
  save(id: string, bound: bigint): void {
    const path = join(this.dir, id);
    const temporary = `${path}.tmp`;
    const fd = openSync(temporary, "w", 0o600);
    try {
      writeSync(fd, `${bound}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
    this.syncDirectory();
  }

  /** fsyncs the directory: a rename in it is durable after this. */
  syncDirectory(): void {
    const dirFd = openSync(this.dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  /** Resolves once no background save is in flight (tests; a shutdown that wants the disk quiet). */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * save() without blocking the thread: the file is written and fsynced in
   * the thread pool; then, on this thread, `commit()` decides whether it
   * still replaces the current one (the rename is made here, so it is
   * ordered with every synchronous save); then the directory is fsynced in
   * the pool. `done(true)` once the bound is durable; `done(false)` when it
   * was not committed or something failed (after a commit, the rename may
   * have happened without the directory fsync).
   */
  saveInBackground(id: string, bound: bigint, commit: () => boolean, done: (durable: boolean) => void): void {
    const path = join(this.dir, id);
    // A name of its own: a closed reservation's save may still be writing when its replacement starts one.
    const temporary = `${path}.${process.pid}-${++backgroundSaves}.next`;
    this.#inFlight++;
    void this.#saveDurably(path, temporary, bound, commit).then((durable) => {
      if (--this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
      done(durable);
    });
  }

  /** The steps of saveInBackground; false when it was not committed or a step failed (never rejects). */
  async #saveDurably(path: string, temporary: string, bound: bigint, commit: () => boolean): Promise<boolean> {
    let file: FileHandle | undefined;
    try {
      file = await open(temporary, "w", 0o600);
      await file.writeFile(`${bound}\n`);
      await file.sync();
      const closing = file;
      file = undefined;
      await closing.close();
      // commit() and the rename in one synchronous step: no synchronous save can come between them.
      if (commit()) {
        renameSync(temporary, path);
      } else {
        await unlink(temporary);
        return false;
      }
    } catch {
      await file?.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      return false;
    }
    try {
      const directory = await open(this.dir, "r");
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * One SA's reservation: `bound` is durable; `ensure(next)` extends it before
 * a number up to `next` may be used (outbound) or accepted (inbound).
 */
export class Reservation {
  /** Durable on disk. */
  #bound: bigint;
  readonly #half: bigint;
  /** A background save is in flight (one at a time). */
  #extending = false;
  /** A background save was committed (renamed, or about to be) and its directory fsync has not succeeded. */
  #renamedNotSynced = false;
  #closed = false;

  constructor(private readonly store: SeqStore, private readonly id: string, private readonly block: bigint, private readonly limit: bigint) {
    this.#bound = store.load(id);
    this.#half = block / 2n;
  }

  /** The bound found on disk at start (later: the durable one): the SA resumes above it. */
  get bound(): bigint {
    return this.#bound;
  }

  /**
   * Makes sure numbers up to `next` are covered by a durable bound before
   * they are used: at once (waiting for the disk) when `next` is past it,
   * in the background when it is within half a block of it.
   */
  ensure(next: bigint): void {
    if (next + this.#half <= this.#bound) return;
    // Closed: the file is no longer this reservation's (a replacement or a clean stop's exact save owns it).
    if (this.#closed) return;
    let target = next + this.block;
    if (target > this.limit) target = this.limit;
    if (next <= this.#bound) {
      if (!this.#extending && target > this.#bound) this.#extendInBackground(target);
      return;
    }
    this.store.save(this.id, target);
    this.#bound = target;
  }

  /**
   * No save of this reservation's may replace the file from now on (the SA
   * is going away, or a clean stop writes exact counters next); one already
   * renamed is made durable before this returns.
   */
  close(): void {
    this.#closed = true;
    if (this.#renamedNotSynced) this.store.syncDirectory();
    this.#renamedNotSynced = false;
  }

  #extendInBackground(target: bigint): void {
    this.#extending = true;
    // A synchronous save that went further meanwhile must not be undone by this older rename.
    const commit = (): boolean => {
      if (this.#closed || target <= this.#bound) return false;
      this.#renamedNotSynced = true;
      return true;
    };
    this.store.saveInBackground(this.id, target, commit, (durable) => {
      this.#extending = false;
      // A failed directory fsync leaves the rename undurable: close() syncs it then.
      if (!durable) return;
      this.#renamedNotSynced = false;
      if (target > this.#bound) this.#bound = target;
    });
  }
}
