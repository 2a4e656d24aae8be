// Shared helpers of the test suite (not a test file itself): vector loading,
// hex, a seeded random generator, and a raw kernel instance on its own memory.
import { readFileSync } from "node:fs";
import { createKernelMemory, instantiateKernel, type KernelExports } from "../src/kernel/wasm.js";

/** Reads test/vectors/<name> (relative to the compiled test in dist/test/). */
export function loadVector<T = any>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../test/vectors/${name}`, import.meta.url), "utf8")) as T;
}

export function hex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || /[^0-9a-f]/i.test(s)) throw new Error(`bad hex: ${s.slice(0, 40)}`);
  return Uint8Array.from(Buffer.from(s, "hex"));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Big-endian bytes of a number below 2^(8·n). */
export function beBytes(value: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/**
 * The seed of this run's random inputs: SLUICE_TEST_SEED if set, else random.
 * Failure messages carry it so a failing run can be replayed.
 */
export const SEED: number = process.env.SLUICE_TEST_SEED !== undefined
  ? Number(process.env.SLUICE_TEST_SEED) >>> 0
  : (Math.random() * 2 ** 32) >>> 0;

/** A small seeded generator (sfc32 seeded through splitmix32). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** An integer in [0, n), n up to 2^32. */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** An integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** A bigint in [0, n), n up to 2^64. */
  bigBelow(n: bigint): bigint {
    const r = (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    return r % n;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** A kernel instance on a memory of its own, for tests that drive exports directly. */
export interface RawKernel {
  memory: WebAssembly.Memory;
  kernel: KernelExports;
  /** A fresh view of the whole memory. */
  bytes(): Uint8Array;
  view(): DataView;
}

export function rawKernel(pages = 16): RawKernel {
  const memory = createKernelMemory(pages);
  const kernel = instantiateKernel(memory);
  return {
    memory,
    kernel,
    bytes: () => new Uint8Array(memory.buffer),
    view: () => new DataView(memory.buffer),
  };
}
