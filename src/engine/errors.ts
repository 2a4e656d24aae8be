/** Errors of the engine, with a machine-readable code. */
export type EngineErrorCode = "backpressure" | "closed" | "seq-exhausted" | "worker-failed" | "removed";

export class EngineError extends Error {
  constructor(readonly code: EngineErrorCode, message: string) {
    super(message);
    this.name = "EngineError";
  }
}
