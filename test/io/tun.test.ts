// The native TUN path, in a network namespace made for this run: packets the
// kernel routes into the TUN come out of tunReadBatch into slots, and IPv4/UDP
// packets written from slots with tunWriteBatch arrive at a socket. The part
// that touches the namespace runs in a child process (this same file, started
// under `ip netns exec` with SLUICE_IO_TUN_CHILD=1), so the test runner's own
// process never changes namespace.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { HEADROOM } from "../../src/engine/layout.js";
import { ADDRESS_BYTES, decodeAddress, encodeAddress } from "../../src/io/address.js";
import { loadNativeIo, nativeIoAddonPath, nativeIoUnavailableReason, type NativeIo } from "../../src/io/native.js";
import { hasTool, ready, run, runChildInNamespace, tunDeviceSkip, useNamespace } from "../fixtures/netns.js";

const SELF = fileURLToPath(import.meta.url);
const SLOT = 2048;
const BATCH = 64;
const TUN_ADDR = "198.18.0.1"; // RFC 2544 benchmarking range, inside the namespace only
const PEER_ADDR = "198.18.0.2";
const MSG_TUN_PERM = "creating a TUN device needs CAP_NET_ADMIN (run as root)";
const MSG_TUN_MISSING = "/dev/net/tun is missing: load the tun module or run with --device /dev/net/tun";

/* ----------------------------------------------------- the child's part */

function sh(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "inherit"] });
}


function ipv4Bytes(text: string): number[] {
  return text.split(".").map(Number);
}

function checksum(bytes: Uint8Array, at: number, length: number): number {
  let sum = 0;
  for (let i = 0; i < length; i += 2) sum += (bytes[at + i]! << 8) | (bytes[at + i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Writes an IPv4/UDP packet (UDP checksum 0, allowed for IPv4) at `at`; returns its length. */
function writeUdp4(bytes: Uint8Array, at: number, src: string, sport: number, dst: string, dport: number, payload: number, seed: number): number {
  const total = 20 + 8 + payload;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.fill(0, at, at + 28);
  bytes[at] = 0x45;
  dv.setUint16(at + 2, total);
  dv.setUint16(at + 4, seed & 0xffff);
  bytes[at + 8] = 64;
  bytes[at + 9] = 17;
  bytes.set(ipv4Bytes(src), at + 12);
  bytes.set(ipv4Bytes(dst), at + 16);
  dv.setUint16(at + 10, checksum(bytes, at, 20));
  dv.setUint16(at + 20, sport);
  dv.setUint16(at + 22, dport);
  dv.setUint16(at + 24, 8 + payload);
  for (let i = 0; i < payload; i++) bytes[at + 28 + i] = (seed * 31 + i * 7) & 0xff;
  return total;
}

function payloadOk(bytes: Uint8Array, at: number, length: number, seed: number): boolean {
  for (let i = 0; i < length; i++) if (bytes[at + i] !== ((seed * 31 + i * 7) & 0xff)) return false;
  return true;
}

const payloadSize = (i: number): number => (i === 0 ? 1420 : i === 1 ? 0 : 10 + ((i * 151) % 1400));

async function child(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error("io-tun child: timed out");
    process.exit(3);
  }, 20000);
  watchdog.unref();
  const native = loadNativeIo();
  if (!native) throw new Error(`native I/O addon unavailable: ${nativeIoUnavailableReason}`);
  const shared: unknown = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true }).buffer;
  assert.ok(shared instanceof SharedArrayBuffer);
  const buffer = shared;
  const bytes = new Uint8Array(buffer);
  const at = (slot: number): number => slot * SLOT + HEADROOM;

  sh("link", "set", "lo", "up");
  const tun = native.tunOpen("sltun0");
  assert.equal(tun.name, "sltun0");
  // No IPv6 on the device: its router solicitations would only be noise here.
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${tun.name}/disable_ipv6`, "1");
  } catch {
    /* the filters below cope */
  }
  sh("addr", "add", `${TUN_ADDR}/24`, "dev", tun.name);
  sh("link", "set", tun.name, "up");

  // The same name again without multiQueue: busy, said in one line.
  assert.throws(() => native.tunOpen("sltun0"), (e: NodeJS.ErrnoException) => e.code === "EBUSY" && /busy/.test(e.message));
  assert.throws(() => native.tunOpen("a-name-longer-than-15"), { name: "RangeError" });
  // Multi-queue: one device, two queues.
  const q1 = native.tunOpen("slmq0", { multiQueue: true });
  const q2 = native.tunOpen("slmq0", { multiQueue: true });
  assert.equal(q2.name, "slmq0");
  native.close(q2.fd);
  native.close(q1.fd);
  // A kernel-chosen name.
  const auto = native.tunOpen("");
  assert.match(auto.name, /^tun\d+$/);
  native.close(auto.fd);

  // Nothing routed yet: reading returns 0 at once (EAGAIN), never blocks.
  const offsets = Int32Array.from({ length: BATCH }, (_, i) => at(i));
  const lengths = new Int32Array(BATCH);
  let drained = 0;
  while (native.tunReadBatch(tun.fd, buffer, offsets, SLOT - HEADROOM, lengths, BATCH) > 0) drained++;
  assert.ok(drained < 10);

  // 1. Kernel → TUN: 64 datagrams from a socket to an address routed into the TUN.
  const tx = native.udpOpen(4, TUN_ADDR, 0);
  const to = new Uint8Array(BATCH * ADDRESS_BYTES);
  const sendOffsets = Int32Array.from({ length: BATCH }, (_, i) => at(200 + i));
  const sendLengths = Int32Array.from({ length: BATCH }, (_, i) => payloadSize(i));
  for (let i = 0; i < BATCH; i++) {
    for (let j = 0; j < sendLengths[i]!; j++) bytes[sendOffsets[i]! + j] = (i * 31 + j * 7) & 0xff;
    encodeAddress(to, i, { family: 4, address: PEER_ADDR, port: 9 });
  }
  let sent = 0;
  while (sent < BATCH) {
    const n = native.udpSendBatch(tx.fd, buffer, sendOffsets.subarray(sent), sendLengths.subarray(sent), to.subarray(sent * ADDRESS_BYTES), BATCH - sent);
    if (n === 0) await ready(native, tx.fd, "w");
    sent += n;
  }
  const seen: number[] = [];
  let reads = 0;
  while (seen.length < BATCH) {
    const n = native.tunReadBatch(tun.fd, buffer, offsets, SLOT - HEADROOM, lengths, BATCH);
    if (n === 0) {
      await ready(native, tun.fd, "r");
      continue;
    }
    reads++;
    for (let i = 0; i < n; i++) {
      const p = offsets[i]!;
      const len = lengths[i]!;
      assert.ok(len > 0, `packet length ${len}`);
      if (bytes[p]! >> 4 !== 4 || bytes[p + 9] !== 17) continue; // not IPv4/UDP
      const dv = new DataView(buffer, p, len);
      assert.equal([...bytes.subarray(p + 12, p + 16)].join("."), TUN_ADDR);
      assert.equal([...bytes.subarray(p + 16, p + 20)].join("."), PEER_ADDR);
      assert.equal(dv.getUint16(20), tx.port);
      assert.equal(dv.getUint16(22), 9);
      const k = seen.length;
      assert.equal(len, 28 + payloadSize(k), `length of routed packet ${k}`);
      assert.ok(payloadOk(bytes, p + 28, payloadSize(k), k), `payload of routed packet ${k}`);
      seen.push(k);
    }
  }

  // 2. TUN → kernel: 64 IPv4/UDP packets written from slots arrive at a socket.
  const rx = native.udpOpen(4, TUN_ADDR, 0);
  const writeOffsets = Int32Array.from({ length: BATCH }, (_, i) => at(300 + i));
  const writeLengths = Int32Array.from({ length: BATCH }, (_, i) =>
    writeUdp4(bytes, writeOffsets[i]!, PEER_ADDR, 7777, TUN_ADDR, rx.port, payloadSize(i), i));
  let written = 0;
  while (written < BATCH) {
    const n = native.tunWriteBatch(tun.fd, buffer, writeOffsets.subarray(written), writeLengths.subarray(written), BATCH - written);
    if (n === 0) await ready(native, tun.fd, "w");
    written += n;
  }
  const recvOffsets = Int32Array.from({ length: BATCH }, (_, i) => at(400 + i));
  const recvLengths = new Int32Array(BATCH);
  const from = new Uint8Array(BATCH * ADDRESS_BYTES);
  let got = 0;
  while (got < BATCH) {
    const n = native.udpRecvBatch(rx.fd, buffer, recvOffsets.subarray(got), SLOT - HEADROOM, recvLengths.subarray(got), from.subarray(got * ADDRESS_BYTES), BATCH - got);
    if (n === 0) await ready(native, rx.fd, "r");
    got += n;
  }
  for (let i = 0; i < BATCH; i++) {
    assert.equal(recvLengths[i], payloadSize(i), `length of written packet ${i}`);
    assert.ok(payloadOk(bytes, recvOffsets[i]!, payloadSize(i), i), `payload of written packet ${i}`);
    const source = decodeAddress(from, i);
    assert.equal(source?.address, PEER_ADDR);
    assert.equal(source?.port, 7777);
  }

  // 3. A packet that is not IP: the kernel refuses it and the first-packet error throws.
  bytes.fill(0, at(500), at(500) + 40);
  assert.throws(() => native.tunWriteBatch(tun.fd, buffer, new Int32Array([at(500)]), new Int32Array([40]), 1), (e: NodeJS.ErrnoException & { index?: number }) => e.index === 0 && typeof e.code === "string");
  // And ranges outside the buffer throw before anything is written or read.
  assert.throws(() => native.tunWriteBatch(tun.fd, buffer, new Int32Array([buffer.byteLength - 10]), new Int32Array([20]), 1), { name: "RangeError" });
  assert.throws(() => native.tunReadBatch(tun.fd, buffer, new Int32Array([buffer.byteLength - 10]), 2048, lengths, 1), { name: "RangeError" });

  native.close(tx.fd);
  native.close(rx.fd);
  native.close(tun.fd);
  console.log(JSON.stringify({ ok: true, routed: seen.length, written, reads }));
}

/* ------------------------------------------------------ the test runner */


if (process.env.SLUICE_IO_TUN_CHILD === "1") {
  await child();
} else {
  describe("native TUN batches in a network namespace", { skip: tunDeviceSkip() }, () => {
    const ns = useNamespace("sl-io");

    test("kernel → TUN and TUN → kernel, 64 packets each, straight from and into slots", async () => {
      const report = await runChildInNamespace<{ ok: boolean; routed: number; written: number; reads: number }>(ns, SELF, "SLUICE_IO_TUN_CHILD", { timeout: 30000 });
      assert.deepEqual({ ok: report.ok, routed: report.routed, written: report.written }, { ok: true, routed: BATCH, written: BATCH });
    });
  });

  // Error messages that name the cause, in one line.
  const code = `import(${JSON.stringify(new URL("../../src/io/native.js", import.meta.url).href)}).then((m) => {
    const io = m.loadNativeIo();
    try { io.tunOpen("sl-denied"); console.log("opened"); } catch (e) { console.log(e.message); }
  });`;

  describe("TUN errors say what is missing", { skip: loadNativeIo() ? false : `native I/O addon unavailable: ${nativeIoUnavailableReason}` }, () => {
    test("without CAP_NET_ADMIN", async (t) => {
      if (process.getuid?.() !== 0) {
        // Already unprivileged: the error is right here.
        assert.throws(() => loadNativeIo()!.tunOpen("sl-denied"), (e: Error) => e.message === (existsSync("/dev/net/tun") ? MSG_TUN_PERM : MSG_TUN_MISSING));
        return;
      }
      if (!hasTool("setpriv")) return t.skip("setpriv (util-linux) is missing: cannot drop root for this check");
      const result = await run("setpriv", [
        "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
        process.execPath, "--input-type=module", "-e", code,
      ], { env: { ...process.env, SLUICE_IO_ADDON: nativeIoAddonPath } });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), MSG_TUN_PERM);
    });

    const unshareSkip = process.getuid?.() !== 0 ? "needs root: hides /dev/net/tun in a private mount namespace"
      : hasTool("unshare") ? false : "unshare (util-linux) is missing";
    test("without /dev/net/tun", { skip: unshareSkip }, async () => {
      // A private mount namespace with an empty /dev/net: the device is gone for this child only.
      const script = `mount -t tmpfs none /dev/net && exec "$0" --input-type=module -e "$1"`;
      const result = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script, process.execPath, code]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), MSG_TUN_MISSING);
    });
  });
}
