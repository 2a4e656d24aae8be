// A quick measure of the addon's UDP batches over loopback: how many packets
// per second sendmmsg and recvmmsg move in 64 × 1420 B batches, slot to slot
// in a shared WebAssembly memory. Not a benchmark framework: a sanity number
// for the I/O budget next to the crypto's (~100 µs per batch of 64 × 1420 B).
//   node native/scripts/loopback-rate.mjs [seconds per case, default 1.5]
// Needs the compiled TypeScript (dist/) and the built addon.
import { ADDRESS_BYTES, encodeAddress } from "../../dist/src/io/address.js";
import { loadNativeIo, nativeIoUnavailableReason } from "../../dist/src/io/native.js";

const io = loadNativeIo();
if (!io) {
  console.error(`native I/O unavailable: ${nativeIoUnavailableReason}`);
  process.exit(1);
}
const seconds = Number(process.argv[2] ?? 1.5);
const BATCH = 64;
const SIZE = 1420;
const SLOT = 2048;
const HEADROOM = 64;
const memory = new WebAssembly.Memory({ initial: 512, maximum: 512, shared: true });
const buffer = memory.buffer;

function run(name, { gso = false } = {}) {
  const rx = io.udpOpen(4, "127.0.0.1", 0, { gro: gso, recvBufferSize: 32 << 20 });
  const tx = io.udpOpen(4, "127.0.0.1", 0, { sendBufferSize: 32 << 20 });
  // Out of slots 0..63, into slots 64..127 (or one 96 KiB region per super-packet with GRO).
  const sendOffsets = Int32Array.from({ length: BATCH }, (_, i) => i * SLOT + HEADROOM);
  const sendLengths = new Int32Array(BATCH).fill(SIZE);
  const to = new Uint8Array(BATCH * ADDRESS_BYTES);
  for (let i = 0; i < BATCH; i++) encodeAddress(to, i, { family: 4, address: "127.0.0.1", port: rx.port });
  const recvCapacity = gso ? 96 * 1024 : SLOT - HEADROOM;
  const recvOffsets = Int32Array.from({ length: BATCH }, (_, i) => (gso ? 1 << 20 : BATCH * SLOT) + i * (gso ? recvCapacity : SLOT) + HEADROOM);
  const lengths = new Int32Array(BATCH);
  const segments = new Int32Array(BATCH);
  const from = new Uint8Array(BATCH * ADDRESS_BYTES);
  // With GSO the 64 packets go as two messages of 32 back to back (a UDP
  // super-packet stays under 64 KiB).
  const gsoOffsets = new Int32Array([2 << 20, (2 << 20) + 32 * SIZE]);
  const gsoLengths = new Int32Array([32 * SIZE, 32 * SIZE]);

  let sent = 0, received = 0, sendNs = 0n, recvNs = 0n, calls = 0, lost = 0;
  const cpu0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    let t = process.hrtime.bigint();
    const n = gso
      ? io.udpSendBatch(tx.fd, buffer, gsoOffsets, gsoLengths, to, 2, { gsoSize: SIZE }) * 32
      : io.udpSendBatch(tx.fd, buffer, sendOffsets, sendLengths, to, BATCH);
    let u = process.hrtime.bigint();
    sendNs += u - t;
    sent += n;
    // Loopback delivers inside sendmmsg: drain what arrived.
    let got = 0;
    for (;;) {
      t = process.hrtime.bigint();
      const r = io.udpRecvBatch(rx.fd, buffer, recvOffsets, recvCapacity, lengths, from, BATCH, segments);
      u = process.hrtime.bigint();
      recvNs += u - t;
      calls++;
      if (r === 0) break;
      for (let i = 0; i < r; i++) got += segments[i] > 0 ? Math.ceil(lengths[i] / segments[i]) : 1;
      if (got >= n) break;
    }
    received += got;
    lost += n - got;
  }
  const cpu = process.cpuUsage(cpu0);
  const pps = (count, ns) => (ns > 0n ? (count / (Number(ns) / 1e9)) : 0);
  const result = {
    case: name,
    sent, received, lost,
    sendPps: Math.round(pps(sent, sendNs)),
    recvPps: Math.round(pps(received, recvNs)),
    roundTripPps: Math.round(received / ((Number(sendNs + recvNs)) / 1e9)),
    sendGbps: +(pps(sent, sendNs) * SIZE * 8 / 1e9).toFixed(2),
    recvGbps: +(pps(received, recvNs) * SIZE * 8 / 1e9).toFixed(2),
    usPerBatchSend: +(Number(sendNs) / 1e3 / (sent / BATCH)).toFixed(1),
    usPerBatchRecv: +(Number(recvNs) / 1e3 / (received / BATCH)).toFixed(1),
    recvCalls: calls,
    cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
  };
  io.close(rx.fd);
  io.close(tx.fd);
  return result;
}

const probe = io.udpOpen(4, "127.0.0.1", 0);
io.close(probe.fd);
const results = [run("sendmmsg/recvmmsg 64 x 1420 B")];
if (probe.gso && probe.gro) results.push(run("UDP GSO send / GRO recv, 64 x 1420 B", { gso: true }));
console.table(results);
