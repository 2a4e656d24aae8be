/**
 * Where `sluice up` writes its JSON log lines: stdout, written at most every
 * FLUSH_MS (sooner when much is held), never more than a bounded amount held.
 *
 * Why batched: a gateway under load logs a few lines per handshake (IKE SA
 * up, child up, child down, IKE SA down). An asynchronous write costs far
 * more than its system call: it goes through libuv's thread pool, and on a
 * 2-core VM the wake-ups and context switches came to 45 µs of the main
 * thread and 85 µs of CPU in all per write (a synchronous write: 7 µs, but
 * it would stall the event loop, IKE and packets with it, whenever the
 * reader does; the thread pool keeps a stalled reader off the loop). Lines
 * now leave together, within FLUSH_MS of the first one held: each line
 * keeps its own `time`, so nothing measured from a log line moves.
 *
 * Why bounded: if whatever reads stdout stops reading (a stalled journald,
 * a parent that never drains its pipe), held lines would grow without end.
 * Past `maxHeld` bytes a line is dropped and counted instead; the count is
 * said in the next line that gets through.
 */
import { pino } from "pino";

/** Lines held while stdout does not drain, at most (bytes). */
export const MAX_HELD = 16 << 20;
/** How long a line may wait for others to share its write. */
export const FLUSH_MS = 10;
/** Held past this, lines are written at once (and a write takes at most WRITE_MAX). */
const WRITE_AT_ONCE = 64 << 10;
const WRITE_MAX = 128 << 10;

export interface LogDestination {
  /** What pino writes to. */
  readonly stream: { write(line: string): void };
  /** Writes what is held, synchronously (at exit). */
  flushSync(): void;
}

/**
 * stdout, written within FLUSH_MS of a line, at most `maxHeld` bytes held.
 *
 * @example
 * ```ts
 * const destination = batchedStdout();
 * const log = pino({ base: { service: "sluice" } }, destination.stream);
 * process.on("exit", () => destination.flushSync());
 * ```
 */
export function batchedStdout(maxHeld = MAX_HELD): LogDestination {
  const sink = pino.destination({ dest: 1, sync: false, minLength: WRITE_AT_ONCE, maxWrite: WRITE_MAX, maxLength: maxHeld });
  let dropped = 0;
  let droppedSaid = 0;
  let scheduled = false;
  sink.on("drop", () => {
    dropped++;
  });
  const flush = (): void => {
    scheduled = false;
    sink.flush();
  };
  return {
    stream: {
      write(line: string): void {
        if (dropped !== droppedSaid) {
          const before = dropped;
          sink.write(`${JSON.stringify({ level: 40, time: Date.now(), service: "sluice", event: "log-dropped", lines: before - droppedSaid, msg: `${before - droppedSaid} log line(s) dropped: stdout did not drain` })}\n`);
          // The notice itself may not fit: then it is not a dropped log line, and is said later.
          if (dropped === before) droppedSaid = before;
          else dropped = before;
        }
        sink.write(line);
        if (!scheduled) {
          scheduled = true;
          // Not keeping the process alive: at exit, flushSync writes what is held.
          setTimeout(flush, FLUSH_MS).unref();
        }
      },
    },
    flushSync: () => sink.flushSync(),
  };
}
