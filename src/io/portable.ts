/**
 * The portable UDP path, on node:dgram.
 *
 * Why it exists: where the native addon cannot load (no compiler when the
 * package was installed, not Linux, SLUICE_IO=portable), sluice still has to
 * move packets. This path is correct, not fast: dgram hands over one datagram
 * per 'message' event in a fresh Buffer, which is then copied into a slot, and
 * sending copies each packet out of its slot (dgram sends asynchronously, and
 * the copy is what lets the caller reuse the slot as soon as sendBatch
 * returns, the same contract as the native path). It has no TUN devices, no
 * GSO/GRO and no SO_REUSEPORT (Node 20's dgram lacks it).
 *
 * Addresses use the same 28-byte encoding as the native path (address.ts), and
 * buffers and offsets mean the same thing: byte offsets into the memory.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { ADDRESS_BYTES, decodeAddress, encodeAddress } from "./address.js";
import type { IoBuffer } from "./native.js";

/** Where received datagrams go: a slot is claimed, the bytes copied in, then handed over. */
export interface PortableReceiver {
  /** A byte offset in the buffer with room for `length` bytes, or -1 to drop the datagram (no free slot). */
  claim(length: number): number;
  /**
   * The datagram now sits at buffer[offset, offset + length). `address` holds
   * its source in the 28-byte encoding; it is reused by the next datagram.
   */
  received(offset: number, length: number, address: Uint8Array): void;
}

export interface PortableUdpOptions {
  family: 4 | 6;
  address: string;
  port: number;
  /** The memory the slots are in. */
  buffer: IoBuffer;
  receiver: PortableReceiver;
  v6Only?: boolean;
  recvBufferSize?: number;
  sendBufferSize?: number;
  /** Errors that arrive after the fact (a failed asynchronous send, a socket error). */
  onError?: (error: Error) => void;
  /**
   * The most datagrams that may wait in libuv for room in the socket buffer;
   * sendBatch sends no more beyond that (default: no limit). dgram otherwise
   * queues every send, so a sender faster than the link grows that queue
   * without bound; with a limit, sendBatch returns fewer than asked, like the
   * native path when the socket buffer is full.
   */
  maxSendQueue?: number;
}

export interface PortableUdpStats {
  received: number;
  /** Datagrams dropped because claim() had no room, or claimed a range outside the buffer. */
  dropped: number;
  sent: number;
  sendErrors: number;
}

function bytesOf(buffer: IoBuffer): Uint8Array {
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return new Uint8Array(buffer);
}

export class PortableUdpSocket {
  readonly path = "portable" as const;
  readonly stats: PortableUdpStats = { received: 0, dropped: 0, sent: 0, sendErrors: 0 };
  readonly #socket: Socket;
  readonly #bytes: Uint8Array;
  readonly #source = new Uint8Array(ADDRESS_BYTES);
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #maxSendQueue: number;
  #closed = false;

  private constructor(socket: Socket, options: PortableUdpOptions) {
    this.#socket = socket;
    this.#bytes = bytesOf(options.buffer);
    this.#onError = options.onError;
    this.#maxSendQueue = options.maxSendQueue ?? Infinity;
    const { receiver } = options;
    socket.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
      const offset = receiver.claim(msg.length);
      if (offset < 0 || !Number.isInteger(offset) || offset + msg.length > this.#bytes.length) {
        this.stats.dropped++;
        return;
      }
      this.#bytes.set(msg, offset);
      encodeAddress(this.#source, 0, { family: rinfo.family === "IPv6" ? 6 : 4, address: rinfo.address, port: rinfo.port });
      this.stats.received++;
      receiver.received(offset, msg.length, this.#source);
    });
    socket.on("error", (error) => this.#onError?.(error));
  }

  /** Binds a dgram socket; resolves once it is listening. */
  static open(options: PortableUdpOptions): Promise<PortableUdpSocket> {
    const socket = createSocket({
      type: options.family === 6 ? "udp6" : "udp4",
      ipv6Only: options.v6Only ?? false,
      recvBufferSize: options.recvBufferSize,
      sendBufferSize: options.sendBufferSize,
    });
    return new Promise((resolve, reject) => {
      const fail = (error: Error): void => {
        socket.close();
        reject(error);
      };
      socket.once("error", fail);
      socket.bind(options.port, options.address, () => {
        socket.off("error", fail);
        resolve(new PortableUdpSocket(socket, options));
      });
    });
  }

  /** The bound port. */
  get port(): number {
    return this.#socket.address().port;
  }

  /**
   * Sends buffer[offsets[i], +lengths[i]) to addresses entry i (null or family
   * 0: the connected peer), copying each packet out first. Returns how many
   * were handed to dgram: count, or fewer when maxSendQueue datagrams are
   * already waiting. Failures are counted and reported to onError later.
   */
  sendBatch(buffer: IoBuffer, offsets: Int32Array, lengths: Int32Array, addresses: Uint8Array | null, count: number): number {
    const bytes = buffer === this.#bytes.buffer ? this.#bytes : bytesOf(buffer);
    if (count > offsets.length || count > lengths.length || (addresses && count * ADDRESS_BYTES > addresses.length)) {
      throw new RangeError(`a batch of ${count} does not fit the arrays given`);
    }
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (off < 0 || len < 0 || off + len > bytes.length) {
        throw new RangeError(`packet ${i}: send range [${off}, ${off + len}) is outside the buffer of ${bytes.length} bytes`);
      }
    }
    const done = (error: Error | null): void => {
      if (error) {
        this.stats.sendErrors++;
        this.#onError?.(error);
      }
    };
    for (let i = 0; i < count; i++) {
      if (this.#maxSendQueue !== Infinity && this.#socket.getSendQueueCount() >= this.#maxSendQueue) return i;
      const copy = Buffer.from(bytes.subarray(offsets[i]!, offsets[i]! + lengths[i]!));
      const to = addresses ? decodeAddress(addresses, i) : null;
      if (to) this.#socket.send(copy, to.port, to.address, done);
      else this.#socket.send(copy, done);
      this.stats.sent++;
    }
    return count;
  }

  /** Lets the process exit while the socket is open (or not). */
  unref(): void {
    this.#socket.unref();
  }

  ref(): void {
    this.#socket.ref();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}
