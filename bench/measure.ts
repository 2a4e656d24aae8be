/**
 * Timing with tinybench, repeated: each round runs every task for a fixed
 * time budget and keeps its median iteration latency; the figure reported is
 * the median over rounds, so one noisy round (2 shared cores) cannot move it.
 */
import { Bench } from "tinybench";

export interface TimedTask {
  name: string;
  /** Runs once; `units` packets per call. */
  fn: () => void;
  units: number;
}

export interface MeasureOptions {
  rounds: number;
  /** Time budget per task and round, milliseconds. */
  timeMs: number;
}

/** Median per-unit latency (ns) of every task, by task name. */
export function measure(tasks: TimedTask[], options: MeasureOptions, onRound?: (round: number) => void): Map<string, number> {
  const perRound = new Map<string, number[]>(tasks.map((t) => [t.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    const bench = new Bench({ time: options.timeMs, warmupTime: Math.max(20, options.timeMs / 4), warmupIterations: 20 });
    for (const task of tasks) bench.add(task.name, task.fn);
    bench.runSync();
    for (const task of bench.tasks) {
      const spec = tasks.find((t) => t.name === task.name)!;
      const result = task.result;
      if (result.state !== "completed") throw new Error(`benchmark task ${task.name} did not complete: ${result.state}`);
      perRound.get(task.name)!.push((result.latency.p50 * 1e6) / spec.units);
    }
    onRound?.(round + 1);
  }
  return new Map([...perRound].map(([name, samples]) => [name, median(samples)]));
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * A plain-text table: the first three columns left-aligned (labels), the
 * rest right-aligned (figures), a blank line between rows of different
 * groups (`groupOf`: a size and an operation, say).
 */
export function formatGroupedTable(header: string[], lines: string[][], groupOf: (row: number) => string): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const out = [fmt(header), widths.map((w) => "-".repeat(w)).join("  ")];
  let last = "";
  for (let i = 0; i < lines.length; i++) {
    const group = groupOf(i);
    if (last && group !== last) out.push("");
    last = group;
    out.push(fmt(lines[i]!));
  }
  return out.join("\n");
}
