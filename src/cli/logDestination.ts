/**
 * Where `sluice up` writes its JSON log lines: stdout, one write per turn of
 * the event loop, never more than a bounded amount held.
 *
 * Why per turn: a gateway under load logs a few lines per handshake (IKE SA
 * up, child up, child down, IKE SA down), and a write per line, even an
 * asynchronous one, cost the main thread a system call's set-up each (the
 * IKE handshakes behind it wait). The lines of one turn now go out in one
 * write, scheduled with setImmediate, so a quiet daemon's line still leaves
 * within the turn it was logged in.
 *
 * Why bounded: if whatever reads stdout stops reading (a stalled journald,
 * a parent that never drains its pipe), held lines would grow without end.
 * Past MAX_HELD bytes a line is dropped and counted instead; the count is
 * said in the next line that gets through.
 */
import { pino } from "pino";

/** Lines held while stdout does not drain, at most (bytes). */
export const MAX_HELD = 16 << 20;
/** Below this much held, lines wait for the end of the turn; above it they are written at once. */
const WRITE_AT_ONCE = 8192;

export interface LogDestination {
  /** What pino writes to. */
  readonly stream: { write(line: string): void };
  /** Writes what is held, synchronously (at exit). */
  flushSync(): void;
}

/**
 * stdout, written once per event-loop turn, at most `maxHeld` bytes held.
 *
 * @example
 * ```ts
 * const destination = turnBufferedStdout();
 * const log = pino({ base: { service: "sluice" } }, destination.stream);
 * process.on("exit", () => destination.flushSync());
 * ```
 */
export function turnBufferedStdout(maxHeld = MAX_HELD): LogDestination {
  const sink = pino.destination({ dest: 1, sync: false, minLength: WRITE_AT_ONCE, maxLength: maxHeld });
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
          setImmediate(flush);
        }
      },
    },
    flushSync: () => sink.flushSync(),
  };
}
