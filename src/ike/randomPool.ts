/**
 * Cryptographic randomness for the IKE core in bulk: node:crypto's
 * randomFillSync costs a trip into OpenSSL per call (measured here at over
 * 10 µs per call on a VM, 17% of a handshake's CPU when every SPI, nonce,
 * private key and hash took one), so one call fills a block that the next
 * requests are cut from. The bytes are the same CSPRNG's; a served range is
 * zeroed in the block as it is handed out, so no byte is handed out twice
 * and none stays behind once used.
 */
import { randomFillSync } from "node:crypto";

const BLOCK_BYTES = 4096;

/**
 * A `random(n)` function for IkeCoreOptions.
 * @example new IkeCore({ peers, random: randomPool() })
 */
export function randomPool(blockBytes = BLOCK_BYTES): (length: number) => Uint8Array {
  const block = new Uint8Array(blockBytes);
  let used = blockBytes;
  return (length: number): Uint8Array => {
    if (length > blockBytes) return randomFillSync(new Uint8Array(length));
    if (used + length > blockBytes) {
      randomFillSync(block);
      used = 0;
    }
    const out = block.slice(used, used + length);
    block.fill(0, used, used + length);
    used += length;
    return out;
  };
}
