// The portable UDP path (node:dgram) must keep the native path's contract, so
// the engine can run on either: the same 28-byte addresses, the same offsets
// into the shared memory, slots reusable as soon as sendBatch returns. And the
// address encoding itself, which both paths share with the kernel.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HEADROOM } from "../../src/engine/layout.js";
import { ADDRESS_BYTES, AF_INET, AF_INET6, clearAddress, decodeAddress, encodeAddress, formatAddress } from "../../src/io/address.js";
import { selectIoPath } from "../../src/io/index.js";
import { loadNativeIo } from "../../src/io/native.js";
import { PortableUdpSocket, type PortableReceiver } from "../../src/io/portable.js";

const SLOT = 2048;

function sharedBuffer(): SharedArrayBuffer {
  const buffer: unknown = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true }).buffer;
  assert.ok(buffer instanceof SharedArrayBuffer);
  return buffer;
}

describe("address encoding", () => {
  test("IPv4 and IPv6 round trips, laid out as Linux sockaddr_in/in6", () => {
    const a = new Uint8Array(4 * ADDRESS_BYTES);
    encodeAddress(a, 0, { family: 4, address: "192.0.2.7", port: 4500 });
    encodeAddress(a, 1, { family: 6, address: "2001:db8::a:0:0:1", port: 500, flowInfo: 0x12345, scopeId: 3 });
    encodeAddress(a, 2, { family: 6, address: "::ffff:198.51.100.1", port: 1 });
    clearAddress(a, 3);
    const dv = new DataView(a.buffer);
    const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    assert.equal(dv.getUint16(0, le), AF_INET);
    assert.equal(dv.getUint16(2, false), 4500);
    assert.deepEqual([...a.subarray(4, 8)], [192, 0, 2, 7]);
    assert.ok(a.subarray(8, 28).every((b) => b === 0));
    assert.equal(dv.getUint16(28, le), AF_INET6);
    assert.equal(dv.getUint32(28 + 4, false), 0x12345);
    assert.deepEqual([...a.subarray(28 + 8, 28 + 10)], [0x20, 0x01]);
    assert.deepEqual(decodeAddress(a, 0), { family: 4, address: "192.0.2.7", port: 4500 });
    assert.deepEqual(decodeAddress(a, 1), { family: 6, address: "2001:db8::a:0:0:1", port: 500, flowInfo: 0x12345, scopeId: 3 });
    assert.equal(decodeAddress(a, 2)?.address, "::ffff:198.51.100.1");
    assert.equal(decodeAddress(a, 3), null);
    assert.equal(formatAddress(decodeAddress(a, 1)!), "[2001:db8::a:0:0:1]:500");
  });

  test("RFC 5952 text, and malformed input refused", () => {
    const a = new Uint8Array(ADDRESS_BYTES);
    const cases: [string, string][] = [
      ["::", "::"], ["::1", "::1"], ["1::", "1::"], ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], ["fe80::1:2", "fe80::1:2"], ["0:0:0:0:0:0:0:0", "::"],
    ];
    for (const [text, canonical] of cases) {
      encodeAddress(a, 0, { family: 6, address: text, port: 0 });
      assert.equal(decodeAddress(a, 0)?.address, canonical, text);
    }
    for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::g", "1.2.3.4"]) {
      assert.throws(() => encodeAddress(a, 0, { family: 6, address: bad, port: 0 }), { name: "TypeError" }, bad);
    }
    for (const bad of ["1.2.3", "256.1.1.1", "01.2.3.4", "::1", "1.2.3.4.5"]) {
      assert.throws(() => encodeAddress(a, 0, { family: 4, address: bad, port: 0 }), { name: "TypeError" }, bad);
    }
    assert.throws(() => encodeAddress(a, 1, { family: 4, address: "1.2.3.4", port: 0 }), { name: "RangeError" });
    assert.throws(() => encodeAddress(a, 0, { family: 4, address: "1.2.3.4", port: 65536 }), { name: "RangeError" });
  });
});

describe("portable UDP path (node:dgram)", () => {
  test("says which path runs and why", () => {
    const path = selectIoPath();
    if (path.path === "native") assert.equal(path.io, loadNativeIo());
    else assert.ok(path.reason.length > 0);
  });

  for (const [family, host] of [[4, "127.0.0.1"], [6, "::1"]] as const) {
    test(`64 packets over ${host}: one per event, copied into slots`, async () => {
      const buffer = sharedBuffer();
      const bytes = new Uint8Array(buffer);
      const got: { offset: number; length: number; from: string }[] = [];
      let nextSlot = 100;
      let done: () => void = () => {};
      const all = new Promise<void>((resolve) => (done = resolve));
      const receiver: PortableReceiver = {
        claim: (length) => (length <= SLOT - HEADROOM && nextSlot < 164 ? nextSlot++ * SLOT + HEADROOM : -1),
        received: (offset, length, address) => {
          const source = decodeAddress(address, 0)!;
          got.push({ offset, length, from: formatAddress(source) });
          if (got.length === 64) done();
        },
      };
      const idle: PortableReceiver = { claim: () => -1, received: () => {} };
      const rx = await PortableUdpSocket.open({ family, address: host, port: 0, buffer, receiver });
      const tx = await PortableUdpSocket.open({ family, address: host, port: 0, buffer, receiver: idle });
      try {
        const sizes = Array.from({ length: 64 }, (_, i) => (i === 0 ? 1420 : 1 + ((i * 151) % 1400)));
        const offsets = Int32Array.from({ length: 64 }, (_, i) => i * SLOT + HEADROOM);
        const lengths = Int32Array.from(sizes);
        const to = new Uint8Array(64 * ADDRESS_BYTES);
        for (let i = 0; i < 64; i++) {
          for (let j = 0; j < sizes[i]!; j++) bytes[offsets[i]! + j] = (i + j * 13) & 0xff;
          encodeAddress(to, i, { family, address: host, port: rx.port });
        }
        assert.equal(tx.sendBatch(buffer, offsets, lengths, to, 64), 64);
        // The slots are free at once: scribbling over them must not change what arrives.
        bytes.fill(0, 0, 64 * SLOT);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([all, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${got.length} of 64 arrived`)), 3000)))]);
        clearTimeout(timer);
        const origin = family === 6 ? `[::1]:${tx.port}` : `127.0.0.1:${tx.port}`;
        for (let i = 0; i < 64; i++) {
          const g = got[i]!;
          assert.equal(g.length, sizes[i]);
          assert.equal(g.from, origin);
          for (let j = 0; j < sizes[i]!; j++) {
            if (bytes[g.offset + j] !== ((i + j * 13) & 0xff)) assert.fail(`byte ${j} of packet ${i}`);
          }
        }
        assert.deepEqual(rx.stats, { received: 64, dropped: 0, sent: 0, sendErrors: 0 });
        assert.throws(() => tx.sendBatch(buffer, new Int32Array([buffer.byteLength - 1]), new Int32Array([2]), to, 1), { name: "RangeError" });
      } finally {
        await rx.close();
        await tx.close();
      }
    });
  }

  test("no free slot: the datagram is dropped and counted", async () => {
    const buffer = sharedBuffer();
    let dropped: () => void = () => {};
    const seen = new Promise<void>((resolve) => (dropped = resolve));
    const rx = await PortableUdpSocket.open({
      family: 4, address: "127.0.0.1", port: 0, buffer,
      receiver: { claim: () => (dropped(), -1), received: () => assert.fail("nothing may be delivered") },
    });
    const tx = await PortableUdpSocket.open({ family: 4, address: "127.0.0.1", port: 0, buffer, receiver: { claim: () => -1, received: () => {} } });
    try {
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rx.port });
      tx.sendBatch(buffer, new Int32Array([0]), new Int32Array([10]), to, 1);
      await seen;
      assert.equal(rx.stats.dropped, 1);
    } finally {
      await rx.close();
      await tx.close();
    }
  });

  test("native and portable paths interoperate", { skip: loadNativeIo() ? false : "native I/O addon unavailable" }, async () => {
    const native = loadNativeIo()!;
    const buffer = sharedBuffer();
    const bytes = new Uint8Array(buffer);
    let arrived: (v: { offset: number; length: number }) => void = () => {};
    const one = new Promise<{ offset: number; length: number }>((resolve) => (arrived = resolve));
    const rx = await PortableUdpSocket.open({
      family: 4, address: "127.0.0.1", port: 0, buffer,
      receiver: { claim: () => 8192, received: (offset, length) => arrived({ offset, length }) },
    });
    const tx = native.udpOpen(4, "127.0.0.1", 0);
    try {
      bytes.set([1, 2, 3, 4, 5], 100);
      const to = new Uint8Array(ADDRESS_BYTES);
      encodeAddress(to, 0, { family: 4, address: "127.0.0.1", port: rx.port });
      assert.equal(native.udpSendBatch(tx.fd, buffer, new Int32Array([100]), new Int32Array([5]), to, 1), 1);
      const got = await one;
      assert.deepEqual([...bytes.subarray(got.offset, got.offset + got.length)], [1, 2, 3, 4, 5]);
    } finally {
      native.close(tx.fd);
      await rx.close();
    }
  });
});
