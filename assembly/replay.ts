// Anti-replay (RFC 4303 §3.4.3) with the bitmap of RFC 6479 and the ESN
// inference of RFC 4303 Appendix A.
//
// Design: the window of W packets is a ring of 64-bit words indexed by
// seq >> 6, with at least W/64 + 1 words so that advancing the top only
// zeroes the words it enters; nothing is ever shifted (RFC 6479 §2). The
// check runs before decryption and the commit only after the tag verified,
// so forged packets cannot move the window.

import { SA_FLAGS, SA_SEQ, SA_WINDOW, SA_WORD_MASK, SA_BITMAP, SA_FLAG_ESN, STATUS_OK, STATUS_REPLAY, STATUS_TOO_OLD } from "./layout";

/** The full sequence number of the last replayCheck, valid when it returned OK. */
export let checkedSeq: u64 = 0;

/**
 * RFC 4303 Appendix A.2: the high 32 bits of an ESN, from the low 32 bits on
 * the wire and the window (top, W). Returns the full 64-bit number, or 0 when
 * it would fall below 0 or beyond 2^64 - 1 (no valid number; 0 is never sent).
 */
// @ts-ignore: decorator
@inline function inferEsn(top: u64, seqLow: u32, window: u32): u64 {
  const topLow = <u32>top;
  const topHigh = <u32>(top >> 32);
  const bottomLow = topLow - window + 1; // mod 2^32, as in Appendix A
  let high: u64;
  if (topLow >= window - 1) {
    // Case A: the window lies within one 2^32 span.
    if (seqLow >= bottomLow) high = topHigh;
    else {
      if (topHigh == 0xffffffff) return 0;
      high = <u64>topHigh + 1;
    }
  } else {
    // Case B: the window straddles a 2^32 boundary.
    if (seqLow >= bottomLow) {
      if (topHigh == 0) return 0;
      high = <u64>topHigh - 1;
    } else high = topHigh;
  }
  return (high << 32) | seqLow;
}

/**
 * Checks the sequence number seqLow (as on the wire) against the SA's window
 * without changing it. Sets checkedSeq and returns STATUS_OK, STATUS_REPLAY or
 * STATUS_TOO_OLD.
 */
export function replayCheck(sa: usize, seqLow: u32): u8 {
  const top = load<u64>(sa + SA_SEQ);
  const window = load<u32>(sa + SA_WINDOW);
  const seq: u64 = (load<u32>(sa + SA_FLAGS) & SA_FLAG_ESN) ? inferEsn(top, seqLow, window) : <u64>seqLow;
  checkedSeq = seq;
  return replayCheckFull(sa, seq);
}

/**
 * The window check for a full sequence number already known (e.g. one a
 * worker authenticated): STATUS_OK, STATUS_REPLAY or STATUS_TOO_OLD.
 */
export function replayCheckFull(sa: usize, seq: u64): u8 {
  const top = load<u64>(sa + SA_SEQ);
  const window = load<u32>(sa + SA_WINDOW);
  if (seq == 0) return STATUS_TOO_OLD;
  if (seq > top) return STATUS_OK;
  if (top - seq >= <u64>window) return STATUS_TOO_OLD;
  const word = load<u64>(sa + SA_BITMAP + ((<usize>(seq >> 6) & load<u32>(sa + SA_WORD_MASK)) << 3));
  return (word >> (seq & 63)) & 1 ? STATUS_REPLAY : STATUS_OK;
}

/** Marks seq (a number replayCheck accepted) as seen, advancing the window if it is new. */
export function replayCommit(sa: usize, seq: u64): void {
  const mask = <usize>load<u32>(sa + SA_WORD_MASK);
  const top = load<u64>(sa + SA_SEQ);
  if (seq > top) {
    // Zero the words the window moves into (RFC 6479 §2.3), at most all of them.
    const topBlock = top >> 6;
    let blocks = (seq >> 6) - topBlock;
    if (blocks > <u64>(mask + 1)) blocks = mask + 1;
    for (let i: u64 = 1; i <= blocks; i++) {
      store<u64>(sa + SA_BITMAP + ((<usize>(topBlock + i) & mask) << 3), 0);
    }
    store<u64>(sa + SA_SEQ, seq);
  }
  const at = sa + SA_BITMAP + ((<usize>(seq >> 6) & mask) << 3);
  store<u64>(at, load<u64>(at) | (<u64>1 << (seq & 63)));
}
