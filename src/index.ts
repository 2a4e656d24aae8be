/**
 * sluice: a userspace IPsec ESP packet engine. See README.md.
 * Entry points: `sluice/crypto` (AEAD one-shot), `sluice/esp` (ESP per packet),
 * `sluice/kernel` (the WASM kernel and its memory layout, for batch callers);
 * the engine (createEngine) from here.
 */
export { seal, open, sealAesGcm, openAesGcm, aesGcmPath } from "./crypto.js";
export { OutboundSa, InboundSa, EspError, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6 } from "./esp.js";
export type { OpenResult, OutboundSaParams, InboundSaParams, PacketStatus, SaParams, EspCipher } from "./esp.js";
export { createEngine, Engine, type EngineOptions } from "./engine/engine.js";
export { Batch } from "./engine/batch.js";
export { SaHandle, type EngineSaParams } from "./engine/saTable.js";
export { EngineError, type EngineErrorCode } from "./engine/errors.js";
export type { EngineStats, SaStats, DirectionCounters } from "./engine/stats.js";
