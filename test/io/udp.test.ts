// The native UDP path: batches of packets go from slots of a shared
// WebAssembly memory through real loopback sockets into other slots, with no
// copy in JavaScript; the checks are on the bytes and source addresses the
// kernel wrote, and on the addon refusing any range outside the buffer.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { HEADROOM } from "../../src/engine/layout.js";
import { ADDRESS_BYTES, decodeAddress, encodeAddress } from "../../src/io/address.js";
import { loadNativeIo, nativeIoAddonPath, nativeIoUnavailableReason, type NativeIo, type PollEvents } from "../../src/io/native.js";
import { ready } from "../fixtures/netns.js";

const io = loadNativeIo();
const SLOT = 2048;
const BATCH = 64;

/** The buffer of a shared memory as the engine makes it (1 MiB; TypeScript types it as ArrayBuffer). */
function sharedBuffer(): SharedArrayBuffer {
  const buffer: unknown = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true }).buffer;
  assert.ok(buffer instanceof SharedArrayBuffer);
  return buffer;
}

function packetAt(slot: number): number {
  return slot * SLOT + HEADROOM;
}

/** 64 sizes from 0 to 1420 bytes. */
const SIZES = Array.from({ length: BATCH }, (_, i) => (i === 0 ? 1420 : i === 1 ? 0 : i === 2 ? 1 : 20 + ((i * 151) % 1400)));

function fill(bytes: Uint8Array, at: number, length: number, seed: number): void {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[at + i] = x & 0xff;
  }
}


/** Receives until `count` packets arrived, waiting on readiness in between. */
async function receiveAll(
  native: NativeIo, fd: number, buffer: SharedArrayBuffer, firstSlot: number, count: number,
  lengths: Int32Array, addresses: Uint8Array,
): Promise<void> {
  let got = 0;
  const offsets = new Int32Array(count);
  const lens = new Int32Array(count);
  const addrs = new Uint8Array(count * ADDRESS_BYTES);
  while (got < count) {
    const want = count - got;
    for (let i = 0; i < want; i++) offsets[i] = packetAt(firstSlot + got + i);
    const n = native.udpRecvBatch(fd, buffer, offsets, SLOT - HEADROOM, lens, addrs, want);
    if (n === 0) {
      await ready(native, fd, "r");
      continue;
    }
    lengths.set(lens.subarray(0, n), got);
    addresses.set(addrs.subarray(0, n * ADDRESS_BYTES), got * ADDRESS_BYTES);
    got += n;
  }
}

/** Sends a whole batch, waiting for writability if the socket buffer fills. */
async function sendAll(
  native: NativeIo, fd: number, buffer: SharedArrayBuffer | Uint8Array, offsets: Int32Array, lengths: Int32Array,
  addresses: Uint8Array, count: number,
): Promise<void> {
  let sent = 0;
  while (sent < count) {
    const n = native.udpSendBatch(
      fd, buffer, offsets.subarray(sent), lengths.subarray(sent), addresses.subarray(sent * ADDRESS_BYTES), count - sent,
    );
    if (n === 0) await ready(native, fd, "w");
    sent += n;
  }
}

describe("native UDP batches", { skip: io ? false : `native I/O addon unavailable: ${nativeIoUnavailableReason}` }, () => {
  const native = io!;

  for (const [family, host] of [[4, "127.0.0.1"], [6, "::1"]] as const) {
    test(`64 packets of 0–1420 B over ${host}, slot to slot`, async () => {
      const buffer = sharedBuffer();
      const bytes = new Uint8Array(buffer);
      const rx = native.udpOpen(family, host, 0);
      const tx = native.udpOpen(family, host, 0);
      try {
        assert.ok(rx.port > 0 && tx.port > 0 && rx.port !== tx.port);
        // Out of slots 0..63, into slots 100..163.
        const offsets = new Int32Array(BATCH);
        const lengths = new Int32Array(BATCH);
        const to = new Uint8Array(BATCH * ADDRESS_BYTES);
        for (let i = 0; i < BATCH; i++) {
          offsets[i] = packetAt(i);
          lengths[i] = SIZES[i]!;
          fill(bytes, offsets[i]!, SIZES[i]!, i + 1);
          encodeAddress(to, i, { family, address: host, port: rx.port });
        }
        bytes.fill(0xee, packetAt(100) - HEADROOM, packetAt(100 + BATCH));
        await sendAll(native, tx.fd, buffer, offsets, lengths, to, BATCH);

        const gotLengths = new Int32Array(BATCH);
        const from = new Uint8Array(BATCH * ADDRESS_BYTES);
        await receiveAll(native, rx.fd, buffer, 100, BATCH, gotLengths, from);
        for (let i = 0; i < BATCH; i++) {
          assert.equal(gotLengths[i], SIZES[i], `length of packet ${i}`);
          const sent = bytes.subarray(packetAt(i), packetAt(i) + SIZES[i]!);
          const got = bytes.subarray(packetAt(100 + i), packetAt(100 + i) + SIZES[i]!);
          assert.ok(Buffer.from(got).equals(Buffer.from(sent)), `bytes of packet ${i}`);
          // Nothing written past the packet or into the headroom.
          assert.equal(bytes[packetAt(100 + i) + SIZES[i]!], 0xee, `byte after packet ${i}`);
          assert.equal(bytes[packetAt(100 + i) - 1], 0xee, `byte before packet ${i}`);
          const source = decodeAddress(from, i);
          assert.deepEqual({ family: source?.family, address: source?.address, port: source?.port }, { family, address: host, port: tx.port });
        }
        // Drained: the next receive finds nothing and says so with 0.
        assert.equal(native.udpRecvBatch(rx.fd, buffer, offsets, SLOT - HEADROOM, lengths, null, BATCH), 0);
      } finally {
        native.close(rx.fd);
        native.close(tx.fd);
      }
    });
  }

  test("an empty socket returns 0 (EAGAIN), whatever the buffer type", () => {
    const rx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      const offsets = new Int32Array([0, 2048]);
      const lengths = new Int32Array(2);
      const shared = sharedBuffer();
      assert.equal(native.udpRecvBatch(rx.fd, shared, offsets, 2048, lengths, null, 2), 0);
      assert.equal(native.udpRecvBatch(rx.fd, new Uint8Array(shared), offsets, 2048, lengths, null, 2), 0);
      assert.equal(native.udpRecvBatch(rx.fd, new ArrayBuffer(4096), offsets, 2048, lengths, null, 2), 0);
      assert.equal(native.udpRecvBatch(rx.fd, new ArrayBuffer(4096), offsets, 2048, lengths, null, 0), 0);
    } finally {
      native.close(rx.fd);
    }
  });

  test("out-of-range offsets and lengths throw before any packet is taken", async () => {
    const buffer = sharedBuffer();
    const size = buffer.byteLength;
    const rx = native.udpOpen(4, "127.0.0.1", 0);
    const tx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rx.port });
      const lengths = new Int32Array(4);
      const rangeError = { name: "RangeError", code: "ERR_OUT_OF_RANGE" };
      // Sending: past the end, negative offset, negative length, offset + length overflowing int32.
      for (const [off, len] of [[size - 10, 11], [-1, 10], [0, -1], [0x7fffff00, 0x200]] as const) {
        assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Int32Array([off]), new Int32Array([len]), to, 1), rangeError);
      }
      // A view: offsets are relative to the view, checked against its length.
      const view = new Uint8Array(buffer, 4096, 1024);
      assert.throws(() => native.udpSendBatch(tx.fd, view, new Int32Array([1000]), new Int32Array([25]), to, 1), rangeError);
      // Arrays shorter than the count.
      assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Int32Array(1), new Int32Array(1), to, 2), rangeError);
      assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Int32Array(2), new Int32Array(2), to, 2), rangeError);
      // Wrong types.
      assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Uint32Array(1) as unknown as Int32Array, new Int32Array(1), to, 1), { name: "TypeError" });
      // A bad address family.
      const bad = new Uint8Array(ADDRESS_BYTES);
      bad[0] = 99;
      assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Int32Array(1), new Int32Array([1]), bad, 1), rangeError);

      // One real packet waits; receives with a bad range throw and leave it there.
      fill(new Uint8Array(buffer), 0, 100, 7);
      assert.equal(native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([100]), to, 1), 1);
      await ready(native, rx.fd, "r");
      // The second entry is bad: nothing may be received into the first either.
      assert.throws(() => native.udpRecvBatch(rx.fd, buffer, new Int32Array([8192, size - 100]), 2048, lengths, null, 2), rangeError);
      assert.throws(() => native.udpRecvBatch(rx.fd, buffer, new Int32Array([-64]), 2048, lengths, null, 1), rangeError);
      assert.throws(() => native.udpRecvBatch(rx.fd, buffer, new Int32Array([0]), 0, lengths, null, 1), rangeError);
      assert.throws(() => native.udpRecvBatch(rx.fd, buffer, new Int32Array([0]), 2048, lengths, new Uint8Array(27), 1), rangeError);
      assert.equal(new Uint8Array(buffer)[8192], 0);
      const from = new Uint8Array(ADDRESS_BYTES);
      assert.equal(native.udpRecvBatch(rx.fd, buffer, new Int32Array([8192]), 2048, lengths, from, 1), 1);
      assert.equal(lengths[0], 100);
      assert.equal(decodeAddress(from, 0)?.port, tx.port);

      // A closed descriptor: a system error with its errno name.
      assert.throws(() => native.udpRecvBatch(1 << 20, buffer, new Int32Array([0]), 2048, lengths, null, 1), { code: "EBADF" });
    } finally {
      native.close(rx.fd);
      native.close(tx.fd);
    }
  });

  test("a packet longer than the capacity is reported cut (negative length)", async () => {
    const buffer = sharedBuffer();
    const rx = native.udpOpen(4, "127.0.0.1", 0);
    const tx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rx.port });
      native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([500]), to, 1);
      await ready(native, rx.fd, "r");
      const lengths = new Int32Array(1);
      assert.equal(native.udpRecvBatch(rx.fd, buffer, new Int32Array([4096]), 100, lengths, null, 1), 1);
      assert.ok(lengths[0]! < 0, `length ${lengths[0]} should be negative`);
    } finally {
      native.close(rx.fd);
      native.close(tx.fd);
    }
  });

  test("poll: readiness fires on the event loop, stop() ends it", async () => {
    const buffer = sharedBuffer();
    const rx = native.udpOpen(6, "::1", 0);
    const tx = native.udpOpen(6, "::1", 0);
    try {
      // A UDP socket with room in its send buffer is writable at once.
      assert.equal(await ready(native, tx.fd, "w"), "w");
      const seen: PollEvents[] = [];
      let wake: (() => void) | null = null;
      const handle = native.poll(rx.fd, "r", (events) => {
        seen.push(events);
        wake?.();
      });
      assert.equal(handle.fd, rx.fd);
      await new Promise((resolve) => setTimeout(resolve, 30));
      assert.deepEqual(seen, [], "no readiness before anything was sent");
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 6, address: "::1", port: rx.port });
      const fired = new Promise<void>((resolve) => (wake = resolve));
      native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([64]), to, 1);
      await fired;
      assert.equal(seen[0], "r");
      // Level-triggered: it keeps firing until the socket is drained; drain, then stop.
      const lengths = new Int32Array(1);
      assert.equal(native.udpRecvBatch(rx.fd, buffer, new Int32Array([4096]), 2048, lengths, null, 1), 1);
      handle.stop();
      handle.stop();
      const count = seen.length;
      native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([64]), to, 1);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(seen.length, count, "no callback after stop()");
      // update() switches the events of a live handle; one watcher per fd.
      const again = native.poll(rx.fd, "w", () => {});
      assert.throws(() => native.poll(rx.fd, "r", () => {}), { code: "EEXIST" });
      again.update("r");
      again.stop();
      assert.throws(() => native.poll(rx.fd, "x" as PollEvents, () => {}), { name: "TypeError" });
    } finally {
      native.close(rx.fd);
      native.close(tx.fd);
    }
  });

  test("UDP GSO out, GRO in: one super-packet with its segment size", async (t) => {
    const probe = native.udpOpen(4, "127.0.0.1", 0);
    const caps = native.udpCapabilities(probe.fd);
    native.close(probe.fd);
    if (!caps.gso || !caps.gro) {
      t.skip(`the kernel lacks UDP_SEGMENT or UDP_GRO (gso: ${caps.gso}, gro: ${caps.gro})`);
      return;
    }
    const buffer = sharedBuffer();
    const bytes = new Uint8Array(buffer);
    const plain = native.udpOpen(4, "127.0.0.1", 0);
    const gro = native.udpOpen(4, "127.0.0.1", 0, { gro: true });
    const tx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      assert.equal(gro.groEnabled, true);
      assert.equal(plain.groEnabled, false);
      const seg = 1000;
      const total = 7 * seg + 300; // 8 datagrams, the last one shorter
      fill(bytes, 0, total, 3);
      const to = new Uint8Array(2 * ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: plain.port });
      encodeAddress(to, 1, { family: 4, address: "127.0.0.1", port: gro.port });
      assert.equal(native.udpSendBatch(tx.fd, buffer, new Int32Array([0, 0]), new Int32Array([total, total]), to, 2, { gsoSize: seg }), 2);

      // Without GRO: eight datagrams.
      await ready(native, plain.fd, "r");
      const offsets = Int32Array.from({ length: 8 }, (_, i) => 65536 + i * 2048);
      const lengths = new Int32Array(8);
      const segments = new Int32Array(8);
      let got = 0;
      while (got < 8) {
        const n = native.udpRecvBatch(plain.fd, buffer, offsets.subarray(got), 2048, lengths.subarray(got), null, 8 - got, segments.subarray(got));
        if (n === 0) await ready(native, plain.fd, "r");
        got += n;
      }
      assert.deepEqual([...lengths], [seg, seg, seg, seg, seg, seg, seg, 300]);
      assert.deepEqual([...segments], [0, 0, 0, 0, 0, 0, 0, 0]);
      for (let i = 0; i < 8; i++) {
        assert.ok(Buffer.from(bytes.subarray(offsets[i]!, offsets[i]! + lengths[i]!)).equals(Buffer.from(bytes.subarray(i * seg, i * seg + lengths[i]!))));
      }
      // With GRO: the whole super-packet in one slot, and its segment size.
      await ready(native, gro.fd, "r");
      const big = new Int32Array([131072]);
      assert.equal(native.udpRecvBatch(gro.fd, buffer, big, 65536, lengths, null, 1, segments), 1);
      assert.equal(lengths[0], total);
      assert.equal(segments[0], seg);
      assert.ok(Buffer.from(bytes.subarray(131072, 131072 + total)).equals(Buffer.from(bytes.subarray(0, total))));
    } finally {
      native.close(plain.fd);
      native.close(gro.fd);
      native.close(tx.fd);
    }
  });

  test("udpSendGso: packets gathered from their slots leave as one datagram each", async (t) => {
    const probe = native.udpOpen(4, "127.0.0.1", 0);
    const caps = native.udpCapabilities(probe.fd);
    native.close(probe.fd);
    if (!caps.gso) {
      t.skip("the kernel lacks UDP_SEGMENT");
      return;
    }
    const buffer = sharedBuffer();
    const bytes = new Uint8Array(buffer);
    const rx = native.udpOpen(4, "127.0.0.1", 0);
    const tx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      const seg = 1200;
      const sizes = [seg, seg, seg, seg, 77]; // the last may be shorter
      const offsets = Int32Array.from(sizes, (_, i) => packetAt(i));
      const lengths = Int32Array.from(sizes);
      sizes.forEach((size, i) => fill(bytes, offsets[i]!, size, 40 + i));
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rx.port });
      assert.equal(native.udpSendGso(tx.fd, buffer, offsets, lengths, sizes.length, to, seg), 1);
      const got = new Int32Array(sizes.length);
      await receiveAll(native, rx.fd, buffer, 100, sizes.length, got, new Uint8Array(sizes.length * ADDRESS_BYTES));
      assert.deepEqual([...got], sizes);
      sizes.forEach((size, i) => {
        const sent = bytes.subarray(offsets[i]!, offsets[i]! + size);
        const received = bytes.subarray(packetAt(100 + i), packetAt(100 + i) + size);
        assert.ok(Buffer.from(received).equals(Buffer.from(sent)), `datagram ${i}`);
      });
      // A packet other than the last that is not gsoSize long is refused before sending.
      assert.throws(() => native.udpSendGso(tx.fd, buffer, offsets, Int32Array.from([seg, 10, seg]), 3, to, seg), RangeError);
      assert.throws(() => native.udpSendGso(tx.fd, buffer, offsets, lengths, 0, to, seg), RangeError);
    } finally {
      native.close(rx.fd);
      native.close(tx.fd);
    }
  });

  test("udpConnect: sends without addresses go to the connected peer", async () => {
    const buffer = sharedBuffer();
    const rx = native.udpOpen(6, "::1", 0);
    const tx = native.udpOpen(6, "::1", 0);
    try {
      const peer = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(peer, 0, { family: 6, address: "::1", port: rx.port });
      assert.throws(() => native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([8]), null, 1), { code: "EDESTADDRREQ" });
      native.udpConnect(tx.fd, peer);
      const none = new Uint8Array(2 * ADDRESS_BYTES); // family 0 entries: "no address"
      assert.equal(native.udpSendBatch(tx.fd, buffer, new Int32Array([0, 16]), new Int32Array([8, 9]), none, 2), 2);
      assert.equal(native.udpSendBatch(tx.fd, buffer, new Int32Array([0]), new Int32Array([10]), null, 1), 1);
      await ready(native, rx.fd, "r");
      const lengths = new Int32Array(3);
      const from = new Uint8Array(3 * ADDRESS_BYTES);
      assert.equal(native.udpRecvBatch(rx.fd, buffer, new Int32Array([4096, 8192, 12288]), 2048, lengths, from, 3), 3);
      assert.deepEqual([...lengths], [8, 9, 10]);
      assert.equal(decodeAddress(from, 2)?.port, tx.port);
    } finally {
      native.close(rx.fd);
      native.close(tx.fd);
    }
  });

  test("udpOpen: bound port, capabilities, errors that name the cause", () => {
    const a = native.udpOpen(4, "127.0.0.1", 0, { reuseport: true, recvBufferSize: 1 << 20 });
    try {
      assert.ok(a.recvBufferSize >= 1 << 20, `recvBufferSize ${a.recvBufferSize}`);
      const caps = native.udpCapabilities(a.fd);
      assert.equal(typeof caps.gso, "boolean");
      assert.equal(typeof caps.gro, "boolean");
      // SO_REUSEPORT on both: a second socket on the same port is allowed.
      const b = native.udpOpen(4, "127.0.0.1", a.port, { reuseport: true });
      native.close(b.fd);
      assert.throws(() => native.udpOpen(4, "127.0.0.1", a.port), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, "EADDRINUSE");
        assert.match(error.message, /bind/);
        return true;
      });
      assert.throws(() => native.udpOpen(4, "::1", 0), { name: "TypeError" });
      assert.throws(() => native.udpOpen(5 as 4, "127.0.0.1", 0), { name: "RangeError" });
      assert.throws(() => native.udpOpen(4, "127.0.0.1", 70000), { name: "RangeError" });
    } finally {
      native.close(a.fd);
    }
    assert.throws(() => native.close(a.fd), { code: "EBADF" });
  });

  test("worker threads: each loads the addon, and one that exits mid-poll leaves the process standing", async () => {
    // A worker's teardown unloads the addon; a poll handle still closing then
    // must not call back into unmapped code (this crashed before the async
    // cleanup hook held the teardown until the handle had closed).
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const io = require(workerData.addon);
      const ports = [];
      for (let i = 0; i < 8; i++) {
        const s = io.udpOpen(4, "127.0.0.1", 0);
        ports.push(s.port);
        const h = io.poll(s.fd, i % 2 ? "w" : "r", () => {});
        if (i % 3 === 0) h.stop();
      }
      parentPort.postMessage(ports.length);
      setImmediate(() => EXIT_HERE);
    `;
    for (const exit of ["process.exit(0)", "undefined"]) {
      for (let i = 0; i < 4; i++) {
        const worker = new Worker(code.replace("EXIT_HERE", exit), { eval: true, workerData: { addon: nativeIoAddonPath } });
        const opened = await new Promise<number>((resolve, reject) => {
          worker.once("message", resolve);
          worker.once("error", reject);
        });
        assert.equal(opened, 8);
        if (exit === "undefined") await worker.terminate(); // polls keep it alive: end it from outside
        else await new Promise((resolve) => worker.once("exit", resolve));
      }
    }
  });
});
