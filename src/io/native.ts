/**
 * The typed face of the native I/O addon (native/, built by node-gyp).
 *
 * Why it is loaded this way: the addon is optional. A machine without a C
 * compiler, a platform other than Linux, or a failed build must still run
 * sluice on the portable path (portable.ts), so loading never throws: it
 * returns null and keeps the reason in `nativeIoUnavailableReason`, which the
 * engine reports when it says which path it runs on.
 *
 * Why the wrappers exist at all: Node 20's napi_get_arraybuffer_info rejects a
 * SharedArrayBuffer (checked on v20.20.2), while napi_get_typedarray_info over
 * one works. So a SharedArrayBuffer (the engine's WebAssembly.Memory buffer) is
 * wrapped once in a Uint8Array that is cached per buffer, and offsets are byte
 * offsets into that buffer, i.e. the memory addresses of layout.ts. Nothing
 * here copies packet bytes.
 *
 * Address arrays use the 28-byte encoding of address.ts. Batches are capped at
 * BATCH_MAX packets per call; a larger count is served partly (the return value
 * says how many), like any short read or write.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { ADDRESS_BYTES } from "./address.js";

/** What a packet buffer may be: the memory's SharedArrayBuffer, an ArrayBuffer, or a view of either. */
export type IoBuffer = SharedArrayBuffer | ArrayBuffer | ArrayBufferView;

export interface UdpOpenOptions {
  /** Ask for UDP GRO (coalesced receive); see `UdpCapabilities.groEnabled` for the result. */
  gro?: boolean;
  /** SO_REUSEPORT, to spread one port over several sockets. */
  reuseport?: boolean;
  /** IPv6 sockets: refuse IPv4-mapped traffic (kernel default otherwise). */
  v6Only?: boolean;
  /** SO_RCVBUF to ask for (best effort; default 4 MiB). */
  recvBufferSize?: number;
  /** SO_SNDBUF to ask for (best effort; default 4 MiB). */
  sendBufferSize?: number;
}

export interface UdpCapabilities {
  /** The kernel has UDP_SEGMENT (send offload): `gsoSize` can be used. */
  gso: boolean;
  /** The kernel has UDP_GRO on this socket. */
  gro: boolean;
  /** GRO is switched on: received packets may be super-packets (pass `segments`). */
  groEnabled: boolean;
  /** The buffer sizes the kernel granted (it reports twice the requested value). */
  recvBufferSize: number;
  sendBufferSize: number;
  /** Datagrams the kernel dropped so far because the receive buffer was full (SO_MEMINFO; absent where unknown). */
  drops?: number;
}

export interface UdpSocketInfo extends UdpCapabilities {
  fd: number;
  /** The bound port (the one the kernel chose when 0 was asked for). */
  port: number;
}

export interface TunOptions {
  /** IFF_MULTI_QUEUE: open the same device again for another queue. */
  multiQueue?: boolean;
  /**
   * TUN offloads (IFF_VNET_HDR with TSO4/TSO6 and checksum offload): a read
   * may bring a TCP super-packet of up to 64 KB, which tunReadBatch cuts into
   * MTU-sized segments, and tunWriteBatch writes runs of one TCP flow's
   * segments as one super-packet. Packets in and out of the calls stay plain
   * IP packets either way. UDP runs of one flow are coalesced on write too.
   */
  offload?: boolean;
}

export interface TunDevice {
  fd: number;
  /** The device name the kernel gave (it fills in a pattern like "tun%d"). */
  name: string;
  /** Offloads are on (asked for and granted by the kernel). */
  offload: boolean;
}

/** What the offloads of a TUN device did (counts since it was opened). */
export interface TunOffloadStats {
  /** read() calls that returned a packet. */
  reads: number;
  /** Of those, TCP super-packets cut into segments. */
  superPackets: number;
  /** Packets handed out (segments and plain packets). */
  segments: number;
  /** Plain packets whose checksum the kernel left to sluice and sluice completed. */
  checksums: number;
  /** Reads dropped as malformed (handed out as a packet of length 0). */
  malformed: number;
  /** write() calls. */
  writes: number;
  /** Of those, super-packets of two or more coalesced segments... */
  groups: number;
  /** ...which carried this many segments in all. */
  coalesced: number;
  /** Coalesced writes the kernel refused (EINVAL); that protocol is then written packet by packet. */
  refused: number;
}

export type PollEvents = "r" | "w" | "rw";

export interface PollHandle {
  readonly fd: number;
  /** Stops watching; the callback is not called again. Idempotent. */
  stop(): void;
  /** Changes the events watched (one watcher per fd: update it, do not poll twice). */
  update(events: PollEvents): void;
  /** Keep (default) or stop keeping the process alive while watching. */
  ref(): void;
  unref(): void;
}

/** Called when the fd is ready; `error` is set when libuv reports a failure on the fd. */
export type PollCallback = (events: PollEvents, error?: Error) => void;

/** Errors of the addon: like Node's system errors, `code` is the errno name ("EADDRINUSE"). */
export interface NativeIoError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  index?: number;
}

export interface NativeIo {
  readonly path: "native";
  /** Packets one call handles at most. */
  readonly batchMax: number;

  udpOpen(family: 4 | 6, address: string, port: number, options?: UdpOpenOptions): UdpSocketInfo;
  udpCapabilities(fd: number): UdpCapabilities;
  /**
   * connect(): sends with a null address (or family 0) go to this peer, and
   * only its datagrams are received. `address` is one 28-byte entry; family 0
   * dissolves the association.
   */
  udpConnect(fd: number, address: Uint8Array): void;
  /**
   * recvmmsg(MSG_DONTWAIT): packet i lands at buffer[offsets[i], +capacity).
   * Writes lengths[i] (negative: the packet did not fit and was cut — drop it),
   * addresses entry i (source, 28-byte encoding; null to skip) and, when given,
   * segments[i] (GRO segment size of a coalesced super-packet, else 0).
   * Returns how many were received; 0 when none are waiting (EAGAIN).
   */
  udpRecvBatch(
    fd: number, buffer: IoBuffer, offsets: Int32Array, capacity: number, lengths: Int32Array,
    addresses: Uint8Array | null, count: number, segments?: Int32Array | null,
  ): number;
  /**
   * sendmmsg(MSG_DONTWAIT) of buffer[offsets[i], +lengths[i]) to addresses entry i
   * (null, or family 0: the connected peer). Returns how many were sent: fewer
   * than count when the socket buffer filled, 0 on EAGAIN. With gsoSize, the
   * kernel cuts each message into datagrams of that size.
   */
  udpSendBatch(
    fd: number, buffer: IoBuffer, offsets: Int32Array, lengths: Int32Array, addresses: Uint8Array | null,
    count: number, options?: { gsoSize?: number },
  ): number;

  /**
   * One send of up to 64 packets to one address, cut by the kernel into
   * datagrams of gsoSize bytes (UDP GSO): the payload is gathered from the
   * packets in place; every packet but the last must be exactly gsoSize
   * bytes. Returns 1 when sent, 0 when the socket is full (EAGAIN).
   */
  udpSendGso(
    fd: number, buffer: IoBuffer, offsets: Int32Array, lengths: Int32Array, count: number, address: Uint8Array | null, gsoSize: number,
  ): number;

  /** Opens (creating if needed) a TUN device, IFF_TUN | IFF_NO_PI, nonblocking; see TunOptions.offload. */
  tunOpen(name: string, options?: TunOptions): TunDevice;
  /**
   * read() until EAGAIN or max packets, packet i into buffer[offsets[i], +capacity).
   * lengths[i] < 0: the packet was longer than capacity (-lengths[i] bytes) and was cut.
   * With offload, a super-packet's segments that did not fit in max wait for
   * the next call: call again while it returns max, readable or not. A read
   * that is malformed or would not fit in capacity comes out as one packet of
   * length 0 (count it and drop it).
   */
  tunReadBatch(fd: number, buffer: IoBuffer, offsets: Int32Array, capacity: number, lengths: Int32Array, max: number): number;
  /**
   * write() of each packet until EAGAIN; returns how many were written. With
   * offload, a coalesced run counts as its packets, and the first packet's
   * headers are rewritten in place for the run: packets not written must be
   * dropped, not written again (the first of a run is no longer whole).
   */
  tunWriteBatch(fd: number, buffer: IoBuffer, offsets: Int32Array, lengths: Int32Array, count: number): number;
  /** The offload counters of a device opened with `offload`, else null. */
  tunOffloadStats(fd: number): TunOffloadStats | null;
  /**
   * memmove of buffer[from[i], +lengths[i]) to to[i], for i < count in order:
   * the copies of a whole receive in one call (a copyWithin per packet costs
   * a trip into V8's runtime each). Every range is checked before any copy.
   */
  copyBatch(buffer: IoBuffer, from: Int32Array, to: Int32Array, lengths: Int32Array, count: number): void;
  /**
   * The segmentation of an offload read without a device (tests, tools):
   * `read` is a virtio header and a packet; segment k lands at
   * out[k * capacity, +lengths[k]). Returns the count, or -1 when the read is
   * malformed or a segment exceeds capacity.
   */
  offloadSegment(read: Uint8Array, out: Uint8Array, capacity: number, lengths: Int32Array): number;
  /**
   * The coalescing of an offload write without a device: the bytes the write
   * starting at packet 0 would carry (virtio header + packet) land in out.
   */
  offloadCoalesce(buffer: IoBuffer, offsets: Int32Array, lengths: Int32Array, count: number, out: Uint8Array): { packets: number; length: number };

  /** Readiness of fd from libuv on this thread's event loop. */
  poll(fd: number, events: PollEvents, callback: PollCallback): PollHandle;
  close(fd: number): void;
  /**
   * The route to destination/prefixLength through `device` in the main table,
   * replaced (`replace`, as `ip route replace … dev DEVICE`) or deleted, by one
   * rtnetlink request in this thread. Returns 0, or the errno the kernel
   * refused it with (ENODEV, ESRCH: no such route to delete, EPERM, …).
   */
  routeChange(replace: boolean, device: string, family: 4 | 6, destination: Uint8Array, prefixLength: number): number;
}

/** The addon's own exports (buffers must already be ArrayBuffer or views). */
interface Addon {
  ABI: number;
  ADDRESS_BYTES: number;
  BATCH_MAX: number;
  udpOpen(family: number, address: string, port: number, options?: UdpOpenOptions): UdpSocketInfo;
  udpCapabilities(fd: number): UdpCapabilities;
  udpConnect(fd: number, address: Uint8Array): void;
  udpRecvBatch(
    fd: number, buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, capacity: number, lengths: Int32Array,
    addresses: Uint8Array | null, count: number, segments?: Int32Array | null,
  ): number;
  udpSendBatch(
    fd: number, buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, lengths: Int32Array,
    addresses: Uint8Array | null, count: number, options?: { gsoSize?: number },
  ): number;
  udpSendGso(
    fd: number, buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, lengths: Int32Array, count: number,
    address: Uint8Array | null, gsoSize: number,
  ): number;
  tunOpen(name: string, options?: TunOptions): TunDevice;
  tunReadBatch(
    fd: number, buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, capacity: number, lengths: Int32Array,
    max: number,
  ): number;
  tunWriteBatch(fd: number, buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, lengths: Int32Array, count: number): number;
  tunOffloadStats(fd: number): TunOffloadStats | null;
  copyBatch(buffer: ArrayBuffer | ArrayBufferView, from: Int32Array, to: Int32Array, lengths: Int32Array, count: number): void;
  offloadSegment(read: Uint8Array, out: Uint8Array, capacity: number, lengths: Int32Array): number;
  offloadCoalesce(buffer: ArrayBuffer | ArrayBufferView, offsets: Int32Array, lengths: Int32Array, count: number, out: Uint8Array): { packets: number; length: number };
  poll(fd: number, events: string, callback: PollCallback): PollHandle;
  close(fd: number): void;
  routeChange(replace: boolean, device: string, family: number, destination: Uint8Array, prefixLength: number): number;
}

const ADDON_ABI = 3;

/** Where the addon is, relative to this file compiled to dist/src/io/native.js. */
export const nativeIoAddonPath: string =
  process.env.SLUICE_IO_ADDON ?? fileURLToPath(new URL("../../../native/build/Release/sluice_io.node", import.meta.url));

/** Why loadNativeIo() returned null (null while it has not, or when the addon loaded). */
export let nativeIoUnavailableReason: string | null = null;

let loaded: NativeIo | null | undefined;

const views = new WeakMap<SharedArrayBuffer, Uint8Array>();

/** The buffer in a form the addon takes: a SharedArrayBuffer becomes a cached Uint8Array over all of it. */
function asView(buffer: IoBuffer): ArrayBuffer | ArrayBufferView {
  if (typeof SharedArrayBuffer === "function" && buffer instanceof SharedArrayBuffer) {
    let v = views.get(buffer);
    if (v === undefined) {
      v = new Uint8Array(buffer);
      views.set(buffer, v);
    }
    return v;
  }
  return buffer as ArrayBuffer | ArrayBufferView;
}

function wrap(addon: Addon): NativeIo {
  return {
    path: "native",
    batchMax: addon.BATCH_MAX,
    udpOpen: (family, address, port, options) => addon.udpOpen(family, address, port, options),
    udpCapabilities: (fd) => addon.udpCapabilities(fd),
    udpConnect: (fd, address) => addon.udpConnect(fd, address),
    udpRecvBatch: (fd, buffer, offsets, capacity, lengths, addresses, count, segments) =>
      addon.udpRecvBatch(fd, asView(buffer), offsets, capacity, lengths, addresses, count, segments),
    udpSendBatch: (fd, buffer, offsets, lengths, addresses, count, options) =>
      addon.udpSendBatch(fd, asView(buffer), offsets, lengths, addresses, count, options),
    udpSendGso: (fd, buffer, offsets, lengths, count, address, gsoSize) =>
      addon.udpSendGso(fd, asView(buffer), offsets, lengths, count, address, gsoSize),
    tunOpen: (name, options) => addon.tunOpen(name, options),
    tunReadBatch: (fd, buffer, offsets, capacity, lengths, max) =>
      addon.tunReadBatch(fd, asView(buffer), offsets, capacity, lengths, max),
    tunWriteBatch: (fd, buffer, offsets, lengths, count) => addon.tunWriteBatch(fd, asView(buffer), offsets, lengths, count),
    tunOffloadStats: (fd) => addon.tunOffloadStats(fd),
    copyBatch: (buffer, from, to, lengths, count) => addon.copyBatch(asView(buffer), from, to, lengths, count),
    offloadSegment: (read, out, capacity, lengths) => addon.offloadSegment(read, out, capacity, lengths),
    offloadCoalesce: (buffer, offsets, lengths, count, out) => addon.offloadCoalesce(asView(buffer), offsets, lengths, count, out),
    poll: (fd, events, callback) => addon.poll(fd, events, callback),
    close: (fd) => addon.close(fd),
    routeChange: (replace, device, family, destination, prefixLength) => addon.routeChange(replace, device, family, destination, prefixLength),
  };
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

/**
 * The native I/O path, or null with the reason in `nativeIoUnavailableReason`.
 * Loads once; later calls return the same answer. SLUICE_IO=portable forces null.
 */
export function loadNativeIo(): NativeIo | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.env.SLUICE_IO === "portable") {
    nativeIoUnavailableReason = "SLUICE_IO=portable asks for the portable path";
  } else if (process.platform !== "linux") {
    nativeIoUnavailableReason = `the native I/O addon is Linux-only (this is ${process.platform})`;
  } else {
    try {
      const addon = createRequire(import.meta.url)(nativeIoAddonPath) as Addon;
      if (addon.ABI !== ADDON_ABI || addon.ADDRESS_BYTES !== ADDRESS_BYTES) {
        nativeIoUnavailableReason =
          `the native I/O addon at ${nativeIoAddonPath} is of another version (ABI ${addon.ABI}, want ${ADDON_ABI}): rebuild it (npm run build:native)`;
      } else {
        loaded = wrap(addon);
        nativeIoUnavailableReason = null;
      }
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      nativeIoUnavailableReason =
        code === "MODULE_NOT_FOUND"
          ? `the native I/O addon is not built (no ${nativeIoAddonPath}; run npm run build:native, which needs a C compiler and Node's headers)`
          : `the native I/O addon at ${nativeIoAddonPath} failed to load: ${firstLine(error)}`;
    }
  }
  return loaded;
}
