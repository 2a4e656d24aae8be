// TUN offloads (native/src/tun_offload.c): the TSO segmentation of reads and
// the GRO coalescing of writes (TCP, and UDP runs as UDP_L4 GSO writes),
// checked byte for byte against a slow, plain JavaScript reference of the same
// packets (fixtures/packetReference.ts: RFC 791/793/768/8200 headers, RFC 1071
// checksums), then with a real kernel TCP sender and receiver, and a kernel
// UDP receiver, on a TUN device opened with { offload: true } in a network
// namespace of its own (fixtures/offloadDeviceChild.ts, run there as a child
// process so the test runner's own process never changes namespace).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadNativeIo, nativeIoUnavailableReason, type NativeIo } from "../../src/io/native.js";
import { concat, Rng, SEED } from "../helpers.js";
import { runChildInNamespace, tunDeviceSkip, useNamespace } from "../fixtures/netns.js";
import {
  ACK, CWR, ECE, FIN, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, NEEDS_CSUM, PROTO_TCP, PROTO_UDP,
  PSH, RST, SYN, URG, V4_DST, V4_SRC, V6_DST, V6_SRC, VNET, ZERO_VNET, assertBytes, assertValidPacket, baseSpec,
  buildTcp, buildUdp, ipv4HeaderChecksum, onesSum, packetProblems, parseTcp, parseVnet, pseudoHeaderSum, putPartial,
  referenceSegments, referenceUdpSegments, referenceUdpTake, referenceUdpWrite, resumUdp, superRead, timestamps,
  udpSpec, udpWithZeroSum, vnet,
  type TcpSpec, type UdpSpec, type Vnet,
} from "../fixtures/packetReference.js";
import { UDP_DEVICE_RUNS, type DeviceReport, type UdpDeviceReport } from "../fixtures/offloadDeviceChild.js";

const DEVICE_CHILD = fileURLToPath(new URL("../fixtures/offloadDeviceChild.js", import.meta.url));
const io = loadNativeIo();
const addonSkip: string | false = io ? false : `native I/O addon unavailable: ${nativeIoUnavailableReason}`;

interface Segmented {
  count: number;
  packets: Uint8Array[];
  out: Uint8Array;
  lengths: Int32Array;
}

/* ------------------- offloadSegment and offloadCoalesce as the tests call them */

const SENTINEL = 0xa5;
let sentinels = Buffer.alloc(0);

/** All of b is still the sentinel (a memcmp, not a JS loop: the fuzzers check megabytes). */
function untouched(b: Uint8Array): boolean {
  if (sentinels.length < b.length) sentinels = Buffer.alloc(b.length, SENTINEL);
  return Buffer.compare(Buffer.from(b.buffer, b.byteOffset, b.length), sentinels.subarray(0, b.length)) === 0;
}

/** offloadSegment with `slots` slots of `capacity` bytes (out pre-filled with a sentinel). */
function segment(native: NativeIo, read: Uint8Array, capacity: number, slots: number): Segmented {
  const out = new Uint8Array(slots * capacity).fill(SENTINEL);
  const lengths = new Int32Array(slots).fill(-7);
  const before = read.slice();
  const count = native.offloadSegment(read, out, capacity, lengths);
  assertBytes(read, before, "offloadSegment changed its input");
  const packets: Uint8Array[] = [];
  for (let k = 0; k < count; k++) packets.push(out.slice(k * capacity, k * capacity + lengths[k]!));
  return { count, packets, out, lengths };
}

/* ------------------------------------------- offloadCoalesce, as used */

const SLOT = 2048;

interface Placed {
  buffer: SharedArrayBuffer | ArrayBuffer;
  view: Uint8Array;
  offsets: Int32Array;
  lengths: Int32Array;
}

/** Puts packets at slot offsets (some not 4-byte aligned) in a SharedArrayBuffer or an ArrayBuffer. */
function place(packets: Uint8Array[], shared = true): Placed {
  const size = packets.length * SLOT + 4096;
  const buffer = shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size);
  const view = new Uint8Array(buffer);
  view.fill(0x3c);
  const offsets = Int32Array.from(packets, (_, i) => i * SLOT + 64 + (i % 3));
  const lengths = Int32Array.from(packets, (p) => p.length);
  packets.forEach((p, i) => view.set(p, offsets[i]!));
  return { buffer, view, offsets, lengths };
}

interface Coalesced {
  packets: number;
  output: Uint8Array;
  placed: Placed;
}

/** offloadCoalesce of packets placed in one buffer (out pre-filled with a sentinel, checked untouched past the output). */
function coalesce(packets: Uint8Array[], shared = true): Coalesced {
  const placed = place(packets, shared);
  const out = new Uint8Array(VNET + 65535 + 64).fill(SENTINEL);
  const r = io!.offloadCoalesce(placed.buffer, placed.offsets, placed.lengths, packets.length, out);
  assert.ok(r.length <= out.length);
  assert.ok(untouched(out.subarray(r.length)), "bytes written after the output");
  return { packets: r.packets, output: out.subarray(0, r.length), placed };
}

/**
 * The 65535-byte cap of one write: `count` packets whose last carries `left`
 * payload bytes make a group of exactly 65535 bytes; with one byte more the
 * last is left out. `runOf(last)` makes the packets' specs.
 */
function assertFillsExactly<S>(
  name: string, count: number, left: number, runOf: (last: number) => S[], build: (spec: S) => Uint8Array,
  assertGroupOf: (got: Coalesced, packets: Uint8Array[], specs: S[], take: number, what: string) => void,
): void {
  const exact = runOf(left);
  const exactPackets = exact.map(build);
  const whole = coalesce(exactPackets);
  assertGroupOf(whole, exactPackets, exact, count, `${name}: exactly 65535 bytes`);
  assert.equal(whole.output.length, VNET + 65535);
  const over = runOf(left + 1);
  const overPackets = over.map(build);
  assertGroupOf(coalesce(overPackets), overPackets, over, count - 1, `${name}: 65536 bytes`);
}

/* ================================================================ tests */

const rng = new Rng(SEED);

describe("the JS reference itself", () => {
  test("RFC 1071 and a well-known IPv4 header", () => {
    // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    assert.equal(onesSum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), 0xddf2);
    // An odd length pads with a zero byte after the last one.
    assert.equal(onesSum(Uint8Array.from([0x01, 0x02, 0x03])), 0x0402);
    // The classic example header (checksum b861).
    const h = Uint8Array.from(Buffer.from("45000073000040004011b861c0a80001c0a800c7", "hex"));
    assert.equal(onesSum(h), 0xffff);
    assert.equal(ipv4HeaderChecksum(h), 0xb861);
  });

  test("a Linux SYN and an IPv6 segment: checksums as computed independently (Python)", () => {
    // 10.0.0.1:46372 → 10.0.0.2:80, MSS/SACK/TS/WS options; checksums 0a74 and ba87.
    const syn = Uint8Array.from(Buffer.from(
      "4500003c1c46400040060a740a0000010a000002" +
      "b524005077d2b2a200000000a002faf0ba870000020405b40402080a001b9e800000000001030307", "hex"));
    assert.deepEqual(packetProblems(syn), []);
    const built = buildTcp({
      v6: false, src: [10, 0, 0, 1], dst: [10, 0, 0, 2], sport: 46372, dport: 80, seq: 0x77d2b2a2, ack: 0, flags: SYN,
      window: 64240, options: [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0x1b, 0x9e, 0x80, 0, 0, 0, 0, 1, 3, 3, 7],
      payload: new Uint8Array(0), id: 0x1c46,
    });
    assertBytes(built, syn, "builder vs the SYN");
    for (const bit of [0, 100, 200, 300, 400, 470]) {
      const bad = syn.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      assert.notDeepEqual(packetProblems(bad), [], `bit ${bit} flipped`);
    }
    // 2001:db8::1.50000 → 2001:db8::2.80, SYN|ACK, "hello" (odd length): checksum 4ce5.
    const v6 = buildTcp({
      v6: true, src: [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 1], dst: [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 2],
      sport: 50000, dport: 80, seq: 1, ack: 0, flags: SYN | ACK, window: 0xffff, payload: Buffer.from("hello"),
    });
    assert.equal(new DataView(v6.buffer).getUint16(40 + 16), 0x4ce5);
    assert.deepEqual(packetProblems(v6), []);
  });

  test("IPv6 and UDP packets from the builder verify; a zero UDP sum is sent as 0xffff", () => {
    for (let n = 0; n < 40; n++) {
      const payload = rng.bytes(rng.range(0, 300));
      assertValidPacket(buildTcp(baseSpec(true, payload)), "IPv6 TCP");
      assertValidPacket(buildTcp(baseSpec(false, payload)), "IPv4 TCP");
      assertValidPacket(buildUdp({ v6: n % 2 === 0, src: V4_SRC, dst: V4_DST, sport: 1, dport: 2, payload, ...(n % 2 === 0 ? { src: V6_SRC, dst: V6_DST } : {}) }), "UDP");
    }
    const zero = udpWithZeroSum(false);
    assert.equal(new DataView(zero.buffer).getUint16(26), 0xffff);
    assertValidPacket(zero, "UDP with a zero sum");
  });
});

describe("offloadSegment (TSO of one read)", { skip: addonSkip }, () => {
  const native = io!;

  test("super-packets of many sizes and MSS values cut exactly as the reference", () => {
    let cases = 0;
    for (const v6 of [false, true]) {
      for (const mss of [536, 1001, 1380, 1448]) {
        const spec0 = baseSpec(v6, new Uint8Array(0));
        const headers = (v6 ? 40 : 20) + 20 + spec0.options!.length;
        const max = 65535 - headers;
        const sizes = [1, mss - 1, mss, mss + 1, 2 * mss, 3 * mss + 1, 10 * mss - 1, 10 * mss, 17 * mss + 5, 64000, max];
        for (const size of sizes.filter((n) => n > 0 && n <= max)) {
          const variant = cases++;
          const spec = baseSpec(v6, rng.bytes(size), {
            flags: FIN | PSH | ACK | CWR,
            // Sequence numbers and IPv4 IDs that wrap around within the super-packet, on some.
            seq: variant % 3 === 0 ? 0xffff_ffff - 3 * mss : rng.u32(),
            id: variant % 4 === 1 ? 0xfffe : rng.int(0x10000),
            ttl: 1 + rng.int(255), tos: variant % 5 === 0 ? 0x02 : 0, window: rng.int(0x10000),
          });
          const read = superRead(spec, mss, {
            field: variant % 2 === 0 ? "partial" : "garbage", ipGarbage: variant % 3 === 1, ecn: variant % 7 === 3,
            hdrLen: variant % 4 === 2 ? 128 : undefined,
          });
          const want = referenceSegments(spec, mss);
          const capacity = variant % 2 === 0 ? headers + mss : 9000;
          const got = segment(native, read, capacity, want.length + 1);
          const what = `IPv${v6 ? 6 : 4} mss ${mss} payload ${size}`;
          assert.equal(got.count, want.length, `${what}: segment count`);
          const dvIn = new DataView(read.buffer, VNET);
          for (let i = 0; i < want.length; i++) {
            const p = got.packets[i]!;
            const t = parseTcp(p) ?? assert.fail(`${what}: segment ${i} is not TCP`);
            const last = i === want.length - 1;
            assert.ok(p.length <= capacity && p.length <= headers + mss, `${what}: segment ${i} of ${p.length} bytes`);
            assert.equal(t.seq, (spec.seq + i * mss) >>> 0, `${what}: seq of segment ${i}`);
            assert.equal(t.flags & FIN, last ? FIN : 0, `${what}: FIN on segment ${i}`);
            assert.equal(t.flags & PSH, last ? PSH : 0, `${what}: PSH on segment ${i}`);
            assert.equal(t.flags & CWR, i === 0 ? CWR : 0, `${what}: CWR on segment ${i}`);
            assert.equal(t.flags & ACK, ACK, `${what}: ACK on segment ${i}`);
            if (!v6) assert.equal(new DataView(p.buffer, p.byteOffset).getUint16(4), (dvIn.getUint16(4) + i) & 0xffff, `${what}: IPv4 ID of segment ${i}`);
            assertValidPacket(p, `${what}: segment ${i}`);
            assertBytes(p, want[i]!, `${what}: segment ${i}`);
          }
          assertBytes(concat(...got.packets.map((p) => p.subarray(headers))), spec.payload, `${what}: the payloads joined`);
        }
      }
    }
    assert.ok(cases > 80, `${cases} cases`);
  });

  test("IPv4 options and 40 bytes of TCP options are carried into every segment", () => {
    const options = [...timestamps(7, 8), 1, 1, 1, 1, 1, 1, 1, 1, 4, 2, 1, 1, ...new Array(16).fill(1)]; // 40 bytes
    assert.equal(options.length, 40);
    const spec = baseSpec(false, rng.bytes(5000), { options, ipOptions: [0x94, 0x04, 0x00, 0x00], flags: ACK | PSH }); // Router Alert
    const read = superRead(spec, 1000);
    const want = referenceSegments(spec, 1000);
    const got = segment(native, read, 1500, want.length + 1);
    assert.equal(got.count, 5);
    for (let i = 0; i < 5; i++) {
      assertValidPacket(got.packets[i]!, `segment ${i}`);
      assertBytes(got.packets[i]!, want[i]!, `segment ${i}`);
    }
  });

  test("IPv6 behind hop-by-hop options: TCP found past the header chain, every segment right", () => {
    for (const mss of [536, 1380]) {
      const spec = baseSpec(true, rng.bytes(9000), { hopByHop: true, flags: ACK | PSH });
      const want = referenceSegments(spec, mss);
      const got = segment(native, superRead(spec, mss), 1500, want.length + 1);
      assert.equal(got.count, want.length, `MSS ${mss}`);
      for (let i = 0; i < want.length; i++) {
        assertValidPacket(got.packets[i]!, `MSS ${mss} segment ${i}`);
        assertBytes(got.packets[i]!, want[i]!, `MSS ${mss} segment ${i}`);
      }
    }
  });

  test("headers too long for the stack copy (IPv6 behind 512 bytes of hop-by-hop options) are fixed in place, every segment right", () => {
    // tso_next builds headers of up to 256 bytes on the stack, longer ones in the output slot itself.
    const spec = baseSpec(true, rng.bytes(5000), { hopByHop: 512, flags: ACK | PSH });
    const want = referenceSegments(spec, 1000);
    const got = segment(native, superRead(spec, 1000), 2048, want.length + 1);
    assert.equal(got.count, want.length);
    for (let i = 0; i < want.length; i++) {
      assertValidPacket(got.packets[i]!, `segment ${i}`);
      assertBytes(got.packets[i]!, want[i]!, `segment ${i}`);
    }
  });

  test("a forwarded GRO packet (DATA_VALID, csum_start 0) is cut by its IP header, v4 and v6", () => {
    for (const v6 of [false, true]) {
      const spec = baseSpec(v6, rng.bytes(7000), { flags: ACK });
      const read = superRead(spec, 1448);
      // What tun_put_user writes for a CHECKSUM_UNNECESSARY skb: flags DATA_VALID (2), no csum_start/offset.
      const forwarded = concat(vnet({ ...parseVnet(read), flags: 2, csumStart: 0, csumOffset: 0 }), read.subarray(VNET));
      const want = referenceSegments(spec, 1448);
      const got = segment(native, forwarded, 1600, want.length + 1); // IPv6: 72 bytes of headers + 1448
      assert.equal(got.count, want.length, `IPv${v6 ? 6 : 4}`);
      for (let i = 0; i < want.length; i++) assertBytes(got.packets[i]!, want[i]!, `IPv${v6 ? 6 : 4} segment ${i}`);
    }
  });

  test("out of exactly count × capacity bytes, and count lengths, is room enough", () => {
    // The TSDoc: segment k lands at out[k * capacity, +lengths[k]); -1 only
    // when malformed or a segment exceeds capacity.
    const spec = baseSpec(false, rng.bytes(3 * 1448), { flags: ACK });
    const read = superRead(spec, 1448);
    const out = new Uint8Array(3 * 1500);
    const lengths = new Int32Array(3);
    assert.equal(native.offloadSegment(read, out, 1500, lengths), 3, "3 segments into 3 slots");
    assert.deepEqual([...lengths], [1500, 1500, 1500]);
    const plain = concat(vnet(ZERO_VNET), buildTcp(baseSpec(true, rng.bytes(100))));
    assert.equal(native.offloadSegment(plain, new Uint8Array(2048), 2048, new Int32Array(1)), 1, "1 plain packet into 1 slot");
  });

  test("too few slots (out or lengths) gives -1, never a write past them", () => {
    const spec = baseSpec(true, rng.bytes(10 * 1000));
    const read = superRead(spec, 1000);
    const capacity = 1100;
    for (const [outSlots, lengthSlots] of [[5, 20], [20, 5], [0, 0]] as const) {
      const backing = new Uint8Array((outSlots + 4) * capacity).fill(SENTINEL);
      const out = backing.subarray(0, outSlots * capacity);
      const lengths = new Int32Array(lengthSlots);
      assert.equal(native.offloadSegment(read, out, capacity, lengths), -1, `${outSlots} out slots, ${lengthSlots} lengths`);
      assert.ok(untouched(backing.subarray(outSlots * capacity)), "bytes after out untouched");
    }
  });

  test("a non-GSO packet with NEEDS_CSUM gets its TCP checksum completed", () => {
    for (let n = 0; n < 60; n++) {
      const v6 = n % 2 === 1;
      const size = n === 0 ? 0 : n === 1 ? 1 : rng.range(0, 1400);
      const spec = baseSpec(v6, rng.bytes(size), { flags: n % 3 === 0 ? SYN : ACK | PSH, options: n % 4 === 0 ? [] : timestamps(n, n * 3) });
      const want = buildTcp(spec);
      const partial = want.slice();
      putPartial(partial, PROTO_TCP);
      const l4 = v6 ? 40 : 20;
      const read = concat(vnet({ flags: NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: l4, csumOffset: 16 }), partial);
      const got = segment(native, read, 1500, 2);
      assert.equal(got.count, 1, `packet ${n}`);
      assertValidPacket(got.packets[0]!, `packet ${n}`);
      // The reference's own checksum, except that a computed 0 is stored as 0xffff (both are right for TCP).
      if (want[l4 + 16] === 0 && want[l4 + 17] === 0) want.set([0xff, 0xff], l4 + 16);
      assertBytes(got.packets[0]!, want, `packet ${n}`);
    }
  });

  test("a non-GSO UDP packet with NEEDS_CSUM: completed, and a computed 0 becomes 0xffff", () => {
    for (let n = 0; n < 40; n++) {
      const v6 = n % 2 === 1;
      const want = n < 2 ? udpWithZeroSum(v6) : buildUdp({ v6, src: v6 ? V6_SRC : V4_SRC, dst: v6 ? V6_DST : V4_DST, sport: 500 + n, dport: 4500, payload: rng.bytes(rng.range(0, 1400)) });
      const l4 = v6 ? 40 : 20;
      const partial = want.slice();
      putPartial(partial, PROTO_UDP);
      const read = concat(vnet({ flags: NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: l4, csumOffset: 6 }), partial);
      const got = segment(native, read, 1500, 2);
      assert.equal(got.count, 1);
      assertValidPacket(got.packets[0]!, `UDP packet ${n}`);
      assertBytes(got.packets[0]!, want, `UDP packet ${n}`);
      if (n < 2) assert.equal(new DataView(got.packets[0]!.buffer, got.packets[0]!.byteOffset).getUint16(l4 + 6), 0xffff, "a zero UDP checksum is sent as 0xffff");
    }
  });

  test("a non-GSO read without NEEDS_CSUM passes through byte for byte", () => {
    const badSum = buildTcp(baseSpec(false, rng.bytes(300)));
    badSum[37]! ^= 0x5a; // a wrong TCP checksum stays wrong: nothing is recomputed
    const inputs = [badSum, buildTcp(baseSpec(true, rng.bytes(1))), rng.bytes(1500), rng.bytes(1), Uint8Array.from([0x45])];
    for (const [i, packet] of inputs.entries()) {
      for (const gsoType of [GSO_NONE, GSO_ECN]) {
        const got = segment(native, concat(vnet({ ...ZERO_VNET, gsoType, csumStart: 20, csumOffset: 16, gsoSize: 100 }), packet), 1500, 2);
        assert.equal(got.count, 1, `input ${i}`);
        assertBytes(got.packets[0]!, packet, `input ${i}`);
      }
    }
    // A plain packet larger than capacity does not fit.
    assert.equal(segment(native, concat(vnet(ZERO_VNET), rng.bytes(1501)), 1500, 4).count, -1);
  });

  test("malformed reads give -1", () => {
    const v4 = baseSpec(false, rng.bytes(4000));
    const v6 = baseSpec(true, rng.bytes(4000));
    const good4 = superRead(v4, 1000);
    const good6 = superRead(v6, 1000);
    assert.equal(segment(native, good4, 1500, 8).count, 4, "the unbroken IPv4 read");
    assert.equal(segment(native, good6, 1500, 8).count, 4, "the unbroken IPv6 read");
    const withHeader = (read: Uint8Array, change: Partial<Vnet>): Uint8Array => concat(vnet({ ...parseVnet(read), ...change }), read.subarray(VNET));
    const withByte = (read: Uint8Array, at: number, value: number): Uint8Array => {
      const copy = read.slice();
      copy[VNET + at] = value;
      return copy;
    };
    const plainCsum = concat(vnet({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 }), buildTcp(baseSpec(false, rng.bytes(50))));
    const plainLength = plainCsum.length - VNET;
    const cases: [string, Uint8Array, number?][] = [
      ...Array.from({ length: VNET }, (_, n): [string, Uint8Array] => [`a read of ${n} bytes`, good4.subarray(0, n)]),
      ["NEEDS_CSUM with csum_start at the end", withHeader(plainCsum, { csumStart: plainLength })],
      ["NEEDS_CSUM with csum_start beyond the packet", withHeader(plainCsum, { csumStart: 60000 })],
      ["NEEDS_CSUM with the field beyond the packet", withHeader(plainCsum, { csumOffset: plainLength - 20 - 1 })],
      ["NEEDS_CSUM with csum_offset 0xffff", withHeader(plainCsum, { csumOffset: 0xffff })],
      ["GSO with csum_start beyond the packet", withHeader(good4, { csumStart: 60000 })],
      ["GSO TCPV4 with csum_start not the IPv4 header length", withHeader(good4, { csumStart: 24 })],
      ["GSO TCPV4 on an IPv6 packet", withHeader(good6, { gsoType: GSO_TCPV4, csumStart: 20 })],
      ["GSO TCPV4 on an IPv6 packet (csum_start 40)", withHeader(good6, { gsoType: GSO_TCPV4 })],
      ["GSO TCPV6 on an IPv4 packet", withHeader(good4, { gsoType: GSO_TCPV6 })],
      ["GSO TCPV6 on an IPv4 packet (csum_start 40)", withHeader(good4, { gsoType: GSO_TCPV6, csumStart: 40 })],
      ["gso_size 0 (IPv4)", withHeader(good4, { gsoSize: 0 })],
      ["gso_size 0 (IPv6)", withHeader(good6, { gsoSize: 0 })],
      ...[0, 1, 4].map((doff): [string, Uint8Array] => [`TCP data offset ${doff}`, withByte(good4, 20 + 12, doff << 4)]),
      ["TCP header (32 bytes) longer than the packet", superRead(baseSpec(false, rng.bytes(100)), 1000).subarray(0, VNET + 20 + 28)],
      ["TCP header (60 bytes) longer than the packet", withByte(superRead(baseSpec(false, rng.bytes(10), { options: [] }), 1000), 20 + 12, 15 << 4)],
      ["a GSO read with no payload", superRead(baseSpec(false, new Uint8Array(0)), 1000)],
      ["a GSO read shorter than a TCP header", good4.subarray(0, VNET + 20 + 10)],
      ["a GSO read shorter than an IPv4 header", good4.subarray(0, VNET + 12)],
      ["a GSO read shorter than an IPv6 header", good6.subarray(0, VNET + 30)],
      ["GSO TCPV4 of a UDP packet", withByte(good4, 9, PROTO_UDP)],
      ["GSO TCPV6 of a non-TCP next header", withByte(good6, 6, PROTO_UDP)],
      // A routing header (43 in place of the hop-by-hop header's 0) would change the pseudo-header's destination.
      ["GSO TCPV6 behind a routing header", withByte(superRead(baseSpec(true, rng.bytes(3000), { hopByHop: true }), 1000), 6, 43)],
      ["GSO TCPV6 with NEEDS_CSUM and csum_start not past its extension header", withHeader(superRead(baseSpec(true, rng.bytes(3000), { hopByHop: true }), 1000), { csumStart: 40 })],
      ["GSO TCPV4 of version 5", withByte(good4, 0, 0x55)],
      ["GSO UDP (3)", withHeader(good4, { gsoType: GSO_UDP })],
      ["GSO UDP_L4 (5)", withHeader(good4, { gsoType: GSO_UDP_L4 })],
      ["GSO UDP | ECN", withHeader(good4, { gsoType: GSO_UDP | GSO_ECN })],
      ["an unknown GSO type (2)", withHeader(good4, { gsoType: 2 })],
      ["an unknown GSO type (0x7f)", withHeader(good6, { gsoType: 0x7f })],
      ["a segment larger than capacity (IPv4)", good4, 52 + 1000 - 1],
      ["a segment larger than capacity (IPv6)", good6, 72 + 1000 - 1],
      ["a tiny capacity", good4, 1],
    ];
    for (const [what, read, capacity] of cases) {
      const got = segment(native, read, capacity ?? 1500, 8);
      assert.equal(got.count, -1, what);
    }
  });

  test("2000 random mutations of valid reads: -1 or segments that fit, never a crash", () => {
    const bases = [
      superRead(baseSpec(false, rng.bytes(20000), { flags: ACK | PSH | FIN | CWR }), 1448),
      superRead(baseSpec(true, rng.bytes(9000)), 1001, { ecn: true }),
      superRead(baseSpec(false, rng.bytes(3000), { options: [] }), 536, { field: "garbage" }),
      superRead(baseSpec(false, rng.bytes(2000), { ipOptions: [1, 1, 1, 0] }), 700),
      concat(vnet({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 }), buildTcp(baseSpec(false, rng.bytes(900)))),
      concat(vnet({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 40, csumOffset: 6 }), buildUdp({ v6: true, src: V6_SRC, dst: V6_DST, sport: 1, dport: 2, payload: rng.bytes(300) })),
      concat(vnet(ZERO_VNET), buildTcp(baseSpec(true, rng.bytes(200)))),
    ];
    const capacities = [1, 20, 60, 576, 1280, 1500, 2048, 9000, 65535];
    const outcomes = { refused: 0, segmented: 0, gsoSegmented: 0 };
    for (let n = 0; n < 2000; n++) {
      const base = bases[rng.int(bases.length)]!;
      let read: Uint8Array = base.slice();
      const kind = rng.int(4);
      if (kind !== 1) {
        // Flip 1 to 4 bytes, mostly within the headers.
        for (let k = rng.range(1, 4); k > 0; k--) {
          const at = rng.int(3) === 0 ? rng.int(read.length) : rng.int(Math.min(read.length, VNET + 100));
          read[at] = rng.int(3) === 0 ? read[at]! ^ (1 << rng.int(8)) : rng.int(256);
        }
      }
      if (kind >= 1) read = kind === 3 ? concat(read, rng.bytes(rng.range(1, 100))) : read.subarray(0, rng.int(read.length + 1));
      const capacity = capacities[rng.int(capacities.length)]!;
      const slots = Math.min(128, Math.floor(1_000_000 / capacity));
      const what = `mutation ${n} (seed ${SEED})`;
      const got = segment(native, read, capacity, slots);
      if (got.count === -1) {
        outcomes.refused++;
        continue;
      }
      assert.ok(got.count >= 0 && got.count <= slots, `${what}: count ${got.count}`);
      outcomes.segmented++;
      const gso = read.length >= VNET && (read[1]! & ~GSO_ECN) !== GSO_NONE;
      if (gso && got.count > 0) outcomes.gsoSegmented++;
      for (let k = 0; k < got.count; k++) {
        const length = got.lengths[k]!;
        assert.ok(length > 0 && length <= capacity, `${what}: segment ${k} of ${length} bytes, capacity ${capacity}`);
        assert.ok(untouched(got.out.subarray(k * capacity + length, (k + 1) * capacity)), `${what}: bytes written after segment ${k}`);
        // Whatever a GSO read yields is an IP packet with both checksums right.
        if (gso) assertValidPacket(got.packets[k]!, `${what}: segment ${k}`);
      }
      assert.ok(untouched(got.out.subarray(got.count * capacity)), `${what}: bytes written after the last segment`);
    }
    // The mutations must exercise both outcomes, or the check says little.
    assert.ok(outcomes.refused > 100 && outcomes.gsoSegmented > 100, JSON.stringify(outcomes));
  });
});

describe("offloadCoalesce (GRO of one write)", { skip: addonSkip }, () => {
  const native = io!;

  /** A run of segments of one flow: consecutive seq and IPv4 IDs, equal payloads with a shorter last one. */
  function run(v6: boolean, count: number, mss: number, last = Math.max(1, mss >> 1), more: Partial<TcpSpec> = {}): TcpSpec[] {
    const seq0 = more.seq ?? rng.u32();
    const id0 = more.id ?? rng.int(0x10000);
    let seq = seq0;
    return Array.from({ length: count }, (_, i) => {
      const payload = rng.bytes(i === count - 1 ? last : mss);
      const spec = baseSpec(v6, payload, { ...more, seq, id: (id0 + i) & 0xffff });
      seq = (seq + payload.length) >>> 0;
      return spec;
    });
  }

  /** The write GRO must make of specs (all of one group): the reference super-packet with the kernel's partial checksum. */
  function expectedGroup(specs: TcpSpec[]): Uint8Array {
    const first = specs[0]!;
    const psh = specs.some((s) => s.flags & PSH) ? PSH : 0;
    const packet = buildTcp({ ...first, flags: first.flags | psh, payload: concat(...specs.map((s) => s.payload)) });
    putPartial(packet, PROTO_TCP);
    const t = parseTcp(packet)!;
    return concat(vnet({
      flags: NEEDS_CSUM, gsoType: first.v6 ? GSO_TCPV6 : GSO_TCPV4, hdrLen: t.headers,
      gsoSize: first.payload.length, csumStart: t.l4, csumOffset: 16,
    }), packet);
  }

  /** Checks that the write took the first `take` packets as one group (or wrote packet 0 alone when take is 1). */
  function assertGroup(got: Coalesced, packets: Uint8Array[], specs: TcpSpec[], take: number, what: string): void {
    assert.equal(got.packets, take, `${what}: packets taken`);
    const { view, offsets } = got.placed;
    if (take === 1) {
      assertBytes(got.output, concat(vnet(ZERO_VNET), packets[0]!), `${what}: a lone packet, with a zero header`);
      assertBytes(view.subarray(offsets[0]!, offsets[0]! + packets[0]!.length), packets[0]!, `${what}: a lone packet is left as it is`);
    } else {
      const want = expectedGroup(specs.slice(0, take));
      assertBytes(got.output, want, `${what}: the super-packet`);
      const h = parseVnet(got.output);
      assert.deepEqual(h, parseVnet(want), `${what}: virtio header`);
      // The first packet's headers are rewritten in place (as documented); the payloads are not.
      const headers = h.hdrLen;
      assertBytes(view.subarray(offsets[0]!, offsets[0]! + headers), want.subarray(VNET, VNET + headers), `${what}: headers rewritten in place`);
    }
    for (let i = 1; i < packets.length; i++) {
      assertBytes(view.subarray(offsets[i]!, offsets[i]! + packets[i]!.length), packets[i]!, `${what}: packet ${i} untouched`);
    }
  }

  test("runs of IPv4 and IPv6 segments coalesce into the reference super-packet", () => {
    let n = 0;
    for (const v6 of [false, true]) {
      for (const mss of [536, 1001, 1380, 1428]) {
        for (const count of [2, 3, 17, 40]) {
          const specs = run(v6, count, mss, n % 3 === 0 ? mss : rng.range(1, mss - 1));
          if (n % 4 === 1) specs[count - 1]!.flags |= PSH;
          const packets = specs.map(buildTcp);
          const got = coalesce(packets, n % 2 === 0);
          assertGroup(got, packets, specs, count, `IPv${v6 ? 6 : 4} mss ${mss} × ${count}`);
          const dv = new DataView(got.output.buffer, got.output.byteOffset + VNET);
          const total = got.output.length - VNET;
          if (v6) assert.equal(dv.getUint16(4), total - 40);
          else {
            assert.equal(dv.getUint16(2), total);
            assert.equal(onesSum(got.output, VNET, VNET + 20), 0xffff, "IPv4 header checksum");
          }
          // The TCP field holds the pseudo-header sum for the whole length, so
          // completing the checksum as a NIC would gives a valid packet.
          const completed = got.output.slice(VNET);
          const l4 = v6 ? 40 : 20;
          new DataView(completed.buffer).setUint16(l4 + 16, ~onesSum(completed, l4) & 0xffff);
          assertValidPacket(completed, "the super-packet completed");
          n++;
        }
      }
    }
  });

  test("round trip: the coalesced write segmented again gives the packets back byte for byte", () => {
    const cases: [boolean, number, number][] = [[false, 1448, 1500], [false, 1001, 1500], [false, 524, 576], [true, 1428, 1500], [true, 1001, 1500], [true, 536, 1280]];
    for (const [v6, mss, mtu] of cases) {
      for (const count of [2, 5, 44]) {
        const specs = run(v6, count, mss, rng.range(1, mss), { flags: ACK, id: count === 5 ? 0xfffd : undefined, seq: count === 5 ? 0xffff_f000 : undefined });
        specs[count - 1]!.flags |= PSH;
        const packets = specs.map(buildTcp);
        const got = coalesce(packets);
        const what = `IPv${v6 ? 6 : 4} mss ${mss} × ${count}`;
        assert.equal(got.packets, count, what);
        const again = segment(native, got.output, mtu, count + 1);
        assert.equal(again.count, count, `${what}: segments`);
        for (let i = 0; i < count; i++) assertBytes(again.packets[i]!, packets[i]!, `${what}: packet ${i}`);
      }
    }
  });

  test("what stops a group: the breaker is left for the next write", () => {
    const AT = 3;
    type Change = (s: TcpSpec) => void;
    const breakers: [string, Change][] = [
      ["a seq gap", (s) => { s.seq = (s.seq + 1) >>> 0; }],
      ["a seq overlap", (s) => { s.seq = (s.seq - 1) >>> 0; }],
      ["a different ACK", (s) => { s.ack = (s.ack + 1448) >>> 0; }],
      ["a different window", (s) => { s.window += 1; }],
      ["a different urgent pointer", (s) => { s.urgent = 1; }],
      ["a changed timestamp", (s) => { s.options = timestamps(0x01020305, 0x0a0b0c0d); }],
      ["a changed echo reply", (s) => { s.options = timestamps(0x01020304, 0x0a0b0c0e); }],
      ["no options", (s) => { s.options = []; }],
      ["other options of the same length", (s) => { s.options = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]; }],
      ["a different TTL", (s) => { s.ttl = 63; }],
      ["a different TOS", (s) => { s.tos = 0x10; }],
      ["an ECN mark (CE)", (s) => { s.tos = 0x03; }],
      ["DF cleared", (s) => { s.frag = 0; }],
      ["a different source port", (s) => { s.sport += 1; }],
      ["a different destination port", (s) => { s.dport += 1; }],
      ["a different source address", (s) => { s.src = [...s.src.slice(0, -1), s.src.at(-1)! ^ 1]; }],
      ["a different destination address", (s) => { s.dst = [...s.dst.slice(0, -1), s.dst.at(-1)! ^ 1]; }],
      ["SYN", (s) => { s.flags |= SYN; }],
      ["FIN", (s) => { s.flags |= FIN; }],
      ["RST", (s) => { s.flags |= RST; }],
      ["URG", (s) => { s.flags |= URG; }],
      ["ECE", (s) => { s.flags |= ECE; }],
      ["CWR", (s) => { s.flags |= CWR; }],
      ["no ACK", (s) => { s.flags = PSH; }],
      ["a longer payload", (s) => { s.payload = rng.bytes(1449); }],
      ["no payload", (s) => { s.payload = new Uint8Array(0); }],
    ];
    const v6Breakers: [string, Change][] = [
      ["a different hop limit", (s) => { s.ttl = 1; }],
      ["a different traffic class", (s) => { s.tos = 0x20; }],
      ["a different flow label", (s) => { s.flowLabel = 0x1; }],
      ["a hop-by-hop header", (s) => { s.hopByHop = true; }],
    ];
    for (const v6 of [false, true]) {
      for (const [what, change] of [...breakers, ...(v6 ? v6Breakers : [])]) {
        if (v6 && what === "DF cleared") continue;
        const specs = run(v6, 7, 1448, 1448);
        // The packets after the breaker continue the flow, so only the breaker stops the group.
        change(specs[AT]!);
        const packets = specs.map(buildTcp);
        assertGroup(coalesce(packets), packets, specs, AT, `IPv${v6 ? 6 : 4}, ${what} at ${AT}`);
      }
    }
  });

  test("what stops a group, at the packet level: checksum, lengths, versions", () => {
    for (const v6 of [false, true]) {
      const cases: [string, (packets: Uint8Array[]) => Uint8Array[], number][] = [
        ["a bad TCP checksum", (ps) => { ps[2]![(v6 ? 40 : 20) + 16]! ^= 0x01; return ps; }, 2],
        ["a bad TCP checksum in the payload's place", (ps) => { ps[2]![ps[2]!.length - 1]! ^= 0x80; return ps; }, 2],
        ["an IP length longer than the packet", (ps) => { ps[2] = ps[2]!.subarray(0, ps[2]!.length - 1); return ps; }, 2],
        ["an IP length shorter than the packet", (ps) => { ps[2] = concat(ps[2]!, new Uint8Array(2)); return ps; }, 2],
        ["the other IP version", (ps) => { ps[2] = buildTcp(baseSpec(!v6, rng.bytes(1448))); return ps; }, 2],
        ["not IP at all", (ps) => { ps[2] = rng.bytes(1500); return ps; }, 2],
        ["a 40-byte packet", (ps) => { ps[2] = ps[2]!.subarray(0, 40); return ps; }, 2],
      ];
      if (!v6) {
        // The kernel's GRO refuses it (inet_gro_receive checks the header
        // sum); this code does not look (the super-packet gets a new one).
        // Either is tolerated here: only the payload of a member is used.
        cases.push(["a bad IPv4 header checksum", (ps) => { ps[2]![10]! ^= 0xff; return ps; }, -1]);
      }
      for (const [what, change, take] of cases) {
        const specs = run(v6, 5, 1448, 1448);
        const packets = change(specs.map(buildTcp));
        const got = coalesce(packets);
        if (take === -1) {
          // Either way is tolerable, as long as what is written is right.
          assert.ok(got.packets === 2 || got.packets === 5, `IPv${v6 ? 6 : 4}, ${what}: ${got.packets}`);
          continue;
        }
        assertGroup(got, packets, specs, take, `IPv${v6 ? 6 : 4}, ${what}`);
      }
    }
  });

  test("PSH ends a group and is in it; so is a shorter payload", () => {
    for (const v6 of [false, true]) {
      const specs = run(v6, 8, 1448, 1448, { flags: ACK });
      specs[4]!.flags |= PSH;
      const packets = specs.map(buildTcp);
      const got = coalesce(packets);
      assertGroup(got, packets, specs, 5, `IPv${v6 ? 6 : 4}, PSH at 4`);
      assert.equal(parseTcp(got.output.subarray(VNET))!.flags, ACK | PSH, "the super-packet has PSH");

      const short = run(v6, 8, 1448, 1448);
      short[2]!.payload = short[2]!.payload.subarray(0, 1000);
      for (let i = 3; i < 8; i++) short[i]!.seq = (short[i]!.seq - 448) >>> 0; // the flow goes on after the short one
      const shortPackets = short.map(buildTcp);
      assertGroup(coalesce(shortPackets), shortPackets, short, 3, `IPv${v6 ? 6 : 4}, a shorter payload at 2`);

      // PSH on the first packet: a group of one, written alone.
      const first = run(v6, 4, 1448, 1448, { flags: ACK | PSH });
      const firstPackets = first.map(buildTcp);
      assertGroup(coalesce(firstPackets), firstPackets, first, 1, `IPv${v6 ? 6 : 4}, PSH on the first`);
    }
  });

  test("what cannot start a group: the first packet is written alone, unchanged", () => {
    type Change = (s: TcpSpec) => void;
    const starters: [string, boolean | "both", Change][] = [
      ["SYN", "both", (s) => { s.flags = SYN | ACK; }],
      ["FIN", "both", (s) => { s.flags |= FIN; }],
      ["RST", "both", (s) => { s.flags |= RST; }],
      ["URG", "both", (s) => { s.flags |= URG; s.urgent = 10; }],
      ["ECE", "both", (s) => { s.flags |= ECE; }],
      ["CWR", "both", (s) => { s.flags |= CWR; }],
      ["no ACK", "both", (s) => { s.flags = 0; }],
      ["a pure ACK", "both", (s) => { s.payload = new Uint8Array(0); }],
      ["IPv4 options", false, (s) => { s.ipOptions = [0x94, 4, 0, 0]; }],
      ["IPv4 MF (a first fragment)", false, (s) => { s.frag = 0x2000; }],
      ["IPv4 fragment offset", false, (s) => { s.frag = 0x0010; }],
      ["IPv6 hop-by-hop header", true, (s) => { s.hopByHop = true; }],
    ];
    for (const v6 of [false, true]) {
      for (const [what, family, change] of starters) {
        if (family !== "both" && family !== v6) continue;
        const specs = run(v6, 4, 1448, 1448);
        for (const s of specs) change(s); // even when they all match each other
        const packets = specs.map(buildTcp);
        assertGroup(coalesce(packets), packets, specs, 1, `IPv${v6 ? 6 : 4}, ${what}`);
      }
      // A bad checksum on the first one.
      const specs = run(v6, 4, 1448, 1448);
      const packets = specs.map(buildTcp);
      packets[0]![(v6 ? 40 : 20) + 17]! ^= 0x40;
      assertGroup(coalesce(packets), packets, specs, 1, `IPv${v6 ? 6 : 4}, a bad checksum on the first`);
      // A single packet.
      const one = run(v6, 1, 1448);
      const onePacket = one.map(buildTcp);
      assertGroup(coalesce(onePacket), onePacket, one, 1, `IPv${v6 ? 6 : 4}, one packet`);
    }
    // Not IP, and short.
    for (const p of [rng.bytes(100), rng.bytes(39), Uint8Array.from([0x45])]) {
      const got = coalesce([p, p]);
      assert.equal(got.packets, 1);
      assertBytes(got.output, concat(vnet(ZERO_VNET), p), "not IP");
    }
  });

  test("a group holds at most 64 segments and 65535 bytes", () => {
    for (const v6 of [false, true]) {
      const name = `IPv${v6 ? 6 : 4}`;
      const many = run(v6, 70, 100, 100);
      const manyPackets = many.map(buildTcp);
      assertGroup(coalesce(manyPackets), manyPackets, many, 64, `${name}: 70 segments`);

      // 50 × 1448: the headers (52 or 72) and 45 payloads fit in 65535 bytes, 46 do not.
      const big = run(v6, 50, 1448, 1448);
      const bigPackets = big.map(buildTcp);
      const got = coalesce(bigPackets);
      assertGroup(got, bigPackets, big, 45, `${name}: 50 × 1448`);

      // Exactly 65535 bytes: 43 × 1489 and a last one of the bytes left; one byte more does not fit.
      const headers = v6 ? 72 : 52;
      assertFillsExactly(name, 44, 65535 - headers - 43 * 1489, (last) => run(v6, 44, 1489, last), buildTcp, assertGroup);
    }
  });

  test("after a group, the next write starts at the breaker and coalesces the rest", () => {
    // What tunWriteBatch does: coalesce from 0, then from where that stopped.
    const specs = run(false, 12, 1448, 1448);
    specs[5]!.ack = (specs[5]!.ack + 1) >>> 0;
    for (let i = 6; i < 12; i++) specs[i]!.ack = specs[5]!.ack;
    const packets = specs.map(buildTcp);
    const first = coalesce(packets);
    assertGroup(first, packets, specs, 5, "first write");
    const rest = coalesce(packets.slice(5));
    assertGroup(rest, packets.slice(5), specs.slice(5), 7, "second write");
  });

  test("1000 random mutations of runs: never a crash, and what is coalesced segments back to the same payloads", () => {
    let grouped = 0;
    for (let n = 0; n < 1000; n++) {
      const v6 = rng.int(2) === 1;
      const mss = rng.range(1, 1448);
      const specs = run(v6, rng.range(1, 12), mss, rng.range(1, mss));
      const packets = specs.map(buildTcp);
      for (let k = rng.range(0, 3); k > 0; k--) {
        const p = packets[rng.int(packets.length)]!;
        const at = rng.int(Math.min(p.length, 80));
        p[at] = rng.int(256);
      }
      if (rng.int(4) === 0) {
        const i = rng.int(packets.length);
        packets[i] = packets[i]!.subarray(0, rng.int(packets[i]!.length + 1));
      }
      const lengths = packets.map((p) => p.length);
      const originals = packets.map((p) => p.slice());
      const got = coalesce(packets.map((p) => (p.length === 0 ? Uint8Array.from([0]) : p)));
      const what = `mutation ${n} (seed ${SEED})`;
      assert.ok(got.packets >= 1 && got.packets <= packets.length, `${what}: ${got.packets} packets`);
      if (got.packets === 1) {
        assert.ok(got.output.subarray(0, VNET).every((b) => b === 0), `${what}: a lone packet has a zero header`);
        continue;
      }
      grouped++;
      // A group is only made of valid packets, so it segments back into them
      // (payloads and checksums; the IPv4 IDs may have been mutated).
      const again = segment(native, got.output, 4096, got.packets + 1);
      assert.equal(again.count, got.packets, `${what}: segments of the group`);
      for (let i = 0; i < got.packets; i++) {
        assertValidPacket(again.packets[i]!, `${what}: segment ${i}`);
        const t = parseTcp(again.packets[i]!)!;
        assertBytes(t.payload, originals[i]!.subarray(t.headers, lengths[i]), `${what}: payload ${i}`);
      }
    }
    assert.ok(grouped > 200, `${grouped} groups`);
  });
});

describe("offloadCoalesce of UDP runs (one UDP_L4 GSO write)", { skip: addonSkip }, () => {
  /** A run of one flow's datagrams: count payloads of `size` bytes, the last of `last`; IPv4 IDs counting up as a sender's would. */
  function udpRun(v6: boolean, count: number, size: number, last = size, more: Partial<UdpSpec> = {}): UdpSpec[] {
    const id0 = more.id ?? rng.int(0x10000);
    return Array.from({ length: count }, (_, i) => udpSpec(v6, rng.bytes(i === count - 1 ? last : size), { ...more, id: (id0 + i) & 0xffff }));
  }

  /** The write GRO must make of specs (all of one group), built from scratch: one datagram of all the payloads with the first's headers, the kernel's partial checksum in its field. */
  function expectedUdpGroup(specs: UdpSpec[]): Uint8Array {
    const first = specs[0]!;
    const packet = buildUdp({ ...first, payload: concat(...specs.map((s) => s.payload)) });
    putPartial(packet, PROTO_UDP);
    const l4 = first.v6 ? 40 : 20;
    return concat(vnet({ flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: l4 + 8, gsoSize: first.payload.length, csumStart: l4, csumOffset: 6 }), packet);
  }

  /** A datagram as the reference segmentation gives it back: the first's IPv4 ID, a fresh checksum (one of 0, none, is computed). */
  function asSegmentedBack(p: Uint8Array, first: Uint8Array): Uint8Array {
    const q = p.slice();
    if (q[0]! >> 4 === 4) {
      q.set(first.subarray(4, 6), 4);
      new DataView(q.buffer).setUint16(10, ipv4HeaderChecksum(q));
    }
    return resumUdp(q);
  }

  /**
   * Checks that the write took the first `take` packets as one UDP_L4 group
   * (or wrote packet 0 alone, with a zero header, when take is 1): field by
   * field, byte for byte against the reference (from specs when given, and
   * from the packets), and segmented back into the datagrams.
   */
  function assertUdpGroup(got: Coalesced, packets: Uint8Array[], specs: UdpSpec[] | null, take: number, what: string): void {
    assert.equal(referenceUdpTake(packets), take, `${what}: the reference's rules take ${take} (the test's own premise)`);
    assert.equal(got.packets, take, `${what}: datagrams taken`);
    const { view, offsets } = got.placed;
    const inPlace = (i: number, from = 0): Uint8Array => view.subarray(offsets[i]! + from, offsets[i]! + packets[i]!.length);
    if (take === 1) {
      assertBytes(got.output, concat(vnet(ZERO_VNET), packets[0]!), `${what}: a lone datagram, with a zero header`);
      assertBytes(inPlace(0), packets[0]!, `${what}: a lone datagram is left as it is`);
    } else {
      const v6 = packets[0]![0]! >> 4 === 6;
      const l4 = v6 ? 40 : 20;
      const payloads = packets.slice(0, take).map((p) => p.subarray(l4 + 8));
      const total = payloads.reduce((n, p) => n + p.length, l4 + 8);
      // The virtio header and the rewritten first headers, field by field.
      assert.deepEqual(parseVnet(got.output), { flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: l4 + 8, gsoSize: payloads[0]!.length, csumStart: l4, csumOffset: 6 }, `${what}: virtio header`);
      const p = got.output.subarray(VNET);
      const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
      assert.equal(p.length, total, `${what}: the write's length`);
      if (v6) assert.equal(dv.getUint16(4), total - 40, `${what}: IPv6 payload length`);
      else {
        assert.equal(dv.getUint16(2), total, `${what}: IPv4 total length`);
        assert.equal(onesSum(p, 0, 20), 0xffff, `${what}: IPv4 header checksum`);
      }
      assert.equal(dv.getUint16(l4 + 4), total - l4, `${what}: UDP length, of the whole`);
      assert.equal(dv.getUint16(l4 + 6), pseudoHeaderSum(p, v6, total - l4, PROTO_UDP), `${what}: UDP checksum field, the pseudo-header sum of the whole`);
      // Byte for byte, against a datagram built from scratch and against the first packet's own headers.
      if (specs) assertBytes(got.output, expectedUdpGroup(specs.slice(0, take)), `${what}: the write`);
      assertBytes(got.output, referenceUdpWrite(packets, take), `${what}: the write (built from the packets)`);
      // Completing the checksum as a NIC would gives a valid datagram of the whole length.
      const completed = p.slice();
      new DataView(completed.buffer).setUint16(l4 + 6, ~onesSum(completed, l4) & 0xffff);
      assertValidPacket(completed, `${what}: the super-datagram completed`);
      // The first packet's headers are rewritten in place (as documented); its payload is not.
      assertBytes(view.subarray(offsets[0]!, offsets[0]! + l4 + 8), p.subarray(0, l4 + 8), `${what}: headers rewritten in place`);
      assertBytes(inPlace(0, l4 + 8), packets[0]!.subarray(l4 + 8), `${what}: the first payload is left as it is`);
      // Round trip: cut by the reference UDP segmentation, the datagrams come back (the IPv4 ID aside).
      const again = referenceUdpSegments(got.output);
      assert.equal(again.length, take, `${what}: datagrams segmented back`);
      for (let i = 0; i < take; i++) {
        assertValidPacket(again[i]!, `${what}: datagram ${i} segmented back`);
        const want = specs ? buildUdp({ ...specs[i]!, id: specs[0]!.id }) : asSegmentedBack(packets[i]!, packets[0]!);
        assertBytes(again[i]!, want, `${what}: datagram ${i} segmented back`);
      }
    }
    for (let i = 1; i < packets.length; i++) assertBytes(inPlace(i), packets[i]!, `${what}: packet ${i} untouched`);
  }

  /** Spoils a UDP checksum for sure: never to 0 (IPv4: none), never to its other form (0 and 0xffff are both a zero sum). */
  function spoilUdpSum(p: Uint8Array): Uint8Array {
    const l4 = p[0]! >> 4 === 6 ? 40 : 20;
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const field = dv.getUint16(l4 + 6);
    dv.setUint16(l4 + 6, (field ^ 0x00ff) === 0 ? field ^ 0xff00 : field ^ 0x00ff);
    assert.notDeepEqual(packetProblems(p), [], "the checksum is spoilt");
    return p;
  }

  /** Sets the UDP length field to `length` and makes the checksum right again (over the IP's length): only the field disagrees. */
  function withUdpLength(p: Uint8Array, length: number): Uint8Array {
    const l4 = p[0]! >> 4 === 6 ? 40 : 20;
    new DataView(p.buffer, p.byteOffset, p.byteLength).setUint16(l4 + 4, length);
    resumUdp(p);
    assertValidPacket(p, "a datagram whose only fault is its UDP length field");
    return p;
  }

  const family = (v6: boolean): string => `IPv${v6 ? 6 : 4}`;

  test("runs of IPv4 and IPv6 datagrams become the reference UDP_L4 write, and segment back into them", () => {
    let n = 0;
    for (const v6 of [false, true]) {
      const headers = v6 ? 48 : 28;
      for (const size of [1, 100, 1200, 1472]) {
        for (const count of [2, 3, 10, 33, 64, 65]) {
          const last = size === 1 || n % 3 === 0 ? size : rng.range(1, size - 1);
          const specs = udpRun(v6, count, size, last);
          const packets = specs.map(buildUdp);
          // At most 64 datagrams and 65535 bytes; the shorter last one ends the group.
          let take = 1, total = headers + size;
          while (take < Math.min(count, 64)) {
            const next = take === count - 1 ? last : size;
            if (total + next > 65535) break;
            total += next;
            take++;
          }
          const got = coalesce(packets, n % 2 === 0);
          assertUdpGroup(got, packets, specs, take, `${family(v6)} ${count} × ${size} (last ${last})`);
          n++;
        }
      }
    }
  });

  test("a UDP group holds at most 64 datagrams and 65535 bytes", () => {
    for (const v6 of [false, true]) {
      const name = family(v6);
      for (const size of [1, 100]) {
        const specs = udpRun(v6, 65, size);
        const packets = specs.map(buildUdp);
        assertUdpGroup(coalesce(packets), packets, specs, 64, `${name}: 65 × ${size}`);
        const rest = coalesce(packets.slice(64));
        assert.equal(rest.packets, 1, `${name}: the 65th is written alone`);
      }
      const all = udpRun(v6, 64, 7);
      const allPackets = all.map(buildUdp);
      assertUdpGroup(coalesce(allPackets), allPackets, all, 64, `${name}: 64 × 7`);

      // 60 × 1200: the headers and 54 payloads fit in 65535 bytes, 55 do not.
      const big = udpRun(v6, 60, 1200);
      const bigPackets = big.map(buildUdp);
      assertUdpGroup(coalesce(bigPackets), bigPackets, big, 54, `${name}: 60 × 1200`);

      // Exactly 65535 bytes: 44 × 1472 and a last one of the bytes left; one byte more does not fit.
      const headers = v6 ? 48 : 28;
      const left = 65535 - headers - 44 * 1472;
      assert.equal(left, v6 ? 719 : 739);
      assertFillsExactly(name, 45, left, (last) => udpRun(v6, 45, 1472, last), buildUdp, assertUdpGroup);
    }
  });

  test("what stops a UDP group: the breaker is left for the next write", () => {
    const AT = 3;
    type Change = (s: UdpSpec) => void;
    const flip = (a: number[]): number[] => [...a.slice(0, -1), a.at(-1)! ^ 1];
    const breakers: [string, boolean | "both", Change][] = [
      ["a different source port", "both", (s) => { s.sport += 1; }],
      ["a different destination port", "both", (s) => { s.dport += 1; }],
      ["a different source address", "both", (s) => { s.src = flip(s.src); }],
      ["a different destination address", "both", (s) => { s.dst = flip(s.dst); }],
      ["a longer payload", "both", (s) => { s.payload = rng.bytes(s.payload.length + 1); }],
      ["no payload", "both", (s) => { s.payload = new Uint8Array(0); }],
      ["a different TTL", false, (s) => { s.ttl = 63; }],
      ["a different TOS", false, (s) => { s.tos = 0x10; }],
      ["an ECN mark (CE)", false, (s) => { s.tos = 0x03; }],
      ["DF cleared", false, (s) => { s.frag = 0; }],
      ["an IPv4 fragment (MF)", false, (s) => { s.frag = 0x2000; }],
      ["an IPv4 fragment offset", false, (s) => { s.frag = 0x4000 | 0x00b9; }],
      ["IPv4 options", false, (s) => { s.ipOptions = [0x94, 4, 0, 0]; }],
      ["a different hop limit", true, (s) => { s.ttl = 1; }],
      ["a different traffic class", true, (s) => { s.tos = 0x20; }],
      ["a different flow label", true, (s) => { s.flowLabel = 0x1; }],
      ["an IPv6 extension header (hop-by-hop)", true, (s) => { s.hopByHop = true; }],
    ];
    for (const v6 of [false, true]) {
      for (const [what, only, change] of breakers) {
        if (only !== "both" && only !== v6) continue;
        const specs = udpRun(v6, 7, 1200);
        // The datagrams after the breaker continue the run, so only the breaker stops the group.
        change(specs[AT]!);
        const packets = specs.map(buildUdp);
        assertUdpGroup(coalesce(packets), packets, specs, AT, `${family(v6)}, ${what} at ${AT}`);
      }
    }
  });

  test("what stops a UDP group, at the packet level: checksums, lengths, versions", () => {
    const AT = 3;
    for (const v6 of [false, true]) {
      const l4 = v6 ? 40 : 20;
      const cases: [string, (ps: Uint8Array[]) => void][] = [
        ["a bad UDP checksum", (ps) => { spoilUdpSum(ps[AT]!); }],
        ["a payload byte changed (the checksum no longer verifies)", (ps) => { ps[AT]![ps[AT]!.length - 1]! ^= 0x80; }],
        ["a UDP length one more than the IP's", (ps) => { withUdpLength(ps[AT]!, ps[AT]!.length - l4 + 1); }],
        ["a UDP length one less than the IP's", (ps) => { withUdpLength(ps[AT]!, ps[AT]!.length - l4 - 1); }],
        ["a UDP length of 8", (ps) => { withUdpLength(ps[AT]!, 8); }],
        ["an IP length longer than the packet", (ps) => { ps[AT] = ps[AT]!.subarray(0, ps[AT]!.length - 1); }],
        ["an IP length shorter than the packet", (ps) => { ps[AT] = concat(ps[AT]!, new Uint8Array(2)); }],
        ["the other IP version", (ps) => { ps[AT] = buildUdp(udpSpec(!v6, ps[AT]!.subarray(l4 + 8))); }],
        ["not IP at all", (ps) => { ps[AT] = rng.bytes(1228); }],
        ["a 40-byte packet", (ps) => { ps[AT] = ps[AT]!.subarray(0, 40); }],
      ];
      if (v6) {
        // RFC 8200 §8.1: an IPv6 UDP checksum of 0 is no checksum, and is wrong.
        cases.push(["an IPv6 datagram with a zero checksum", (ps) => { resumUdp(ps[AT]!, "zero"); }]);
      } else {
        // The rewritten header checksum of the write would hide a bad one.
        cases.push(["a bad IPv4 header checksum", (ps) => { ps[AT]![10]! ^= 0x5a; }]);
        // Protocol 6 with a right header checksum: the UDP header's fields still look right.
        cases.push(["IPv4 protocol TCP", (ps) => { ps[AT]![9] = PROTO_TCP; new DataView(ps[AT]!.buffer).setUint16(10, ipv4HeaderChecksum(ps[AT]!)); }]);
      }
      for (const [what, change] of cases) {
        const specs = udpRun(v6, 7, 1200);
        const packets = specs.map(buildUdp);
        change(packets);
        assertUdpGroup(coalesce(packets), packets, specs, AT, `${family(v6)}, ${what} at ${AT}`);
      }
    }
  });

  test("a shorter datagram ends the group and is in it; a longer one is not taken", () => {
    for (const v6 of [false, true]) {
      const short = udpRun(v6, 8, 1200);
      short[3]!.payload = short[3]!.payload.subarray(0, 700);
      const shortPackets = short.map(buildUdp);
      assertUdpGroup(coalesce(shortPackets), shortPackets, short, 4, `${family(v6)}, a shorter one at 3`);
      // The next write starts after it and takes the rest.
      assertUdpGroup(coalesce(shortPackets.slice(4)), shortPackets.slice(4), short.slice(4), 4, `${family(v6)}, the rest after the shorter one`);

      const oneByte = udpRun(v6, 5, 1200);
      oneByte[1]!.payload = oneByte[1]!.payload.subarray(0, 1);
      const oneBytePackets = oneByte.map(buildUdp);
      assertUdpGroup(coalesce(oneBytePackets), oneBytePackets, oneByte, 2, `${family(v6)}, a 1-byte one at 1`);

      const longer = udpRun(v6, 6, 1200);
      longer[2]!.payload = rng.bytes(1472);
      const longerPackets = longer.map(buildUdp);
      assertUdpGroup(coalesce(longerPackets), longerPackets, longer, 2, `${family(v6)}, a longer one at 2`);

      // The first one sets gso_size: longer ones after a short first are not taken.
      const shortFirst = udpRun(v6, 4, 1200);
      shortFirst[0]!.payload = shortFirst[0]!.payload.subarray(0, 500);
      const shortFirstPackets = shortFirst.map(buildUdp);
      assertUdpGroup(coalesce(shortFirstPackets), shortFirstPackets, shortFirst, 1, `${family(v6)}, a short first one`);
    }
  });

  test("what cannot start a UDP group: the first datagram is written alone, unchanged", () => {
    type Change = (s: UdpSpec) => void;
    const starters: [string, boolean | "both", Change][] = [
      ["no payload", "both", (s) => { s.payload = new Uint8Array(0); }],
      ["IPv4 options", false, (s) => { s.ipOptions = [0x94, 4, 0, 0]; }],
      ["IPv4 MF (a first fragment)", false, (s) => { s.frag = 0x2000; }],
      ["IPv4 fragment offset", false, (s) => { s.frag = 0x00b9; }],
      ["IPv4 MF and an offset", false, (s) => { s.frag = 0x2000 | 0x00b9; }],
      ["IPv6 hop-by-hop header", true, (s) => { s.hopByHop = true; }],
    ];
    for (const v6 of [false, true]) {
      const l4 = v6 ? 40 : 20;
      for (const [what, only, change] of starters) {
        if (only !== "both" && only !== v6) continue;
        const specs = udpRun(v6, 4, 1200);
        for (const s of specs) change(s); // even when they all match each other
        const packets = specs.map(buildUdp);
        assertUdpGroup(coalesce(packets), packets, specs, 1, `${family(v6)}, ${what}`);
      }
      const packetCases: [string, (p: Uint8Array) => void][] = [
        ["a bad UDP checksum on the first", (p) => { spoilUdpSum(p); }],
        ["a UDP length one more than the IP's on the first", (p) => { withUdpLength(p, p.length - l4 + 1); }],
        ["a UDP length one less than the IP's on the first", (p) => { withUdpLength(p, p.length - l4 - 1); }],
      ];
      if (v6) packetCases.push(["a zero checksum on the first (IPv6)", (p) => { resumUdp(p, "zero"); }]);
      else packetCases.push(["a bad IPv4 header checksum on the first", (p) => { p[10]! ^= 0x5a; }]);
      for (const [what, change] of packetCases) {
        const specs = udpRun(v6, 4, 1200);
        const packets = specs.map(buildUdp);
        change(packets[0]!);
        assertUdpGroup(coalesce(packets), packets, specs, 1, `${family(v6)}, ${what}`);
      }
      // DF cleared on all of them is no fragment: they coalesce.
      const noDf = udpRun(v6, 4, 1200, 1200, { frag: 0 });
      const noDfPackets = noDf.map(buildUdp);
      assertUdpGroup(coalesce(noDfPackets), noDfPackets, noDf, 4, `${family(v6)}, DF cleared on all`);
      // A single datagram.
      const one = udpRun(v6, 1, 1200);
      const onePacket = one.map(buildUdp);
      assertUdpGroup(coalesce(onePacket), onePacket, one, 1, `${family(v6)}, one datagram`);
    }
  });

  test("IPv4 datagrams without a checksum (0) are taken; datagrams whose checksum computes to 0 (sent as 0xffff) too", () => {
    const zero = (ps: Uint8Array[], which: (i: number) => boolean): Uint8Array[] => ps.map((p, i) => (which(i) ? resumUdp(p, "zero") : p));
    const cases: [string, (i: number) => boolean][] = [["all", () => true], ["every other", (i) => i % 2 === 1], ["the first", (i) => i === 0], ["the last", (i) => i === 6]];
    for (const [what, which] of cases) {
      const specs = udpRun(false, 7, 1000, 321);
      const packets = zero(specs.map(buildUdp), which);
      assert.ok(packets.some((p) => p[26] === 0 && p[27] === 0));
      assertUdpGroup(coalesce(packets), packets, specs, 7, `IPv4, a zero checksum on ${what}`);
    }
    for (const v6 of [false, true]) {
      const packets = Array.from({ length: 4 }, () => udpWithZeroSum(v6));
      assert.equal(new DataView(packets[0]!.buffer).getUint16((v6 ? 40 : 20) + 6), 0xffff);
      assertUdpGroup(coalesce(packets), packets, null, 4, `${family(v6)}, checksums of 0xffff`);
    }
  });

  test("TCP and UDP of the same addresses and ports do not mix", () => {
    for (const v6 of [false, true]) {
      const l4 = v6 ? 40 : 20;
      const specs = udpRun(v6, 6, 1200);
      const packets = specs.map(buildUdp);
      // A TCP segment of the same addresses, ports, TTL and flow, whose
      // sequence number puts its length where a UDP length would be and
      // whose checksum is right: only the protocol tells it apart.
      const payload = rng.bytes(1000);
      const seq = (((20 + payload.length) << 16) | 0x1234) >>> 0;
      const tcp = buildTcp(baseSpec(v6, payload, { sport: specs[0]!.sport, dport: specs[0]!.dport, seq, options: [], id: specs[3]!.id, flowLabel: specs[0]!.flowLabel }));
      assert.equal(new DataView(tcp.buffer).getUint16(l4 + 4), tcp.length - l4, "the TCP segment looks like a whole UDP datagram there");
      packets[3] = tcp;
      assertUdpGroup(coalesce(packets), packets, specs, 3, `${family(v6)}, TCP after UDP`);
      // And a TCP group does not take a UDP datagram of its flow either.
      const tcpRun = [0, 1].map((i) => baseSpec(v6, rng.bytes(1200), { sport: 50123, dport: 4500, seq: 1000 + 1200 * i, options: [] }));
      const mixed = [...tcpRun.map(buildTcp), buildUdp(udpSpec(v6, rng.bytes(1200))), buildTcp({ ...tcpRun[1]!, seq: 1000 + 2400 })];
      assert.equal(coalesce(mixed).packets, 2, `${family(v6)}, UDP after TCP`);
    }
  });

  test("after a UDP group, the next write starts at the breaker and coalesces the rest", () => {
    // What tunWriteBatch does: coalesce from 0, then from where that stopped.
    for (const v6 of [false, true]) {
      const specs = udpRun(v6, 12, 1200, 99);
      for (let i = 5; i < 12; i++) specs[i]!.sport += 1; // a second flow from 5 on
      const packets = specs.map(buildUdp);
      assertUdpGroup(coalesce(packets), packets, specs, 5, `${family(v6)}: first write`);
      assertUdpGroup(coalesce(packets.slice(5)), packets.slice(5), specs.slice(5), 7, `${family(v6)}: second write`);
    }
  });

  test("600 random mutations of UDP runs: the datagrams taken and the write are the reference's", () => {
    const outcomes = { grouped: 0, alone: 0, partial: 0 };
    for (let n = 0; n < 600; n++) {
      const v6 = rng.int(2) === 1;
      const size = rng.range(1, 1472);
      const count = rng.range(1, 12);
      const specs = udpRun(v6, count, size, rng.int(3) === 0 ? rng.range(1, size) : size, { frag: rng.int(4) === 0 ? 0 : 0x4000 });
      const packets = specs.map(buildUdp);
      if (!v6 && rng.int(4) === 0) packets.forEach((p) => resumUdp(p, "zero"));
      for (let k = rng.range(0, 3); k > 0; k--) {
        const p = packets[rng.int(packets.length)]!;
        // Mostly in the headers; sometimes a whole checksum or length field.
        const at = rng.int(3) === 0 ? rng.int(p.length) : rng.int(Math.min(p.length, (v6 ? 40 : 20) + 8));
        p[at] = rng.int(2) === 0 ? p[at]! ^ (1 << rng.int(8)) : rng.int(256);
        // Re-summed only while the version byte still says the packet's own family: an IPv4 datagram turned
        // "IPv6" by the flip is shorter than an IPv6 header, and its checksum field would lie past its end.
        if (rng.int(8) === 0 && (v6 ? p[0]! >> 4 === 6 : p[0] === 0x45)) resumUdp(p, rng.int(2) === 0 ? "fresh" : "zero");
      }
      if (rng.int(5) === 0) {
        const i = rng.int(packets.length);
        packets[i] = rng.int(2) === 0 ? packets[i]!.subarray(0, rng.range(1, packets[i]!.length)) : concat(packets[i]!, rng.bytes(rng.range(1, 9)));
      }
      const take = referenceUdpTake(packets);
      const what = `mutation ${n} (seed ${SEED})`;
      assertUdpGroup(coalesce(packets), packets, null, take, what);
      if (take === 1) outcomes.alone++;
      else if (take < count) outcomes.partial++;
      else outcomes.grouped++;
    }
    // Each outcome often enough for the comparison to say something.
    assert.ok(outcomes.grouped > 60 && outcomes.alone > 60 && outcomes.partial > 60, JSON.stringify(outcomes));
  });
});

/* ------------------------------------------------ the real device */

const deviceSkip = addonSkip || tunDeviceSkip();

/** Runs the device child (fixtures/offloadDeviceChild.ts) in namespace `ns`; its report is the last line of its output. */
function runDeviceChild<R>(ns: string, mode: "tcp" | "udp"): Promise<{ ok: boolean; families: Record<string, R> }> {
  return runChildInNamespace(ns, DEVICE_CHILD, "SLUICE_IO_OFFLOAD_CHILD", { value: mode, env: { SLUICE_TEST_SEED: String(SEED) }, timeout: 120_000 });
}

describe("a TUN with offloads and the kernel's own TCP, in a network namespace", { skip: deviceSkip }, () => {
  const ns = useNamespace("sl-off");

  test("TSO super-packets from a kernel sender are cut right; coalesced writes reach a kernel receiver", async () => {
    const report = await runDeviceChild<DeviceReport>(ns, "tcp");
    assert.equal(report.ok, true);
    for (const family of ["4", "6"]) {
      const r = report.families[family] ?? assert.fail(`no report for IPv${family}`);
      assert.ok(r.stats.superPackets > 0, `IPv${family}: the kernel sent super-packets: ${JSON.stringify(r)}`);
      assert.ok(r.stats.segments > r.stats.reads, `IPv${family}: more segments than reads: ${JSON.stringify(r)}`);
      assert.ok(r.stats.groups > 0 && r.stats.coalesced >= 2 * r.stats.groups, `IPv${family}: coalesced writes: ${JSON.stringify(r)}`);
      assert.equal(r.stats.malformed, 0, `IPv${family}: malformed reads`);
      assert.equal(r.received, r.sent, `IPv${family}: bytes from the kernel`);
      assert.equal(r.echoed, r.returned, `IPv${family}: bytes to the kernel`);
    }
  });
});

describe("a TUN with offloads and kernel UDP sockets: coalesced UDP writes, in a network namespace", { skip: deviceSkip }, () => {
  const ns = useNamespace("sl-uso");

  test("runs of datagrams become UDP_L4 writes that a socket receives whole and in order; a bad checksum is written alone and dropped", async () => {
    const report = await runDeviceChild<UdpDeviceReport>(ns, "udp");
    assert.equal(report.ok, true);
    for (const family of ["4", "6"]) {
      const r = report.families[family] ?? assert.fail(`no report for IPv${family}`);
      const runs = Object.keys(r.runs);
      assert.deepEqual(runs, family === "4" ? [...UDP_DEVICE_RUNS, "no checksums"] : UDP_DEVICE_RUNS, `IPv${family}: runs`);
      // The child checked each run in detail; here, the outline again.
      for (const [what, run] of Object.entries(r.runs)) {
        const where = `IPv${family}, ${what}: ${JSON.stringify(run)}`;
        assert.equal(run.received, run.expected, `${where}: datagrams received`);
        assert.equal(run.expected, run.written - run.spoilt, `${where}: all but the spoilt ones`);
        assert.equal(run.csumErrors, run.spoilt, `${where}: checksum errors counted by the kernel`);
        assert.ok(run.groups >= 1 && run.coalesced >= 2 * run.groups, `${where}: coalesced writes`);
        assert.equal(run.writes, run.groups + (run.written - run.coalesced), `${where}: one write per group and per lone datagram`);
      }
      assert.equal(r.runs["a bad checksum in the middle"]!.groups, 2, `IPv${family}: the spoilt datagram splits its run in two groups`);
      assert.deepEqual(r.refusedWhileDown, { refusal: "EIO", intact: true }, `IPv${family}: a refused group write leaves its packets as they were`);
    }
  });
});
