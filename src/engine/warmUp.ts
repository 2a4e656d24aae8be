/**
 * The engine's warm-up (Engine.warmUp): one round trip of two small packets
 * per cipher through the convenient path, on this thread's kernel (batches
 * this small run inline, see EngineOptions.inlineBytes), which is the path a
 * new tunnel's first packets take. V8 compiles WebAssembly lazily, function
 * by function on first call, and the batch path's JavaScript on first use;
 * without this, the first packet through a new tunnel paid about 3 ms for it
 * on each side.
 *
 * The SAs are marked uncounted (their batches stay out of stats()), carry a
 * random key, and are removed (and wiped) before this returns. AES-GCM is
 * warmed too: its first batch loads the addon's OpenSSL context.
 */
import { randomBytes } from "node:crypto";
import type { EspCipher } from "../kernel/cipher.js";
import type { Engine } from "./engine.js";

const WARM_UP_CIPHERS: readonly EspCipher[] = ["chacha20poly1305", "aes256gcm16"];
/** A ping's and a TCP ACK's inner sizes, near enough. */
const WARM_UP_LENGTHS = [84, 52];

export async function warmUpEngine(engine: Engine): Promise<void> {
  for (const cipher of WARM_UP_CIPHERS) {
    const key = randomBytes(32);
    const salt = randomBytes(4);
    const out = engine.addSa({ spi: 1, cipher, key, salt, direction: "out" });
    const into = engine.addSa({ spi: 1, cipher, key, salt, direction: "in" });
    key.fill(0);
    out.uncounted = true;
    into.uncounted = true;
    try {
      const sealed = await engine.seal(out, WARM_UP_LENGTHS.map((length) => new Uint8Array(length)));
      await engine.open(into, sealed);
    } finally {
      engine.removeSa(out);
      engine.removeSa(into);
    }
  }
}
