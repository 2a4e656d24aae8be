// Real traffic from a real peer: ESP packets that strongSwan 5.9.8
// (kernel-libipsec, userspace ESP in UDP, ChaCha20-Poly1305) exchanged with
// another strongSwan, captured on the wire with the keys it logged
// (test/fixtures/strongswan/, recorded with the interop bed's capture tool; see the
// README there). The test reads the captures with fixtures/pcap.ts (pcapng and classic pcap;
// Ethernet, Linux cooked v1/v2 or raw IP; IPv4/IPv6; UDP; ESP in UDP on port
// 4500 per RFC 3948, skipping NAT keepalives and IKE behind the non-ESP
// marker), opens every ESP packet with sluice's InboundSa as the receiving end
// of its SA, and proves: each opens "ok" with the sequence number of its
// header; the inner packet is a well-formed IPv4 packet (length, checksum) of
// the test bed's inner addresses (10.77.x.x) whose protocol matches the next
// header; it agrees byte for byte with an independent decryption (noble) and
// with what the bed's ESP check printed when the fixture was recorded
// (esp-decrypt.txt: sequence, pad length, next header, addresses, length); the
// ICMP echo requests and replies pair up; given strongSwan's sequence number and
// IV, sluice's OutboundSa seals each inner packet to the very bytes strongSwan
// sent; opening the capture a second time is refused as a replay without moving
// the window; a corrupted packet is "auth" and does not poison the window; the
// other direction's SA refuses the packets.
// Needs nothing but the committed fixture: no strongSwan, no Python, no root.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { InboundSa, OutboundSa, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, type OpenResult } from "../../src/esp.js";
import { hex, toHex, concat } from "../helpers.js";
import { ipPacket, parsePcap, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, type Pcap } from "../fixtures/pcap.js";
import type { SaJson, SasJson as BedSasJson } from "../fixtures/interop/charonKeys.js";

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// ------------------------------------------------------------------ IP and UDP

/** RFC 1071 Internet checksum over `b` (0 when a packet including its checksum field verifies). */
function internetChecksum(b: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Text(b: Uint8Array): string {
  return Array.from(b).join(".");
}

function ipv6Text(b: Uint8Array): string {
  const v = viewOf(b);
  return Array.from({ length: 8 }, (_, i) => v.getUint16(2 * i).toString(16)).join(":");
}

interface Datagram {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/** The UDP datagram in an outer IPv4/IPv6 packet, or null if the packet is not UDP. */
function udpOf(ip: Uint8Array, frameNumber: number): Datagram | null {
  const where = `frame ${frameNumber}`;
  let src: string, dst: string, proto: number, l4: Uint8Array;
  if (ip[0]! >> 4 === 4) {
    const ihl = (ip[0]! & 0x0f) * 4;
    const total = viewOf(ip).getUint16(2);
    if (ihl < 20 || total < ihl || total > ip.length) throw new Error(`${where}: bad outer IPv4 header`);
    if (internetChecksum(ip.subarray(0, ihl)) !== 0) throw new Error(`${where}: outer IPv4 header checksum`);
    if (viewOf(ip).getUint16(6) & 0x3fff) throw new Error(`${where}: fragmented outer IPv4 not supported`);
    src = ipv4Text(ip.subarray(12, 16));
    dst = ipv4Text(ip.subarray(16, 20));
    proto = ip[9]!;
    l4 = ip.subarray(ihl, total); // drops Ethernet padding after the packet
  } else if (ip[0]! >> 4 === 6) {
    const payloadLength = viewOf(ip).getUint16(4);
    if (40 + payloadLength > ip.length) throw new Error(`${where}: outer IPv6 packet cut off`);
    src = ipv6Text(ip.subarray(8, 24));
    dst = ipv6Text(ip.subarray(24, 40));
    proto = ip[6]!; // extension headers before UDP are not expected here
    l4 = ip.subarray(40, 40 + payloadLength);
  } else {
    throw new Error(`${where}: IP version ${ip[0]! >> 4}`);
  }
  if (proto !== 17) return null;
  const u = viewOf(l4);
  if (l4.length < 8 || u.getUint16(4) !== l4.length) throw new Error(`${where}: UDP length does not match the IP packet`);
  return { src, dst, srcPort: u.getUint16(0), dstPort: u.getUint16(2), payload: l4.subarray(8) };
}

const IKE_PORT = 500;
const NAT_T_PORT = 4500;

type UdpKind = "esp" | "ike" | "nat-keepalive" | "other";

/** RFC 3948 §2: on port 4500 a datagram is a keepalive (one 0xFF byte), IKE (4 zero bytes first), or ESP. */
function classify(d: Datagram): UdpKind {
  if (d.srcPort === NAT_T_PORT || d.dstPort === NAT_T_PORT) {
    if (d.payload.length === 1 && d.payload[0] === 0xff) return "nat-keepalive";
    if (d.payload.length >= 4 && d.payload[0] === 0 && d.payload[1] === 0 && d.payload[2] === 0 && d.payload[3] === 0) return "ike";
    return "esp";
  }
  if (d.srcPort === IKE_PORT || d.dstPort === IKE_PORT) return "ike";
  return "other";
}

interface EspPacket {
  frame: number;
  src: string;
  dst: string;
  spi: number;
  /** The 32-bit sequence number of the ESP header. */
  seq: number;
  bytes: Uint8Array;
}

interface Dissection {
  esp: EspPacket[];
  kinds: Record<UdpKind, number>;
}

function dissect(capture: Pcap): Dissection {
  const esp: EspPacket[] = [];
  const kinds: Record<UdpKind, number> = { esp: 0, ike: 0, "nat-keepalive": 0, other: 0 };
  for (const frame of capture.records) {
    const packet = ipPacket(frame.linktype, frame.data);
    // A plain Uint8Array view: Buffer's slice() shares memory, and the tests copy packets with slice() to corrupt them.
    const ip = packet && new Uint8Array(packet.buffer, packet.byteOffset, packet.byteLength);
    if (!ip) continue;
    const d = udpOf(ip, frame.number);
    if (!d) continue;
    const kind = classify(d);
    kinds[kind]++;
    if (kind !== "esp") continue;
    const v = viewOf(d.payload);
    if (d.payload.length < 8) throw new Error(`frame ${frame.number}: ESP shorter than its header`);
    esp.push({ frame: frame.number, src: d.src, dst: d.dst, spi: v.getUint32(0), seq: v.getUint32(4), bytes: d.payload });
  }
  return { esp, kinds };
}

// ------------------------------------------------------------------ inner packets

interface Inner {
  version: 4 | 6;
  src: string;
  dst: string;
  protocol: number;
  /** The IPv4 payload (here ICMP). */
  payload: Uint8Array;
}

/** Checks that `p` is one well-formed IP packet of the version `nextHeader` names, and returns its fields. */
function wellFormedInner(p: Uint8Array, nextHeader: number, where: string): Inner {
  if (nextHeader === NEXT_HEADER_IPV4) {
    assert.ok(p.length >= 20, `${where}: inner IPv4 shorter than a header`);
    assert.equal(p[0]! >> 4, 4, `${where}: next header 4 but IP version ${p[0]! >> 4}`);
    const ihl = (p[0]! & 0x0f) * 4;
    assert.ok(ihl >= 20 && ihl <= p.length, `${where}: inner IHL ${ihl}`);
    assert.equal(viewOf(p).getUint16(2), p.length, `${where}: inner IPv4 total length differs from the packet's`);
    assert.equal(internetChecksum(p.subarray(0, ihl)), 0, `${where}: inner IPv4 header checksum`);
    assert.equal(viewOf(p).getUint16(6) & 0x3fff, 0, `${where}: inner packet is a fragment`);
    return { version: 4, src: ipv4Text(p.subarray(12, 16)), dst: ipv4Text(p.subarray(16, 20)), protocol: p[9]!, payload: p.subarray(ihl) };
  }
  if (nextHeader === NEXT_HEADER_IPV6) {
    assert.ok(p.length >= 40, `${where}: inner IPv6 shorter than a header`);
    assert.equal(p[0]! >> 4, 6, `${where}: next header 41 but IP version ${p[0]! >> 4}`);
    assert.equal(40 + viewOf(p).getUint16(4), p.length, `${where}: inner IPv6 payload length differs from the packet's`);
    return { version: 6, src: ipv6Text(p.subarray(8, 24)), dst: ipv6Text(p.subarray(24, 40)), protocol: p[6]!, payload: p.subarray(40) };
  }
  assert.fail(`${where}: next header ${nextHeader} is neither IPv4 nor IPv6`);
}

/** Does an IPv4 address lie in a prefix written as a.b.c.d/len? */
function inPrefix(address: string, prefix: string): boolean {
  const [net, lenText] = prefix.split("/");
  const toInt = (s: string) => s.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  const len = Number(lenText);
  const size = 2 ** (32 - len);
  return Math.floor(toInt(address) / size) === Math.floor(toInt(net!) / size);
}

// ------------------------------------------------------------------ the fixtures

/** sas.json of a recorded fixture: the bed's, with the capture it was written with. */
type SasJson = BedSasJson & {
  capture: { file: string; format: "pcap" | "pcapng"; tool: string; pings: number; pingSizes: number[]; espPackets: number };
};

/** One line of esp-decrypt.txt (the bed's ESP check), as it was printed when the fixture was recorded. */
interface Reference {
  spi: number;
  seq: number;
  nextHeader: number;
  pad: number;
  src: string;
  dst: string;
  protocol: number;
  length: number;
}

const FIXTURES = [
  { dir: "", label: "dumpcap, pcapng, 56-59 byte pings" },
  { dir: "tcpdump/", label: "tcpdump, classic pcap, 1000-1003 byte pings" },
];

function fixturePath(rel: string): URL {
  return new URL(`../../../test/fixtures/strongswan/${rel}`, import.meta.url);
}

function loadFixture(dir: string) {
  const sas = JSON.parse(readFileSync(fixturePath(`${dir}sas.json`), "utf8")) as SasJson;
  const capture = parsePcap(readFileSync(fixturePath(`${dir}${sas.capture.file}`)), { strict: true });
  const keysTxt = readFileSync(fixturePath(`${dir}keys.txt`), "utf8");
  const reference = new Map<number, Reference>();
  const lineRe = /^frame (\d+) spi 0x([0-9a-f]{8}) seq (\d+): ICV OK, next_header (\d+), pad (\d+), inner IPv4 (\S+) -> (\S+) proto (\d+) len (\d+)$/;
  for (const line of readFileSync(fixturePath(`${dir}esp-decrypt.txt`), "utf8").split("\n")) {
    const m = lineRe.exec(line);
    if (!m) continue;
    reference.set(Number(m[1]), {
      spi: parseInt(m[2]!, 16), seq: Number(m[3]), nextHeader: Number(m[4]), pad: Number(m[5]),
      src: m[6]!, dst: m[7]!, protocol: Number(m[8]), length: Number(m[9]),
    });
  }
  return { sas, capture, keysTxt, reference, ...dissect(capture) };
}

interface SaUnderTest {
  json: SaJson;
  spi: number;
  key: Uint8Array;
  salt: Uint8Array;
}

function saParams(json: SaJson): SaUnderTest {
  assert.match(json.spi, /^[0-9a-f]{8}$/);
  assert.match(json.key, /^[0-9a-f]{64}$/, "key: 32 bytes (the first 32 of the 36-byte KEYMAT)");
  assert.match(json.salt, /^[0-9a-f]{8}$/, "salt: 4 bytes (the last 4 of the 36-byte KEYMAT)");
  return { json, spi: parseInt(json.spi, 16), key: hex(json.key), salt: hex(json.salt) };
}

/** The receiving end of each SA of the fixture, keyed by SPI. */
function inboundSas(sas: SaUnderTest[], replayWindow = 1024): Map<number, InboundSa> {
  return new Map(sas.map((sa) => [sa.spi, new InboundSa({ spi: sa.spi, key: sa.key, salt: sa.salt, esn: sa.json.esn, replayWindow })]));
}

function destroyAll(sas: Map<number, InboundSa>): void {
  for (const sa of sas.values()) sa.destroy();
}

/** Independent decryption with noble (RFC 7634: nonce = salt ‖ IV, AAD = SPI ‖ seq). */
function nobleOpen(sa: SaUnderTest, p: EspPacket): Uint8Array {
  const nonce = concat(sa.salt, p.bytes.subarray(8, 16));
  return chacha20poly1305(sa.key, nonce, p.bytes.subarray(0, 8)).decrypt(p.bytes.subarray(16));
}

const ESP_OVERHEAD = 8 + 8 + 16; // SPI ‖ seq, IV, ICV

for (const { dir, label } of FIXTURES) {
  describe(`strongSwan capture (${label})`, () => {
    const fx = loadFixture(dir);
    const sas = fx.sas.sas.map(saParams);
    const bySpi = new Map(sas.map((sa) => [sa.spi, sa]));
    const i2r = sas.find((sa) => sa.json.direction === "initiator-to-responder")!;
    const r2i = sas.find((sa) => sa.json.direction === "responder-to-initiator")!;

    test("the capture holds what the capture tool recorded: IKE, then ESP in UDP both ways, uncut", () => {
      assert.equal(fx.capture.format, fx.sas.capture.format);
      assert.ok(fx.capture.records.every((f) => f.linktype === LINKTYPE_ETHERNET), "captured on the veth: Ethernet");
      assert.ok(fx.capture.records.every((f) => f.data.length === f.length), "no frame was cut by the snap length");
      assert.equal(sas.length, 2);
      assert.ok(i2r && r2i && i2r.spi !== r2i.spi, "one SA per direction, distinct SPIs");
      // IKE_SA_INIT on 500, IKE_AUTH (and maybe an INFORMATIONAL) on 4500 behind the non-ESP marker
      assert.ok(fx.kinds.ike >= 4, `IKE datagrams: ${fx.kinds.ike}`);
      assert.equal(fx.kinds.other, 0);
      assert.equal(fx.esp.length, fx.sas.capture.espPackets);
      assert.equal(fx.esp.length, 2 * fx.sas.capture.pings);
      for (const sa of [i2r, r2i]) {
        const mine = fx.esp.filter((p) => p.spi === sa.spi);
        assert.equal(mine.length, fx.sas.capture.pings, `packets on SPI ${sa.json.spi}`);
        assert.deepEqual(mine.map((p) => p.seq), mine.map((_, i) => i + 1), "sequence numbers 1, 2, 3, … in order");
        assert.ok(mine.every((p) => p.src === sa.json.src && p.dst === sa.json.dst), `outer ${sa.json.src} -> ${sa.json.dst}`);
      }
      assert.ok(fx.esp.every((p) => bySpi.has(p.spi)), "every ESP packet belongs to one of the two SAs");
      assert.equal(fx.sas.espProposal, "ESP:CHACHA20_POLY1305/NO_EXT_SEQ", "libipsec negotiates no ESN");
      assert.ok(sas.every((sa) => sa.json.esn === false));
    });

    test("sas.json holds strongSwan's 36-byte KEYMAT split as key ‖ salt (keys.txt)", () => {
      const logged = (name: string) => new RegExp(`^${name}=([0-9a-f]+)$`, "m").exec(fx.keysTxt)?.[1];
      assert.equal(logged("encryption_initiator_key"), i2r.json.key + i2r.json.salt);
      assert.equal(logged("encryption_responder_key"), r2i.json.key + r2i.json.salt);
    });

    test("sluice opens every packet, and agrees with noble and with esp-decrypt.txt", () => {
      const inbound = inboundSas(sas);
      try {
        const echo = new Map<string, Uint8Array>(); // "spi seq" -> ICMP message
        for (const p of fx.esp) {
          const where = `frame ${p.frame} (SPI ${p.spi.toString(16)}, seq ${p.seq})`;
          const sa = bySpi.get(p.spi)!;
          const r: OpenResult = inbound.get(p.spi)!.open(p.bytes);
          assert.equal(r.status, "ok", where);
          assert.equal(r.seq, BigInt(p.seq), `${where}: seq`);
          assert.ok(r.packet && r.nextHeader !== undefined);
          const inner = wellFormedInner(r.packet, r.nextHeader, where);
          assert.equal(r.nextHeader, NEXT_HEADER_IPV4, `${where}: the test bed is IPv4 inside`);

          // the test bed's inner addresses, in the SA's direction
          const [from, to] = sa === i2r ? [fx.sas.initiator, fx.sas.responder] : [fx.sas.responder, fx.sas.initiator];
          assert.match(inner.src, /^10\.77\.\d+\.\d+$/);
          assert.match(inner.dst, /^10\.77\.\d+\.\d+$/);
          assert.ok(inPrefix(inner.src, from.ts) && inPrefix(inner.dst, to.ts), `${where}: ${inner.src} -> ${inner.dst} vs TS ${from.ts} -> ${to.ts}`);

          // ICMP echo: valid checksum, request one way, reply the other, payload of the recorded ping size
          assert.equal(inner.protocol, 1, `${where}: ICMP`);
          assert.equal(internetChecksum(inner.payload), 0, `${where}: ICMP checksum`);
          assert.equal(inner.payload[0], sa === i2r ? 8 : 0, `${where}: echo request / reply`);
          assert.equal(inner.payload.length - 8, fx.sas.capture.pingSizes[p.seq - 1], `${where}: ping size`);
          echo.set(`${p.spi} ${p.seq}`, inner.payload);

          // an independent decryption gives the same inner packet, then pad 1, 2, 3, …, pad length, next header
          const plain = nobleOpen(sa, p);
          const pad = plain[plain.length - 2]!;
          assert.equal(plain[plain.length - 1], r.nextHeader);
          assert.equal(toHex(plain.subarray(0, plain.length - 2 - pad)), toHex(r.packet), `${where}: noble's plaintext`);
          assert.deepEqual(Array.from(plain.subarray(plain.length - 2 - pad, plain.length - 2)), Array.from({ length: pad }, (_, i) => i + 1));
          assert.equal(p.bytes.length - ESP_OVERHEAD - 2 - pad, r.packet.length);

          // what the ESP check printed for this frame when the fixture was recorded
          const ref = fx.reference.get(p.frame);
          assert.ok(ref, `${where}: esp-decrypt.txt has no line for this frame`);
          assert.deepEqual(
            { spi: p.spi, seq: Number(r.seq), nextHeader: r.nextHeader, pad, src: inner.src, dst: inner.dst, protocol: inner.protocol, length: r.packet.length },
            ref,
            `${where}: esp-decrypt.txt`,
          );
        }
        assert.equal(fx.reference.size, fx.esp.length, "the ESP check saw the same ESP packets");

        // each reply answers its request: same identifier, sequence and data
        for (let seq = 1; seq <= fx.sas.capture.pings; seq++) {
          const request = echo.get(`${i2r.spi} ${seq}`)!;
          const reply = echo.get(`${r2i.spi} ${seq}`)!;
          assert.equal(toHex(reply.subarray(4)), toHex(request.subarray(4)), `ping ${seq}: reply echoes the request`);
        }
        for (const sa of sas) assert.equal(inbound.get(sa.spi)!.seq, BigInt(fx.sas.capture.pings));
      } finally {
        destroyAll(inbound);
      }
    });

    test("given strongSwan's sequence number and IV, sluice seals each inner packet to the very bytes strongSwan sent", () => {
      // libipsec's IV is the 64-bit sequence number XOR a random per-SA mask (its iv_gen_seq);
      // with that IV the ESP packet is fully determined: same padding 1, 2, 3, …, same tag
      const inbound = inboundSas(sas);
      const outbound = new Map(sas.map((sa) => [sa.spi, new OutboundSa({ spi: sa.spi, key: sa.key, salt: sa.salt, esn: sa.json.esn })]));
      try {
        const masks = new Map<number, Set<bigint>>();
        for (const p of fx.esp) {
          const r = inbound.get(p.spi)!.open(p.bytes);
          assert.equal(r.status, "ok");
          const iv = viewOf(p.bytes).getBigUint64(8);
          const again = outbound.get(p.spi)!.seal(r.packet!, r.nextHeader, { seq: BigInt(p.seq), iv });
          assert.equal(toHex(again), toHex(p.bytes), `frame ${p.frame}: sluice's sealing differs from strongSwan's`);
          masks.set(p.spi, (masks.get(p.spi) ?? new Set()).add(iv ^ BigInt(p.seq)));
        }
        for (const [spi, set] of masks) assert.equal(set.size, 1, `SPI ${spi.toString(16)}: IV = seq XOR one mask`);
      } finally {
        destroyAll(inbound);
        for (const sa of outbound.values()) sa.destroy();
      }
    });

    test("a second pass over the capture is refused as replay, and leaves the window as it was", () => {
      for (const window of [64, 1024]) {
        const inbound = inboundSas(sas, window);
        try {
          for (const p of fx.esp) assert.equal(inbound.get(p.spi)!.open(p.bytes).status, "ok");
          for (const p of fx.esp) {
            const r = inbound.get(p.spi)!.open(p.bytes);
            assert.ok(r.status === "replay" || r.status === "too-old", `frame ${p.frame}: ${r.status} (window ${window})`);
            assert.equal(r.packet, undefined);
          }
          for (const sa of sas) assert.equal(inbound.get(sa.spi)!.seq, BigInt(fx.sas.capture.pings));
        } finally {
          destroyAll(inbound);
        }
      }
    });

    test("the capture opens in reverse order too (all inside the window), then replays", () => {
      const inbound = inboundSas(sas, 64);
      try {
        const reversed = [...fx.esp].reverse();
        for (const p of reversed) assert.equal(inbound.get(p.spi)!.open(p.bytes).status, "ok", `frame ${p.frame}`);
        for (const p of reversed) assert.equal(inbound.get(p.spi)!.open(p.bytes).status, "replay", `frame ${p.frame}`);
      } finally {
        destroyAll(inbound);
      }
    });

    test("a corrupted packet is refused as auth and does not move the window; the other SA refuses them all", () => {
      const inbound = inboundSas(sas);
      try {
        for (const p of fx.esp) {
          for (const at of [9, 16, p.bytes.length - 1]) { // IV, ciphertext, ICV
            const bad = p.bytes.slice();
            bad[at] ^= 0x01;
            assert.equal(inbound.get(p.spi)!.open(bad).status, "auth", `frame ${p.frame}, byte ${at} flipped`);
          }
          const other = inbound.get(p.spi === i2r.spi ? r2i.spi : i2r.spi)!;
          assert.equal(other.open(p.bytes).status, "unknown-sa", `frame ${p.frame} under the other direction's SA`);
          assert.equal(inbound.get(p.spi)!.open(p.bytes).status, "ok", `frame ${p.frame} still opens after the forgeries`);
        }
      } finally {
        destroyAll(inbound);
      }
    });
  });
}

// ------------------------------------------------------------------ the reader itself

describe("capture reader", () => {
  const fx = loadFixture("");
  const first = fx.esp[0]!;
  const ethernet = fx.capture.records[first.frame - 1]!;
  const ip = ipPacket(ethernet.linktype, ethernet.data)!;

  test("Linux cooked v1 / v2 and raw IP frames give the same datagram as Ethernet", () => {
    const sll = concat(Uint8Array.from([0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00]), ip);
    const sll2 = concat(Uint8Array.from([0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 1, 2, 3, 4, 5, 6, 0, 0]), ip);
    const expected = udpOf(ip, 0)!;
    for (const [linkType, data] of [[LINKTYPE_LINUX_SLL, sll], [LINKTYPE_LINUX_SLL2, sll2], [LINKTYPE_RAW, ip], [LINKTYPE_IPV4, ip]] as const) {
      const l3 = ipPacket(linkType, Buffer.from(data));
      assert.ok(l3, `link type ${linkType}`);
      assert.deepEqual(udpOf(l3, 0), expected, `link type ${linkType}`);
    }
    const arp = concat(ethernet.data.subarray(0, 12), Uint8Array.from([0x08, 0x06]), new Uint8Array(28));
    assert.equal(ipPacket(LINKTYPE_ETHERNET, Buffer.from(arp)), null);
  });

  test("on port 4500: one 0xFF byte is a NAT keepalive, four zero bytes mark IKE, anything else is ESP", () => {
    const d = udpOf(ip, 0)!;
    assert.equal(classify(d), "esp");
    assert.equal(classify({ ...d, payload: Uint8Array.of(0xff) }), "nat-keepalive");
    assert.equal(classify({ ...d, payload: concat(new Uint8Array(4), d.payload) }), "ike");
    assert.equal(classify({ ...d, srcPort: 500, dstPort: 500 }), "ike");
    assert.equal(classify({ ...d, srcPort: 53, dstPort: 53 }), "other");
  });

  test("both fixtures' formats read to the same kind of frames; a cut-off file is an error", () => {
    const tcpdump = loadFixture("tcpdump/");
    assert.equal(fx.capture.format, "pcapng");
    assert.equal(tcpdump.capture.format, "pcap");
    const file = readFileSync(fixturePath("tcpdump/capture.pcap"));
    assert.throws(() => parsePcap(file.subarray(0, file.length - 3), { strict: true }), /runs past the end/);
    assert.equal(parsePcap(file.subarray(0, file.length - 3)).records.length, tcpdump.capture.records.length - 1, "without strict, the cut record is left out");
    const ng = readFileSync(fixturePath("capture.pcap"));
    assert.throws(() => parsePcap(ng.subarray(0, ng.length - 4), { strict: true }), /pcapng/);
  });
});
