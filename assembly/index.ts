// The WASM kernel's exports. Every function takes addresses in the imported
// shared memory and touches only the bytes it is given; per-call state lives
// in globals, which are per instance and so per thread.

import { chacha20Xor } from "./chacha20";
import { aeadSeal, aeadOpen, setScratch } from "./aead";
import { polyInit, polyPadded, polyTail, polyBlocks, polyFinish, storeTag } from "./poly1305";
import { espSeal, espOpen, sealBatch, openBatch, openBatchDeferred, openFinishBatch, commitBatch, assignSeq, nextSeq } from "./esp";
import { replayCheck, replayCommit, checkedSeq } from "./replay";

export {
  setScratch as set_scratch,
  sealBatch as seal_batch,
  openBatch as open_batch,
  openBatchDeferred as open_batch_deferred,
  openFinishBatch as open_finish_batch,
  commitBatch as commit_batch,
  assignSeq as assign_seq,
  espSeal as esp_seal,
  espOpen as esp_open,
  nextSeq as next_seq,
};

/** RFC 8439 §2.4 over len bytes; nonce is 12 bytes at nonce. */
export function chacha20_xor(key: usize, nonce: usize, counter: u32, src: usize, dst: usize, len: usize): void {
  chacha20Xor(key, load<u32>(nonce), load<u32>(nonce, 4), load<u32>(nonce, 8), counter, src, dst, len);
}

/** RFC 8439 §2.5: the 16-byte tag of len bytes at msg under the 32-byte key, written at out. */
export function poly1305_mac(key: usize, msg: usize, len: usize, out: usize): void {
  polyInit(load<u64>(key), load<u64>(key, 8), load<u64>(key, 16), load<u64>(key, 24));
  const full = len & ~(<usize>15);
  polyBlocks(msg, full);
  if (len > full) polyTail(msg + full, len - full, false);
  polyFinish();
  storeTag(out);
}

/** RFC 8439 §2.8 seal: ciphertext to dst (in place allowed), tag to tag. */
export function aead_seal(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, dst: usize, len: usize, tag: usize): void {
  aeadSeal(key, load<u32>(nonce), load<u32>(nonce, 4), load<u32>(nonce, 8), aad, aadLen, src, dst, len, tag);
}

/** RFC 8439 §2.8 open: 1 and plaintext in dst when the tag at tag verifies, else 0 and dst untouched. */
export function aead_open(key: usize, nonce: usize, aad: usize, aadLen: usize, src: usize, dst: usize, len: usize, tag: usize): i32 {
  return aeadOpen(key, load<u32>(nonce), load<u32>(nonce, 4), load<u32>(nonce, 8), aad, aadLen, src, dst, len, tag) ? 1 : 0;
}

/** Replay check and commit in one step (tests and single-threaded callers); returns a status. */
export function replay_accept(sa: usize, seqLow: u32): i32 {
  const status = replayCheck(sa, seqLow);
  if (status == 0) replayCommit(sa, checkedSeq);
  return status;
}

/** The window check alone; see replay_checked_seq for the number it inferred. */
export function replay_check(sa: usize, seqLow: u32): i32 {
  return replayCheck(sa, seqLow);
}

export function replay_checked_seq(): u64 {
  return checkedSeq;
}

export function replay_commit(sa: usize, seq: u64): void {
  replayCommit(sa, seq);
}
