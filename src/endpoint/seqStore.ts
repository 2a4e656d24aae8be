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
 * Files are named by direction, SPI and a fingerprint of the key, so a new
 * key starts from zero and the key itself is never written.
 */
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";

export const OUT_BLOCK = 1n << 20n;
export const IN_BLOCK = 1n << 16n;

export class SeqStore {
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
    const dirFd = openSync(this.dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}

/**
 * One SA's reservation: `bound` is durable; `ensure(next)` extends it before
 * a number up to `next` may be used (outbound) or accepted (inbound).
 */
export class Reservation {
  #bound: bigint;

  constructor(private readonly store: SeqStore, private readonly id: string, private readonly block: bigint, private readonly limit: bigint) {
    this.#bound = store.load(id);
  }

  /** The bound found on disk at start: the SA resumes above it. */
  get bound(): bigint {
    return this.#bound;
  }

  /** Extends the durable bound if `next` comes within half a block of it. */
  ensure(next: bigint): void {
    if (next + this.block / 2n <= this.#bound) return;
    let bound = next + this.block;
    if (bound > this.limit) bound = this.limit;
    this.store.save(this.id, bound);
    this.#bound = bound;
  }
}
