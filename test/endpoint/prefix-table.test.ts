// The longest-prefix-match table against a plain reference (a scan of every
// prefix, longest first): thousands of random IPv4 and IPv6 prefixes of every
// length, random and near-miss addresses, duplicates (the first added wins).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PrefixTable, parsePrefix, type Prefix } from "../../src/endpoint/prefix.js";
import { Rng, SEED } from "../helpers.js";

function reference(entries: { prefix: Prefix; value: number }[], family: 4 | 6, bytes: Uint8Array): number | undefined {
  let best: { prefix: Prefix; value: number } | undefined;
  for (const entry of entries) {
    const p = entry.prefix;
    if (p.family !== family) continue;
    let inside = true;
    for (let bit = 0; bit < p.length && inside; bit++) {
      const mask = 0x80 >> (bit & 7);
      if ((bytes[bit >> 3]! & mask) !== (p.bytes[bit >> 3]! & mask)) inside = false;
    }
    if (inside && (best === undefined || p.length > best.prefix.length)) best = entry;
  }
  return best?.value;
}

function text(family: 4 | 6, bytes: Uint8Array, length: number): string {
  if (family === 4) return `${bytes.join(".")}/${length}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return `${groups.join(":")}/${length}`;
}

test(`random tables agree with a scan of every prefix (seed ${SEED})`, () => {
  const rng = new Rng(SEED);
  for (let round = 0; round < 20; round++) {
    const entries: { prefix: Prefix; value: number }[] = [];
    const table = new PrefixTable<number>();
    const bases: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const family = rng.int(2) === 0 ? 4 : 6;
      const bytes = rng.bytes(family === 4 ? 4 : 16);
      // Clustered prefixes (shared leading bytes) make near misses likely.
      if (bases.length > 0 && rng.int(2) === 0) bytes.set(bases[rng.int(bases.length)]!.subarray(0, Math.min(bytes.length, 3)));
      bases.push(bytes);
      const prefix = parsePrefix(text(family, bytes, rng.int(family === 4 ? 33 : 129)));
      // The first added of equal prefixes wins, as in the reference (its scan keeps the first of a length).
      if (!entries.some((e) => e.prefix.family === prefix.family && e.prefix.length === prefix.length && e.prefix.bytes.every((b, j) => b === prefix.bytes[j]))) entries.push({ prefix, value: i });
      table.add(prefix, i);
    }
    for (let i = 0; i < 2000; i++) {
      const family = rng.int(2) === 0 ? 4 : 6;
      const bytes = rng.int(2) === 0 ? rng.bytes(family === 4 ? 4 : 16) : Uint8Array.from(bases.filter((b) => b.length === (family === 4 ? 4 : 16))[0] ?? rng.bytes(family === 4 ? 4 : 16));
      if (rng.int(3) === 0) bytes[rng.int(bytes.length)] ^= 1 << rng.int(8);
      assert.equal(table.lookup(family, bytes, 0), reference(entries, family, bytes), `round ${round}, ${text(family, bytes, family === 4 ? 32 : 128)}`);
    }
  }
});

test("a thousand /32 routes: each found, the pool's /24 for the rest", () => {
  const table = new PrefixTable<string>();
  table.add(parsePrefix("10.100.0.0/16"), "trap");
  for (let i = 0; i < 1000; i++) table.add(parsePrefix(`10.100.${i >> 8}.${i & 255}`), `client-${i}`);
  assert.equal(table.size, 1001);
  assert.equal(table.lookup(4, Uint8Array.of(10, 100, 3, 231), 0), "client-999");
  assert.equal(table.lookup(4, Uint8Array.of(10, 100, 3, 232), 0), "trap");
  assert.equal(table.lookup(4, Uint8Array.of(10, 101, 0, 1), 0), undefined);
});
