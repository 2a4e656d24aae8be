// Static-key peers on AES-GCM (RFC 4106): two `sluice up` processes with
// `cipher = "aes256gcm16"` (and "aes128gcm16") in their [[peer]]s
// (test/fixtures/twoEndpoints.ts). Pings cross both ways over IPv4 and IPv6
// up to MTU-sized packets; every ESP packet on the wire opens with
// node:crypto as RFC 4106 defines it (nonce = salt ‖ IV, AAD = SPI ‖ seq
// with ESN's high half, 16-byte ICV) under the keys the README's derivation
// gives for that cipher, and holds an IP packet; the io-path line says where
// AES ran; no key appears in any log.
import assert from "node:assert/strict";
import { createDecipheriv } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { missingRequirements, TwoEndpoints, type Capture } from "../fixtures/twoEndpoints.js";
import { espPackets } from "../fixtures/pcap.js";
import { deriveKeys } from "../fixtures/espForge.js";

const skip = missingRequirements();
const MTU = 1400;

/** Opens one ESP packet per RFC 4106 with node:crypto alone; null when it does not authenticate. */
function openRfc4106(packet: Buffer, key: Buffer, salt: Buffer, seqHigh: number): Buffer | null {
  const aad = Buffer.alloc(12);
  packet.copy(aad, 0, 0, 4);
  aad.writeUInt32BE(seqHigh, 4);
  packet.copy(aad, 8, 4, 8);
  const decipher = createDecipheriv(key.length === 16 ? "aes-128-gcm" : "aes-256-gcm", key, Buffer.concat([salt, packet.subarray(8, 16)]), { authTagLength: 16 });
  decipher.setAAD(aad); // the endpoints run ESN (esn defaults to true)
  decipher.setAuthTag(packet.subarray(packet.length - 16));
  const plain = decipher.update(packet.subarray(16, packet.length - 16));
  try {
    return Buffer.concat([plain, decipher.final()]);
  } catch {
    return null;
  }
}

for (const cipher of ["aes256gcm16", "aes128gcm16"] as const) {
  describe(`endpoint: static keys on ${cipher}`, { skip: skip ?? false }, () => {
    let f: TwoEndpoints;
    let wire: Capture;

    before(async () => {
      f = await TwoEndpoints.create({ cipher });
      wire = await f.capture("a", f.veth.a, ["udp", "port", "4500"], { name: "wire" });
    });

    after(async () => {
      await f?.cleanup();
    });

    test("ping both ways over IPv4 and IPv6, empty to MTU-sized", async () => {
      const target = { a: { 4: f.inner.a4, 6: f.inner.a6 }, b: { 4: f.inner.b4, 6: f.inner.b6 } };
      for (const [from, to] of [["a", "b"], ["b", "a"]] as const) {
        for (const family of [4, 6] as const) {
          let ok = false;
          for (let i = 0; i < 10 && !ok; i++) ok = (await f.ping(from, target[to][family], { count: 1, wait: 1 })).received === 1;
          assert.ok(ok, `no answer from ${to} over IPv${family} through ${cipher}`);
          for (const size of [0, 56, family === 4 ? MTU - 28 : MTU - 48]) {
            const result = await f.ping(from, target[to][family], { count: 3, interval: 0.2, size, dontFragment: true });
            assert.equal(result.received, 3, `ping -${family} -s ${size} from ${from} to ${to}: ${result.output}`);
          }
        }
      }
    });

    test("every ESP packet on the wire is RFC 4106 under the derived keys, and holds an IP packet", async () => {
      const { pcap, dropped } = await wire.stop();
      assert.equal(dropped, 0);
      const packets = espPackets(pcap).filter((p) => p.length > 1);
      assert.ok(packets.length >= 40, `${packets.length} ESP packets captured`);
      const keys = new Map([
        [f.spiAB, deriveKeys(f.secret, f.spiAB, f.spiBA, cipher)],
        [f.spiBA, deriveKeys(f.secret, f.spiBA, f.spiAB, cipher)],
      ]);
      for (const p of packets) {
        const k = keys.get(p.spi);
        assert.ok(k, `SPI 0x${p.spi.toString(16)}`);
        assert.equal(k.key.length, cipher === "aes128gcm16" ? 16 : 32);
        const esp = Buffer.from(p.payload.subarray(0, p.length));
        // IV = the 64-bit sequence number (RFC 4106 §3.1): its low half is the header's.
        assert.equal(esp.readUInt32BE(12), esp.readUInt32BE(4), `seq ${p.seq}: the IV is not the sequence number`);
        const plain = openRfc4106(esp, Buffer.from(k.key), Buffer.from(k.salt), esp.readUInt32BE(8));
        assert.ok(plain !== null, `ESP packet SPI 0x${p.spi.toString(16)} seq ${p.seq} does not open as RFC 4106 ${cipher}`);
        const nextHeader = plain[plain.length - 1]!;
        const version = plain[0]! >> 4;
        assert.ok((nextHeader === 4 && version === 4) || (nextHeader === 41 && version === 6), `seq ${p.seq}: next header ${nextHeader}, IP version ${version}`);
      }
    });

    test("the io-path line says where AES-GCM runs; no key or secret in any log", () => {
      for (const side of ["a", "b"] as const) {
        const line = f.endpoint[side]!.logs().find((l) => l.event === "io-path");
        assert.ok(line, `endpoint ${side} logged no io-path line`);
        assert.ok(line.aes === "native" || line.aes === "portable", JSON.stringify(line));
        const text = f.endpoint[side]!.logs().map((l) => JSON.stringify(l)).join("\n");
        for (const form of f.secretForms()) assert.ok(!text.includes(form.text), `endpoint ${side}'s log holds ${form.what}`);
      }
    });
  });
}
