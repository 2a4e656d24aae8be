/**
 * Watching a descriptor for readability on libuv's loop, for the native
 * ports (tunPort.ts, udpPort.ts).
 *
 * Why a class: both ports pause when the engine runs short (backpressure),
 * resume when the forwarder says so, and stop for good at shutdown; a paused
 * port must not be woken, a stopped one never again, and a port must not
 * watch its descriptor twice (libuv allows one watcher per fd).
 */
import type { NativeIo, PollHandle } from "../io/native.js";

export class Readiness {
  #poll: PollHandle | undefined;
  #stopped = false;

  constructor(private readonly io: NativeIo, private readonly fd: number, private readonly onReadable: () => void) {}

  /** Starts watching unless watching already or stopped; true when it started now. */
  watch(): boolean {
    if (this.#stopped || this.#poll !== undefined) return false;
    this.#poll = this.io.poll(this.fd, "r", this.onReadable);
    return true;
  }

  /** Stops watching until the next watch(). */
  pause(): void {
    this.#poll?.stop();
    this.#poll = undefined;
  }

  /** Stops watching for good. */
  stop(): void {
    this.#stopped = true;
    this.pause();
  }
}
