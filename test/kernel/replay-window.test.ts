// Proves the anti-replay window (assembly/replay.ts: RFC 4303 §3.4.3 with the
// RFC 6479 ring bitmap and RFC 4303 Appendix A ESN inference) decides exactly
// as a plain reference model does — a Set of accepted full sequence numbers
// plus the window's top — for windows of 64…65536 over random, reordered,
// duplicated and jumping sequences, with and without ESN and across 2^32;
// plus numbered edge cases; and that the ESP path (InboundSa.open) checks the
// window before decrypting and commits it only after the ICV verified.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { validateSa, writeSaRecord, recordSize } from "../../src/kernel/saRecord.js";
import { SA_SEQ } from "../../src/kernel/layout.js";
import { PACKET_STATUSES } from "../../src/kernel/status.js";
import { OutboundSa, InboundSa } from "../../src/esp.js";
import { rawKernel, Rng, SEED, type RawKernel } from "../helpers.js";

const rng = new Rng(SEED ^ 0x4e91);
const seedNote = `(SLUICE_TEST_SEED=${SEED})`;
const U32 = 0xffffffffn;
const TWO32 = 1n << 32n;
const U64 = (1n << 64n) - 1n;

type Status = "ok" | "replay" | "too-old";

/** The reference: accepted iff nonzero and above the top, or inside the window and unseen. */
class Model {
  top: bigint;
  readonly window: bigint;
  private seen = new Set<bigint>();
  private steps = 0;

  constructor(window: number, top = 0n) {
    this.window = BigInt(window);
    this.top = top;
  }

  accept(seq: bigint): Status {
    if (seq === 0n) return "too-old";
    if (seq > this.top) {
      this.top = seq;
      this.seen.add(seq);
      if (++this.steps % 4096 === 0) this.prune();
      return "ok";
    }
    if (this.top - seq >= this.window) return "too-old";
    if (this.seen.has(seq)) return "replay";
    this.seen.add(seq);
    return "ok";
  }

  private prune(): void {
    for (const s of this.seen) if (this.top - s >= this.window) this.seen.delete(s);
  }
}

/** One SA record in a raw kernel memory, driven through replay_accept. */
class KernelWindow {
  private readonly view: DataView;

  constructor(readonly raw: RawKernel, readonly at: number, readonly esn: boolean) {
    this.view = raw.view(); // the raw memory never grows
  }

  accept(seq: bigint): Status {
    const code = this.raw.kernel.replay_accept(this.at, Number(seq & U32));
    const name = PACKET_STATUSES[code];
    assert.ok(name === "ok" || name === "replay" || name === "too-old", `replay_accept returned ${code}`);
    return name;
  }

  check(seqLow: bigint): Status {
    return PACKET_STATUSES[this.raw.kernel.replay_check(this.at, Number(seqLow & U32))] as Status;
  }

  /** The full number the last check inferred (i64 → u64). */
  checkedSeq(): bigint {
    return BigInt.asUintN(64, this.raw.kernel.replay_checked_seq());
  }

  get top(): bigint {
    return this.view.getBigUint64(this.at + SA_SEQ, true);
  }
}

const raw = rawKernel(64); // 4 MiB: room for many records
let heap = 1024;

function newWindow(window: number, esn = false, startTop = 0n): KernelWindow {
  const spec = validateSa({ spi: 1, key: new Uint8Array(32), salt: new Uint8Array(4), esn }, window, startTop);
  const size = recordSize(spec);
  if (heap + size > raw.memory.buffer.byteLength) heap = 1024;
  const at = heap;
  heap = (heap + size + 63) & ~63;
  raw.bytes().fill(0, at, at + size);
  writeSaRecord(raw.bytes(), raw.view(), at, spec);
  return new KernelWindow(raw, at, esn);
}

/** Feeds seqs to both; for ESN only numbers RFC 4303 A.2 can infer (inside [top - W + 1, top + 2^31)) are fed. */
function run(win: KernelWindow, model: Model, seqs: Iterable<bigint>, label: string): { fed: number; counts: Record<Status, number> } {
  const counts: Record<Status, number> = { ok: 0, replay: 0, "too-old": 0 };
  let fed = 0;
  for (const seq of seqs) {
    if (win.esn && (seq < 1n || seq > U64 || seq + model.window <= model.top || seq - model.top >= 1n << 31n)) continue;
    if (!win.esn && (seq < 0n || seq > U32)) continue;
    const expected = model.accept(seq);
    const got = win.accept(seq);
    fed++;
    counts[expected]++;
    if (got !== expected) assert.fail(`${label}: seq ${seq} (top before ${win.top}) gave ${got}, model ${expected} ${seedNote}`);
    if (win.esn && expected !== "too-old" && win.checkedSeq() !== seq) {
      assert.fail(`${label}: seq ${seq} was inferred as ${win.checkedSeq()} ${seedNote}`);
    }
    if (win.top !== model.top) assert.fail(`${label}: top ${win.top}, model ${model.top} after seq ${seq}`);
  }
  return { fed, counts };
}

// Sequence generators. `base` is the starting top; numbers are full (64-bit) sequence numbers.

function* randomWalk(base: bigint, window: number, n: number): Generator<bigint> {
  let top = base;
  const w = BigInt(window);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    let seq: bigint;
    if (r < 45) seq = top + BigInt(rng.range(1, 4)); // mostly forward
    else if (r < 85) seq = top - BigInt(rng.int(Number(w) + Number(w) / 2)); // behind, inside and just outside the window
    else if (r < 95) seq = top + BigInt(rng.range(1, window * 3)); // jumps around the window size
    else if (r < 99) seq = top + BigInt(rng.range(1, 1 << 20)); // big jumps
    else seq = 0n;
    if (seq > top) top = seq;
    yield seq;
  }
}

function shuffledChunks(base: bigint, window: number, n: number): bigint[] {
  const seqs: bigint[] = [];
  for (let i = 1; i <= n; i++) seqs.push(base + BigInt(i));
  const out: bigint[] = [];
  for (let i = 0; i < seqs.length;) {
    const size = rng.range(1, Math.min(2 * window, 3000));
    out.push(...rng.shuffle(seqs.slice(i, i + size)));
    i += size;
  }
  return out;
}

function withDuplicates(seqs: bigint[], window: number): bigint[] {
  const out: bigint[] = [];
  for (const s of seqs) {
    out.push(s);
    if (rng.int(5) === 0 && out.length > 1) out.push(out[out.length - 1 - rng.int(Math.min(out.length, window + window / 4))]!);
    if (rng.int(50) === 0) out.push(s); // immediate duplicate
  }
  return out;
}

function* bigJumps(base: bigint, window: number, n: number): Generator<bigint> {
  const ringBits = 64 * ringWords(window);
  const jumps = [window - 1, window, window + 1, window + 63, window + 64, 2 * window, ringBits - 1, ringBits, ringBits + 1, ringBits + 64, 10 * window, 1 << 24];
  let top = base;
  for (let i = 0; i < n; i++) {
    // A short run forward, then a jump, then some stragglers from before it.
    for (let k = 0; k < 5; k++) yield ++top;
    const before = top;
    top += BigInt(jumps[rng.int(jumps.length)]!);
    yield top;
    for (let k = 0; k < 6; k++) yield before - BigInt(rng.int(window + 8));
    for (let k = 0; k < 3; k++) yield top - BigInt(rng.int(window + 8));
  }
}

function ringWords(window: number): number {
  let words = 1;
  while (words < window / 64 + 1) words *= 2;
  return words;
}

describe("replay window vs the reference model (raw kernel, replay_accept)", () => {
  const configs: { window: number; n: number }[] = [
    { window: 64, n: 20000 },
    { window: 192, n: 8000 },
    { window: 1024, n: 20000 },
    { window: 8192, n: 30000 },
  ];
  for (const esn of [false, true]) {
    for (const { window, n } of configs) {
      test(`W=${window}, ESN ${esn ? "on" : "off"}: random, reordered, duplicated, jumping`, () => {
        const starts: bigint[] = esn
          ? [0n, TWO32 - BigInt(rng.range(1, 3 * window)), (5n << 32n) - BigInt(rng.range(1, window))]
          : [0n, BigInt(rng.range(1, 1 << 30))];
        let fedTotal = 0;
        const totals: Record<Status, number> = { ok: 0, replay: 0, "too-old": 0 };
        for (const start of starts) {
          const pattern = (name: string, make: (base: bigint) => Iterable<bigint>): void => {
            const win = newWindow(window, esn, start);
            const model = new Model(window, start);
            const { fed, counts } = run(win, model, make(start), `${name} from ${start}`);
            fedTotal += fed;
            for (const k of Object.keys(counts) as Status[]) totals[k] += counts[k];
            if (esn && start > 0n) assert.ok(model.top >= TWO32 * (start >> 32n) + TWO32, `${name}: the sequence crossed a 2^32 boundary (top ${model.top})`);
          };
          pattern("random walk", (b) => randomWalk(b, window, n));
          pattern("shuffled chunks", (b) => shuffledChunks(b, window, n));
          pattern("shuffled chunks with duplicates", (b) => withDuplicates(shuffledChunks(b, window, n), window));
          pattern("big jumps", (b) => bigJumps(b, window, Math.ceil(n / 20)));
        }
        // The streams really exercised every outcome.
        assert.ok(fedTotal > n, `fed ${fedTotal}`);
        assert.ok(totals.ok > 0 && totals.replay > 0, JSON.stringify(totals));
        if (!esn) assert.ok(totals["too-old"] > 0, JSON.stringify(totals));
      });
    }
  }

  test("W=65536 once, with and without ESN", () => {
    for (const esn of [false, true]) {
      const start = esn ? TWO32 - 70000n : 0n;
      const win = newWindow(65536, esn, start);
      const model = new Model(65536, start);
      const seqs = withDuplicates(shuffledChunks(start, 65536, 150000), 65536);
      const { counts } = run(win, model, [...seqs, ...bigJumps(model.top + 150000n, 65536, 100)], `W=65536 ESN ${esn}`);
      assert.ok(counts.replay > 0);
      if (esn) assert.ok(model.top > TWO32);
    }
  });
});

describe("numbered edge cases", () => {
  // [seq, expected, why] — checked against the model as well, so the table and the model vouch for each other.
  const w64: [bigint, Status, string][] = [
    [0n, "too-old", "0 is never a valid sequence number"],
    [1n, "ok", "first packet"],
    [1n, "replay", "same again"],
    [3n, "ok", "skip one"],
    [2n, "ok", "the skipped one, late"],
    [2n, "replay", ""],
    [64n, "ok", "top 64"],
    [1n, "replay", "64 - 1 = 63 < W: inside, seen"],
    [65n, "ok", "top 65"],
    [1n, "too-old", "65 - 1 = W: just left of the window"],
    [2n, "replay", "65 - 2 = 63: the left edge, seen"],
    [4n, "ok", "the left part of the window, unseen"],
    [129n, "ok", "jump of exactly W"],
    [65n, "too-old", "top - W"],
    [66n, "ok", "top - W + 1: the left edge"],
    [66n, "replay", ""],
    [1129n, "ok", "jump of 1000 > W"],
    [1066n, "ok", "top - W + 1"],
    [1065n, "too-old", "top - W"],
    [1090n, "ok", "same ring bit as 66 (1090 - 66 = 8 · 128): must have been cleared"],
    [1089n, "ok", "same ring bit as 65"],
    [1090n, "replay", ""],
    [1128n, "ok", ""],
    [1129n, "replay", "the top itself"],
    [1130n, "ok", "top + 1"],
    [1129n, "replay", ""],
    [0xffffffffn, "ok", "the last 32-bit number"],
    [0xffffffffn - 63n, "ok", "top - W + 1"],
    [0xffffffffn - 64n, "too-old", "top - W"],
    [0xffffffffn, "replay", ""],
    [0n, "too-old", ""],
  ];

  test("W=64, a scripted sequence", () => {
    const win = newWindow(64);
    const model = new Model(64);
    w64.forEach(([seq, expected, why], i) => {
      assert.equal(model.accept(seq), expected, `#${i + 1} model: ${seq} (${why})`);
      assert.equal(win.accept(seq), expected, `#${i + 1} kernel: ${seq} (${why})`);
    });
  });

  test("W=64 (a ring of 2 words): word boundaries and the ring wrapping", () => {
    const script: [bigint, Status][] = [
      [63n, "ok"], [64n, "ok"], [127n, "ok"], [128n, "ok"], [63n, "too-old"], [65n, "ok"], [64n, "too-old"],
      [191n, "ok"], [128n, "replay"], [129n, "ok"], [127n, "too-old"], [192n, "ok"], [384n, "ok"], [321n, "ok"],
      [320n, "too-old"], [383n, "ok"], [385n, "ok"], [448n, "ok"], [385n, "replay"], [384n, "too-old"], [386n, "ok"],
    ];
    const win = newWindow(64);
    const model = new Model(64);
    script.forEach(([seq, expected], i) => {
      assert.equal(model.accept(seq), expected, `#${i + 1} model: ${seq}`);
      assert.equal(win.accept(seq), expected, `#${i + 1} kernel: ${seq}`);
    });
  });

  for (const window of [64, 192, 1024]) {
    test(`W=${window}: the ring wraps around many times (in order, then replays at W/2 and W behind)`, () => {
      const win = newWindow(window);
      const w = BigInt(window);
      const n = BigInt(Math.max(60 * 64 * ringWords(window), 20000));
      for (let s = 1n; s <= n; s++) {
        if (win.accept(s) !== "ok") assert.fail(`${s} refused`);
        if (s > w / 2n && win.accept(s - w / 2n) !== "replay") assert.fail(`${s - w / 2n} not a replay at top ${s}`);
        if (s >= w && win.accept(s - w + 1n) !== "replay") assert.fail(`${s - w + 1n} (left edge) not a replay at top ${s}`);
        if (s > w && win.accept(s - w) !== "too-old") assert.fail(`${s - w} not too old at top ${s}`);
      }
    });
  }

  for (const window of [64, 192, 1024, 8192, 65536]) {
    test(`W=${window}: a full window, then jumps of W-1 … 10W clear exactly the bits they should`, () => {
      const ringBits = 64 * ringWords(window);
      const jumps = window === 65536 ? [window + 1] : [1, 63, 64, 65, window - 1, window, window + 1, ringBits - 1, ringBits, ringBits + 1, 10 * window + 13];
      for (const jump of jumps) {
        const T = BigInt(3 * ringBits + rng.int(ringBits));
        const w = BigInt(window);
        const win = newWindow(window, false, T - w);
        for (let s = T - w + 1n; s <= T; s++) assert.equal(win.accept(s), "ok");
        const top = T + BigInt(jump);
        assert.equal(win.accept(top), "ok");
        const failures: string[] = [];
        for (let s = top - w - 2n; s < top; s++) {
          const expected: Status = s <= top - w ? "too-old" : s <= T ? "replay" : "ok";
          const got = win.accept(s);
          if (got !== expected) failures.push(`${s}: ${got}, expected ${expected}`);
        }
        assert.deepEqual(failures.slice(0, 5), [], `jump ${jump} from ${T}`);
      }
    });
  }

  test("replay_check does not commit; replay_commit does", () => {
    const win = newWindow(64);
    assert.equal(win.check(5n), "ok");
    assert.equal(win.check(5n), "ok", "still unseen");
    assert.equal(win.top, 0n);
    raw.kernel.replay_commit(win.at, 5n);
    assert.equal(win.top, 5n);
    assert.equal(win.check(5n), "replay");
    assert.equal(win.check(4n), "ok");
  });

  test("ESN: crossing 2^32 and the RFC 4303 Appendix A inference", () => {
    const win = newWindow(64, true, TWO32 - 10n);
    const steps: [bigint, Status, bigint][] = [
      // [low 32 bits on the wire, status, full number inferred]
      [0xfffffff8n, "ok", TWO32 - 8n],
      [2n, "ok", TWO32 + 2n],
      [0xfffffff9n, "ok", TWO32 - 7n],
      [0xfffffff8n, "replay", TWO32 - 8n],
      [0n, "ok", TWO32],
      [0xffffffc3n, "ok", TWO32 - 61n], // top - W + 1, across the boundary
      [0x7fffffffn, "ok", TWO32 + 0x7fffffffn], // a jump of almost 2^31
      [0x7fffffc0n, "ok", TWO32 + 0x7fffffc0n], // top - W + 1: the new left edge
    ];
    steps.forEach(([low, status, full], i) => {
      assert.equal(win.accept(low), status, `#${i + 1}: low ${low.toString(16)}`);
      assert.equal(win.checkedSeq(), full, `#${i + 1}: inferred number`);
    });
    assert.equal(win.top, TWO32 + 0x7fffffffn);
    // Left of the window the low bits mean the next epoch (A.2): top - W is inferred as 2^32 later.
    assert.equal(win.check(0x7fffffbfn), "ok");
    assert.equal(win.checkedSeq(), 2n * TWO32 + 0x7fffffbfn);
  });

  test("ESN: below zero and beyond 2^64 - 1 there is no number: too-old", () => {
    const fresh = newWindow(64, true, 0n);
    assert.equal(fresh.accept(0xffffffffn), "too-old", "would be -1");
    assert.equal(fresh.accept(0xffffffc2n), "too-old", "would be -62");
    assert.equal(fresh.accept(0n), "too-old", "0");
    assert.equal(fresh.accept(1n), "ok");
    assert.equal(fresh.checkedSeq(), 1n);
    const low = newWindow(64, true, 10n);
    assert.equal(low.accept(0xfffffff0n), "too-old");
    assert.equal(low.accept(5n), "ok");
    const end = newWindow(64, true, U64 - 10n);
    assert.equal(end.accept(0xfffffffbn), "ok");
    assert.equal(end.checkedSeq(), U64 - 4n);
    assert.equal(end.accept(3n), "too-old", "would be 2^64 + 3");
    assert.equal(end.accept(0xfffffff0n), "ok", "inside the window");
    assert.equal(end.checkedSeq(), U64 - 15n);
    assert.equal(end.accept(0xffffffffn), "ok");
    assert.equal(end.top, U64);
    assert.equal(end.accept(0xffffffffn), "replay");
  });
});

describe("the ESP path applies the window (InboundSa.open)", () => {
  for (const esn of [false, true]) {
    test(`300 packets, reordered and duplicated, W=64, ESN ${esn ? "on" : "off"}`, () => {
      const sa = { spi: 0x5a5a, key: rng.bytes(32), salt: rng.bytes(4), esn };
      const out = new OutboundSa(sa);
      const inb = new InboundSa({ ...sa, replayWindow: 64 });
      const packets = Array.from({ length: 305 }, () => out.seal(rng.bytes(rng.range(0, 120))));
      const model = new Model(64);
      const order = withDuplicates(shuffledChunks(0n, 48, 300), 64);
      const counts: Record<string, number> = {};
      for (const seq of order) {
        // With ESN a number left of the window is inferred into the next 2^32 epoch
        // (RFC 4303 Appendix A.2), so its ICV cannot verify: auth rather than too-old.
        const modelStatus = model.accept(seq);
        const expected = esn && modelStatus === "too-old" ? "auth" : modelStatus;
        const r = inb.open(packets[Number(seq) - 1]!);
        counts[r.status] = (counts[r.status] ?? 0) + 1;
        if (r.status !== expected) assert.fail(`seq ${seq}: ${r.status}, model ${expected} ${seedNote}`);
        if (expected === "ok") assert.equal(r.seq, seq);
        assert.equal(inb.seq, model.top);
      }
      assert.ok(counts.ok! > 100 && counts.replay! > 0, JSON.stringify(counts));

      const top = inb.seq;
      const corruptTag = (p: Uint8Array): Uint8Array => {
        const c = p.slice();
        c[c.length - 1] ^= 0x40;
        return c;
      };
      // Checked before decrypting: a replayed or too-old packet with a broken tag reports replay / too-old.
      assert.equal(inb.open(corruptTag(packets[Number(top) - 1]!)).status, "replay");
      assert.equal(inb.open(corruptTag(packets[0]!)).status, esn ? "auth" : "too-old");

      // Committed only after the tag verified: a forgery with a fresh number does not use it up.
      const fresh = packets[300]!; // seq 301, never delivered
      assert.equal(inb.open(corruptTag(fresh)).status, "auth");
      assert.equal(inb.seq, top, "a forgery did not move the window");
      assert.equal(inb.open(fresh).status, "ok", "the genuine packet with that number still opens");
      assert.equal(inb.open(fresh).status, "replay");

      // A forgery far in the future does not move the window either.
      const future = packets[301]!.slice(); // seq 302, rewritten to 302 + 10000
      new DataView(future.buffer).setUint32(4, 302 + 10000);
      assert.equal(inb.open(future).status, "auth");
      assert.equal(inb.seq, 301n);
      for (const i of [302, 303, 304]) assert.equal(inb.open(packets[i]!).status, "ok", `seq ${i + 1}`);
      assert.equal(inb.open(packets[301]!).status, "ok", "seq 302, late but inside the window");
      out.destroy();
      inb.destroy();
    });
  }
});
