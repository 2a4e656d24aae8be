// Proves the TypeScript side and the WASM kernel agree on shared numbers:
// every constant of src/kernel/layout.ts that assembly/layout.ts also defines
// has the same value there, and PACKET_STATUSES (src/kernel/status.ts) lists
// the status names in the kernel's STATUS_* numbering.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as layout from "../../src/kernel/layout.js";
import { PACKET_STATUSES, statusName } from "../../src/kernel/status.js";

const source = readFileSync(new URL("../../../assembly/layout.ts", import.meta.url), "utf8");
const kernelConstants = new Map<string, number>();
for (const m of source.matchAll(/export const (\w+): \w+ = (\d+);/g)) {
  kernelConstants.set(m[1]!, Number(m[2]));
}

describe("layout constants", () => {
  test("assembly/layout.ts was parsed", () => {
    // Every `export const` line must have matched the pattern, or a constant
    // written differently (hex, an expression) would silently go unchecked.
    const declared = [...source.matchAll(/^export const (\w+)/gm)].map((m) => m[1]);
    assert.deepEqual(declared.filter((name) => !kernelConstants.has(name!)), [], "constants the pattern did not match");
    assert.ok(kernelConstants.size >= 30, `${kernelConstants.size} constants`);
    for (const name of ["SA_SEQ", "SA_BITMAP", "D_SEQ", "DESCRIPTOR_SIZE", "ESP_HEADER", "STATUS_DUMMY"]) {
      assert.ok(kernelConstants.has(name), name);
    }
  });

  const ts = layout as unknown as Record<string, unknown>;
  const shared = [...kernelConstants.keys()].filter((name) => name in ts);

  test("the two files share the SA record, descriptor and framing constants", () => {
    for (const name of [...kernelConstants.keys()].filter((n) => /^(SA_|D_|DESCRIPTOR_|ESP_)/.test(n))) {
      assert.ok(shared.includes(name), `${name} is in assembly/layout.ts but not in src/kernel/layout.ts`);
    }
  });

  for (const name of shared) {
    test(`${name} = ${kernelConstants.get(name)} in both`, () => {
      assert.equal(ts[name], kernelConstants.get(name));
    });
  }

  test("the descriptor and SA header fields fit and do not overlap", () => {
    const fields: [string, number][] = [
      ["D_BUF", 4], ["D_LEN", 4], ["D_SA", 4], ["D_STATUS", 1], ["D_NEXT_HEADER", 1], ["D_FLAGS", 1], ["D_SEQ", 8], ["D_IV", 8],
    ];
    checkDisjoint(fields, layout.DESCRIPTOR_SIZE);
    checkDisjoint([["SA_SPI", 4], ["SA_FLAGS", 4], ["SA_SEQ", 8], ["SA_SALT", 4], ["SA_WINDOW", 4], ["SA_KEY", 32], ["SA_WORD_MASK", 4]], layout.SA_BITMAP);
    assert.equal(layout.SA_SEQ % 8, 0, "u64 aligned");
    assert.equal(layout.D_SEQ % 8, 0, "u64 aligned");
    assert.equal(layout.SA_BITMAP % 8, 0, "u64 aligned");
  });

  test("saRecordSize: a power-of-two ring of at least W/64 + 1 words", () => {
    for (let w = 64; w <= 65536; w += 64) {
      const words = layout.saBitmapWords(w);
      assert.ok(words >= w / 64 + 1 && (words & (words - 1)) === 0 && words / 2 < w / 64 + 1, `W=${w}: ${words} words`);
      assert.equal(layout.saRecordSize(w), layout.SA_BITMAP + 8 * words);
    }
  });
});

function checkDisjoint(fields: [string, number][], size: number): void {
  const ts = layout as unknown as Record<string, number>;
  const used = new Array<string | undefined>(size);
  for (const [name, width] of fields) {
    const at = ts[name]!;
    assert.equal(typeof at, "number", name);
    assert.ok(at + width <= size, `${name} ends past ${size}`);
    for (let i = at; i < at + width; i++) {
      assert.equal(used[i], undefined, `${name} overlaps ${used[i]}`);
      used[i] = name;
    }
  }
}

describe("status numbering", () => {
  const statusConstants = [...kernelConstants].filter(([name]) => name.startsWith("STATUS_"));

  test("one name per kernel status, no more, no fewer", () => {
    assert.equal(PACKET_STATUSES.length, statusConstants.length);
    assert.equal(new Set(PACKET_STATUSES).size, PACKET_STATUSES.length, "names are unique");
    assert.deepEqual(statusConstants.map(([, n]) => n).sort((a, b) => a - b), PACKET_STATUSES.map((_, i) => i), "kernel numbers are 0…n-1");
  });

  for (const [constant, number] of statusConstants) {
    const name = constant.slice("STATUS_".length).toLowerCase().replace(/_/g, "-");
    test(`${constant} = ${number} ↔ '${name}'`, () => {
      assert.equal(PACKET_STATUSES[number], name);
      assert.equal(statusName(number), name);
    });
  }

  test("statusName refuses numbers the kernel does not have", () => {
    assert.throws(() => statusName(PACKET_STATUSES.length), RangeError);
    assert.throws(() => statusName(255), RangeError);
  });
});
