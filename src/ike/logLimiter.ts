/**
 * One log line per cause and interval: what keeps a flood of bad IKE
 * messages from becoming a flood of log lines (the issue's "a flood must not
 * flood the log"), while the counters (core.counters.drops) still count
 * every message.
 *
 * The first occurrence of a cause is logged at once; further ones within
 * `intervalMs` are only counted, and the next line logged after the interval
 * says how many were left out. The number of causes is small and fixed
 * (drop reasons, refusal notifies), so the table stays small: a cause is a
 * reason, never an address.
 */
export class LogLimiter {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(readonly intervalMs = 10_000) {}

  /**
   * Whether a line for `cause` may be logged now; undefined when not (the
   * occurrence is counted), else how many were left out since the last line.
   *
   * @example
   * ```ts
   * const left = limiter.allow("drop:bad-icv", now);
   * if (left !== undefined) log(`dropped: bad ICV${left ? ` (${left} more since the last line)` : ""}`);
   * ```
   */
  allow(cause: string, now: number): number | undefined {
    const entry = this.#last.get(cause);
    if (entry === undefined) {
      this.#last.set(cause, { at: now, suppressed: 0 });
      return 0;
    }
    if (now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return undefined;
    }
    const suppressed = entry.suppressed;
    entry.at = now;
    entry.suppressed = 0;
    return suppressed;
  }
}
