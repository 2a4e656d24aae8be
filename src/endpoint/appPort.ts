/**
 * The inner port of the portable path: the embedding application.
 *
 * Why: without the native addon there is no TUN device, so plain packets can
 * only come from and go to the process itself. The application injects
 * outbound packets with Endpoint.sendInner (one copy, into an engine slot;
 * then routed and sealed exactly like a packet read from a TUN) and gets the
 * opened packets that passed the policy check through its onInnerPacket
 * callback. With no callback (`sluice up` on the portable path) opened
 * packets are counted and dropped as "no-inner-port".
 */
import type { Forwarder } from "./forwarder.js";
import type { Entries, InnerPort } from "./ports.js";
import { Accumulator } from "./accumulator.js";

/**
 * Receives an opened inner packet (a whole IPv4 or IPv6 packet whose source
 * is within the sending peer's selectors) and the peer's name.
 *
 * `packet` is a view into the engine's shared memory, valid only until the
 * callback returns: copy it to keep it. Calling Endpoint.sendInner from
 * inside the callback is allowed (it copies). A throw is counted as the
 * drop "inner-callback-error" and logged; it does not stop the endpoint.
 */
export type InnerPacketHandler = (packet: Uint8Array, peerName: string) => void;

export class AppPort implements InnerPort {
  readonly #seal: Accumulator;
  #stopped = false;
  /** Paused by the core (engine full, or a reload draining it): send() refuses. */
  #paused = false;

  constructor(private readonly host: Forwarder, private readonly onInnerPacket: InnerPacketHandler | undefined) {
    this.#seal = new Accumulator(host.engine, "seal", (batch) => host.submitSeal(batch));
  }

  /** Whether opened packets reach the application (an onInnerPacket was given). */
  get delivers(): boolean {
    return this.onInnerPacket !== undefined;
  }

  /** See Endpoint.sendInner. */
  send(packet: Uint8Array): boolean {
    if (this.#stopped) return false;
    const host = this.host;
    const engine = host.engine;
    if (packet.length > engine.maxPacket) {
      host.drop("inner-too-long");
      return false;
    }
    const batch = this.#paused ? null : this.#seal.batch();
    const slot = batch === null ? -1 : engine.acquireSlot();
    if (slot < 0) {
      host.drop("backpressure");
      return false;
    }
    const at = engine.packetOffset(slot);
    engine.bytes.set(packet, at);
    if (!host.addOutbound(batch!, slot, at, packet.length, "inner-malformed")) {
      engine.releaseSlot(slot);
      return false;
    }
    this.#seal.added();
    return true;
  }

  write(entries: Entries, count: number): void {
    const host = this.host;
    const callback = this.onInnerPacket;
    if (callback === undefined) {
      host.drop("no-inner-port", count);
      return;
    }
    const bytes = host.engine.bytes;
    for (let i = 0; i < count; i++) {
      const at = entries.offsets[i]!;
      try {
        callback(bytes.subarray(at, at + entries.lengths[i]!), host.peerById[entries.peers[i]!]!.name);
      } catch (error) {
        host.fault("inner-callback-error", error, 1, "error", "onInnerPacket threw; the packet is dropped");
      }
    }
  }

  // Nothing to read from: the application pushes, and learns of backpressure
  // (a full engine, or a pause by the core) from send()'s false.
  start(): void {}

  /**
   * Refuses sendInner from now on and submits what it gathered: a batch
   * held back until the check phase would escape engine.idle(), which a
   * reload waits on before it reads and replaces a peer's counters (sealed
   * later with the old SA, its numbers could repeat under the replacement).
   */
  pause(): void {
    this.#paused = true;
    this.#seal.flush();
  }

  resume(): void {
    this.#paused = false;
  }

  /** Submits what sendInner gathered; later calls return false. */
  stop(): void {
    this.#stopped = true;
    this.#seal.flush();
  }

  close(): void {}

  setRoutes(): void {
    // No routes to follow: sendInner routes by the table at each call.
  }
}
