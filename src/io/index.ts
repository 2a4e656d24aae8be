/**
 * Which I/O path this process runs on, in one place, so the engine, the CLI
 * and the benchmarks all say the same thing: whoever reads a log or a bench
 * result must know which path produced it (docs/architecture.md, "The I/O paths").
 */
import { loadNativeIo, nativeIoUnavailableReason, type NativeIo } from "./native.js";

export * from "./address.js";
export * from "./native.js";
export * from "./portable.js";

export type IoPath = { path: "native"; io: NativeIo } | { path: "portable"; reason: string };

/** The native path when the addon loads, else the portable one with the reason. */
export function selectIoPath(): IoPath {
  const io = loadNativeIo();
  if (io) return { path: "native", io };
  return { path: "portable", reason: nativeIoUnavailableReason ?? "the native I/O addon did not load" };
}
