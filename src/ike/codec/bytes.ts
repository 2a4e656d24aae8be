/**
 * Byte plumbing for the IKE codec: a growable writer and the parse error.
 *
 * Why its own file: every payload's encoder and decoder need the same two
 * things, and the error carries the reason the IKE core counts a dropped
 * message under ("truncated", "bad-length", …), so the reasons are named
 * once, here.
 */

/** Why a message was refused by the parser; the core counts drops by it. */
export type ParseReason =
  | "truncated"
  | "bad-length"
  | "bad-version"
  | "invalid-syntax"
  | "unsupported-critical";

export class ParseError extends Error {
  constructor(readonly reason: ParseReason, detail: string, /** For "unsupported-critical": the payload type. */ readonly payloadType = 0) {
    super(`${reason}: ${detail}`);
    this.name = "ParseError";
  }
}

/** A big-endian writer into a buffer that grows as needed (messages are small: under 64 KB). */
export class ByteWriter {
  #bytes: Uint8Array;
  #view: DataView;
  length = 0;

  constructor(capacity = 512) {
    this.#bytes = new Uint8Array(capacity);
    this.#view = new DataView(this.#bytes.buffer);
  }

  #room(n: number): number {
    const at = this.length;
    if (at + n > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + n));
      grown.set(this.#bytes.subarray(0, at));
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.length = at + n;
    return at;
  }

  // Each writer takes its position before touching #bytes: #room may replace the buffer.
  u8(value: number): this {
    const at = this.#room(1);
    this.#bytes[at] = value;
    return this;
  }

  u16(value: number): this {
    const at = this.#room(2);
    this.#view.setUint16(at, value);
    return this;
  }

  u32(value: number): this {
    const at = this.#room(4);
    this.#view.setUint32(at, value >>> 0);
    return this;
  }

  u64(value: bigint): this {
    const at = this.#room(8);
    this.#view.setBigUint64(at, value);
    return this;
  }

  bytes(value: Uint8Array): this {
    const at = this.#room(value.length);
    this.#bytes.set(value, at);
    return this;
  }

  zeros(n: number): this {
    const at = this.#room(n);
    this.#bytes.fill(0, at, this.length);
    return this;
  }

  /** Reserves a 16-bit length field at the current position; patch it later with setU16. */
  mark16(): number {
    return this.#room(2);
  }

  setU16(at: number, value: number): void {
    this.#view.setUint16(at, value);
  }

  setU32(at: number, value: number): void {
    this.#view.setUint32(at, value >>> 0);
  }

  setU8(at: number, value: number): void {
    this.#bytes[at] = value;
  }

  /** A copy of what was written. */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.length);
  }
}

/** A DataView over exactly `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A 64-bit IKE SPI as 16 hex digits, for logs and status. */
export function spiHex(spi: bigint): string {
  return spi.toString(16).padStart(16, "0");
}
