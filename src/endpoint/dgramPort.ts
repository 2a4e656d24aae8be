/**
 * The outer port of the portable path: ESP in UDP (RFC 3948) on node:dgram
 * (io/portable.ts), for where the native addon is absent or fails to load.
 *
 *   'message' → claim (a slot) → copy → received → Forwarder.classify → addInbound
 *     → open batch (Accumulator: full, or at the end of the I/O turn) → submitOpen
 *   Forwarder (#sendSealed) → sendBatch (each packet copied out) → dgram
 *   Forwarder.sendControl → sendBatch of one datagram (IKE) → dgram
 *
 * Why it differs from udpPort.ts: dgram delivers one datagram per event in
 * a Buffer of its own and cannot be paused, so each datagram is copied into
 * a slot, and when the engine has no slot or batch to spare, or the core
 * paused the ports (a reload), the datagram is dropped and counted
 * ("backpressure") instead of being left in the kernel.
 * Sends are bounded too: beyond MAX_SEND_QUEUE datagrams waiting in libuv,
 * packets are dropped ("udp-send-full"), as the native path drops when the
 * socket buffer is full. No GSO, GRO or batching system calls: slower.
 */
import { ADDRESS_BYTES, encodeAddress, type SocketAddress } from "../io/address.js";
import { PortableUdpSocket, type PortableReceiver } from "../io/portable.js";
import type { EndpointConfig } from "./config.js";
import type { Forwarder } from "./forwarder.js";
import type { Entries, OuterPort } from "./ports.js";
import { Accumulator } from "./accumulator.js";

/** Datagrams that may wait in libuv for the socket buffer: a few batches. */
const MAX_SEND_QUEUE = 1024;

export class DgramPort implements OuterPort, PortableReceiver {
  readonly #host: Forwarder;
  readonly #open: Accumulator;
  readonly #addresses: Uint8Array;
  /** One control datagram's send (its own arrays: it may come from inside a completion). */
  readonly #control = { offsets: new Int32Array(1), lengths: new Int32Array(1), address: new Uint8Array(ADDRESS_BYTES) };
  #socket: PortableUdpSocket | undefined;
  /** The slot claim() handed out for the datagram that received() completes. */
  #claimed = -1;
  /** Datagrams are taken from start() (the peers are known) until stop(). */
  #receiving = false;
  /** Paused by the core: datagrams are dropped, as dgram cannot leave them in the kernel. */
  #paused = false;

  private constructor(host: Forwarder) {
    this.#host = host;
    this.#open = new Accumulator(host.engine, "open", (batch) => host.submitOpen(batch));
    this.#addresses = new Uint8Array(host.engine.layout.batchSize * ADDRESS_BYTES);
  }

  /** Binds the config's local address and port with node:dgram. */
  static async open(config: EndpointConfig, host: Forwarder): Promise<DgramPort> {
    const port = new DgramPort(host);
    port.#socket = await PortableUdpSocket.open({
      family: config.local.address.includes(":") ? 6 : 4,
      address: config.local.address,
      port: config.local.port,
      buffer: host.engine.bytes,
      receiver: port,
      recvBufferSize: 4 << 20,
      sendBufferSize: 4 << 20,
      maxSendQueue: MAX_SEND_QUEUE,
      onError: (error) => host.log.warn({ event: "udp-error", error: String(error) }, "UDP socket error"),
    });
    return port;
  }

  get port(): number {
    return this.#socket!.port;
  }

  /** One open batch at a time (the accumulator). */
  readonly batchesPerRead = 1;

  start(): void {
    this.#receiving = true;
  }

  // dgram reads on its own from the moment it is bound: pausing drops
  // instead. What was gathered is submitted now, so engine.idle() covers it
  // (see AppPort.pause).
  pause(): void {
    this.#paused = true;
    this.#open.flush();
  }

  resume(): void {
    this.#paused = false;
  }

  /** Submits what was gathered; later datagrams are refused. */
  stop(): void {
    this.#receiving = false;
    this.#open.flush();
  }

  close(): Promise<void> {
    return this.#socket?.close() ?? Promise.resolve();
  }

  // ---- receiving (PortableReceiver) ----

  claim(length: number): number {
    if (!this.#receiving) return -1;
    const host = this.#host;
    const engine = host.engine;
    try {
      if (length > engine.maxEspPacket) {
        host.drop("udp-truncated");
        return -1;
      }
      const slot = this.#paused || this.#open.batch() === null ? -1 : engine.acquireSlot();
      if (slot < 0) {
        host.drop("backpressure");
        return -1;
      }
      this.#claimed = slot;
      return engine.espOffset(slot);
    } catch (error) {
      host.internalError(error);
      return -1;
    }
  }

  received(offset: number, length: number, source: Uint8Array): void {
    const host = this.#host;
    const slot = this.#claimed;
    this.#claimed = -1;
    try {
      const child = host.classify(host.engine.bytes, offset, length, source, 0);
      if (child === undefined) {
        host.engine.releaseSlot(slot);
        return;
      }
      host.addInbound(this.#open.batch()!, slot, child, length, source, 0);
      this.#open.added();
    } catch (error) {
      host.internalError(error);
    }
  }

  // ---- sending ----

  send(entries: Entries, count: number): void {
    const sent = this.#sendBatch(entries, count);
    if (sent < count) this.#host.drop("udp-send-full", count - sent);
  }

  sendKeepalives(entries: Entries, count: number): number {
    return this.#sendBatch(entries, count);
  }

  sendControl(datagram: Uint8Array, to: SocketAddress): boolean {
    const control = this.#control;
    try {
      encodeAddress(control.address, 0, to);
      control.lengths[0] = datagram.length;
      if (this.#socket!.sendBatch(datagram, control.offsets, control.lengths, control.address, 1) === 1) return true;
      this.#host.drop("control-send-full");
    } catch (error) {
      this.#host.ioError("control-send-error", error, 1);
    }
    return false;
  }

  #sendBatch(entries: Entries, count: number): number {
    const peerById = this.#host.peerById;
    for (let i = 0; i < count; i++) this.#addresses.set(peerById[entries.peers[i]!]!.address, i * ADDRESS_BYTES);
    try {
      return this.#socket!.sendBatch(this.#host.engine.bytes.buffer, entries.offsets, entries.lengths, this.#addresses, count);
    } catch (error) {
      this.#host.ioError("udp-send-error", error, count);
      return count;
    }
  }
}
