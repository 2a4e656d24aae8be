// ESP (RFC 4303) with ChaCha20-Poly1305 (RFC 7634), in place in a packet buffer.
// AES-GCM SAs (RFC 4106) share everything here but the AEAD: the header,
// trailer and IV (= sequence number) are the same (RFC 4106 §3, §4), so the
// kernel frames them and checks replay, leaves them INTERIM_AEAD_PENDING for
// the AES pass outside WASM (native/src/gcm.c, or node:crypto), and checks
// their trailer afterwards (openFinishBatch).
//
// Buffer contract. Sealing: the inner packet sits at buf + 16 with len bytes;
// the buffer has at least 3 + 2 + 16 bytes of tailroom after it. The ESP
// packet SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV is written from buf on. Opening:
// the ESP packet sits at buf with len bytes; on STATUS_OK the inner packet is
// at buf + 16 with the length left in the descriptor. Nothing is decrypted
// before the ICV verified; the replay window moves only after that.

import {
  SA_SPI, SA_FLAGS, SA_SEQ, SA_SALT, SA_KEY, SA_CIPHER, SA_FLAG_ESN, CIPHER_CHACHA20_POLY1305,
  INTERIM_AEAD_PENDING, INTERIM_AEAD_OPENED,
  D_BUF, D_LEN, D_SA, D_STATUS, D_NEXT_HEADER, D_FLAGS, D_SEQ, D_IV, D_FLAG_IV, DESCRIPTOR_SIZE,
  ESP_HEADER, ESP_ICV,
  STATUS_OK, STATUS_AUTH, STATUS_TRUNCATED, STATUS_MALFORMED, STATUS_BAD_PADDING, STATUS_BAD_PAD_LENGTH,
  STATUS_UNKNOWN_SA, STATUS_BAD_NEXT_HEADER, STATUS_SEQ_EXHAUSTED, STATUS_DUMMY,
} from "./layout";
import { espAeadSeal, espAeadOpen } from "./aead";
import { replayCheck, replayCheckFull, replayCommit, checkedSeq } from "./replay";

const NEXT_HEADER_IPV4: u8 = 4;
const NEXT_HEADER_IPV6: u8 = 41;
const NEXT_HEADER_NONE: u8 = 59;

/**
 * Takes the next outbound sequence number from the SA, or 0 when the counter
 * is exhausted: it never wraps (RFC 4303 §3.3.3), at 2^32 - 1 without ESN and
 * 2^64 - 1 with it. Not atomic: one thread assigns numbers per SA.
 */
export function nextSeq(sa: usize): u64 {
  const last = load<u64>(sa + SA_SEQ);
  const limit: u64 = (load<u32>(sa + SA_FLAGS) & SA_FLAG_ESN) ? 0xffffffffffffffff : 0xffffffff;
  if (last >= limit) return 0;
  store<u64>(sa + SA_SEQ, last + 1);
  return last + 1;
}

/**
 * Seals the packet one descriptor names; sets its status, length and sequence
 * number. An AES-GCM SA's packet is framed only: true when it is left
 * INTERIM_AEAD_PENDING for the AES pass.
 */
export function espSeal(d: usize): bool {
  const sa = <usize>load<u32>(d + D_SA);
  const buf = <usize>load<u32>(d + D_BUF);
  const len = <usize>load<u32>(d + D_LEN);
  const esn = (load<u32>(sa + SA_FLAGS) & SA_FLAG_ESN) != 0;

  let seq = load<u64>(d + D_SEQ);
  if (seq == 0) seq = nextSeq(sa);
  if (seq == 0 || (!esn && seq > 0xffffffff)) {
    store<u8>(d + D_STATUS, STATUS_SEQ_EXHAUSTED);
    return false;
  }
  const iv = (load<u8>(d + D_FLAGS) & D_FLAG_IV) ? load<u64>(d + D_IV) : seq;

  // Trailer (RFC 4303 §2.4–2.6): pad so that payload ‖ pad ‖ padLen ‖ nextHeader
  // ends on a 4-byte boundary, with pad bytes 1, 2, 3.
  const payload = buf + ESP_HEADER;
  const padLength: usize = (4 - ((len + 2) & 3)) & 3;
  for (let i: usize = 0; i < padLength; i++) store<u8>(payload + len + i, <u8>(i + 1));
  store<u8>(payload + len + padLength, <u8>padLength);
  store<u8>(payload + len + padLength + 1, load<u8>(d + D_NEXT_HEADER));
  const ctLen = len + padLength + 2;

  // Header: SPI and the low 32 bits of seq, big-endian; the 8-byte IV.
  store<u32>(buf, bswap<u32>(load<u32>(sa + SA_SPI)));
  store<u32>(buf, bswap<u32>(<u32>seq), 4);
  store<u64>(buf, bswap<u64>(iv), 8);

  if (load<u32>(sa + SA_CIPHER) != CIPHER_CHACHA20_POLY1305) {
    store<u32>(d + D_LEN, <u32>(ESP_HEADER + ctLen + ESP_ICV));
    store<u64>(d + D_SEQ, seq);
    store<u8>(d + D_STATUS, INTERIM_AEAD_PENDING);
    return true;
  }

  // RFC 7634 §2: nonce = salt ‖ IV; §3: AAD = SPI ‖ seq (‖ seq-high in the middle with ESN).
  const n0 = load<u32>(sa + SA_SALT), n1 = load<u32>(buf, 8), n2 = load<u32>(buf, 12);
  const spiWord = load<u32>(buf), seqLowWord = load<u32>(buf, 4);
  if (esn) {
    espAeadSeal(sa + SA_KEY, n0, n1, n2, spiWord, bswap<u32>(<u32>(seq >> 32)), seqLowWord, 12, payload, ctLen, payload + ctLen);
  } else {
    espAeadSeal(sa + SA_KEY, n0, n1, n2, spiWord, seqLowWord, 0, 8, payload, ctLen, payload + ctLen);
  }
  store<u32>(d + D_LEN, <u32>(ESP_HEADER + ctLen + ESP_ICV));
  store<u64>(d + D_SEQ, seq);
  store<u8>(d + D_STATUS, STATUS_OK);
  return false;
}

/**
 * Opens the packet one descriptor names; sets its status and, when OK,
 * length and next header. An AES-GCM SA's packet is only checked (length,
 * SPI, replay, ESN inference into D_SEQ): true when it is left
 * INTERIM_AEAD_PENDING; after the AES pass, openFinishBatch with commit.
 */
export function espOpen(d: usize): bool {
  const status = openStatus(d, true);
  store<u8>(d + D_STATUS, status);
  return status == INTERIM_AEAD_PENDING;
}

/**
 * Opening when several threads open packets of one SA at once: the window is
 * only checked here (a cheap early drop); the one authoritative check and the
 * commit happen later, in submission order, on one thread (commitBatch).
 */
export function espOpenDeferred(d: usize): bool {
  const status = openStatus(d, false);
  store<u8>(d + D_STATUS, status);
  return status == INTERIM_AEAD_PENDING;
}

/** Whether a status means the packet was authentic, so its number is used up. */
// @ts-ignore: decorator
@inline function authentic(status: u8): bool {
  return status == STATUS_OK || status == STATUS_BAD_PADDING || status == STATUS_BAD_PAD_LENGTH ||
    status == STATUS_BAD_NEXT_HEADER || status == STATUS_DUMMY;
}

function openStatus(d: usize, commit: bool): u8 {
  const sa = <usize>load<u32>(d + D_SA);
  const buf = <usize>load<u32>(d + D_BUF);
  const len = <usize>load<u32>(d + D_LEN);
  if (len < ESP_HEADER) return STATUS_TRUNCATED;
  // The ciphertext holds at least pad length and next header and ends 4-byte aligned.
  if (len < ESP_HEADER + 2 + ESP_ICV) return STATUS_MALFORMED;
  const ctLen = len - ESP_HEADER - ESP_ICV;
  if (ctLen & 3) return STATUS_MALFORMED;
  if (bswap<u32>(load<u32>(buf)) != load<u32>(sa + SA_SPI)) return STATUS_UNKNOWN_SA;

  const seqLowWord = load<u32>(buf, 4);
  const replay = replayCheck(sa, bswap<u32>(seqLowWord));
  if (replay != STATUS_OK) return replay;
  const seq = checkedSeq;
  if (load<u32>(sa + SA_CIPHER) != CIPHER_CHACHA20_POLY1305) {
    store<u64>(d + D_SEQ, seq);
    return INTERIM_AEAD_PENDING;
  }

  const payload = buf + ESP_HEADER;
  const n0 = load<u32>(sa + SA_SALT), n1 = load<u32>(buf, 8), n2 = load<u32>(buf, 12);
  const spiWord = load<u32>(buf);
  const verified = (load<u32>(sa + SA_FLAGS) & SA_FLAG_ESN)
    ? espAeadOpen(sa + SA_KEY, n0, n1, n2, spiWord, bswap<u32>(<u32>(seq >> 32)), seqLowWord, 12, payload, ctLen, payload + ctLen)
    : espAeadOpen(sa + SA_KEY, n0, n1, n2, spiWord, seqLowWord, 0, 8, payload, ctLen, payload + ctLen);
  if (!verified) return STATUS_AUTH;
  // The packet is the peer's: its number is used up whatever its trailer says.
  if (commit) replayCommit(sa, seq);
  store<u64>(d + D_SEQ, seq);
  return trailerStatus(d, payload, ctLen);
}

/** Trailer checks (RFC 4303 §2.4–2.6), on decrypted, authentic data only. */
function trailerStatus(d: usize, payload: usize, ctLen: usize): u8 {
  const padLength = <usize>load<u8>(payload + ctLen - 2);
  const nextHeader = load<u8>(payload + ctLen - 1);
  if (padLength > ctLen - 2) return STATUS_BAD_PAD_LENGTH;
  const innerLen = ctLen - 2 - padLength;
  let badPad: u32 = 0;
  for (let i: usize = 0; i < padLength; i++) badPad |= <u32>load<u8>(payload + innerLen + i) ^ <u32>(i + 1);
  if (badPad) return STATUS_BAD_PADDING;
  store<u8>(d + D_NEXT_HEADER, nextHeader);
  if (nextHeader == NEXT_HEADER_NONE) return STATUS_DUMMY;
  if (nextHeader != NEXT_HEADER_IPV4 && nextHeader != NEXT_HEADER_IPV6) return STATUS_BAD_NEXT_HEADER;
  store<u32>(d + D_LEN, <u32>innerLen);
  return STATUS_OK;
}

/** Seals count packets whose descriptors start at descriptors; returns how many await the AES pass. */
export function sealBatch(descriptors: usize, count: u32): u32 {
  let pending: u32 = 0;
  for (let i: u32 = 0; i < count; i++) if (espSeal(descriptors + <usize>i * DESCRIPTOR_SIZE)) pending++;
  return pending;
}

/** Opens count packets whose descriptors start at descriptors; returns how many await the AES pass. */
export function openBatch(descriptors: usize, count: u32): u32 {
  let pending: u32 = 0;
  for (let i: u32 = 0; i < count; i++) if (espOpen(descriptors + <usize>i * DESCRIPTOR_SIZE)) pending++;
  return pending;
}

/** Opens count packets without committing their sequence numbers; see espOpenDeferred. */
export function openBatchDeferred(descriptors: usize, count: u32): u32 {
  let pending: u32 = 0;
  for (let i: u32 = 0; i < count; i++) if (espOpenDeferred(descriptors + <usize>i * DESCRIPTOR_SIZE)) pending++;
  return pending;
}

/**
 * The last pass of opening AES-GCM packets: each descriptor the AES pass
 * left INTERIM_AEAD_OPENED gets its trailer checked. With commit (the
 * single-threaded openBatch), its number is checked against the window
 * again, as it is now, and committed: two copies of one packet in a batch
 * both passed the first check, and only one may be accepted. Without commit
 * (deferred), commitBatch does that later on the thread owning the windows.
 */
export function openFinishBatch(descriptors: usize, count: u32, commit: bool): void {
  for (let i: u32 = 0; i < count; i++) {
    const d = descriptors + <usize>i * DESCRIPTOR_SIZE;
    if (load<u8>(d + D_STATUS) != INTERIM_AEAD_OPENED) continue;
    if (commit && !recheckAndCommit(d)) continue;
    const ctLen = <usize>load<u32>(d + D_LEN) - ESP_HEADER - ESP_ICV;
    store<u8>(d + D_STATUS, trailerStatus(d, <usize>load<u32>(d + D_BUF) + ESP_HEADER, ctLen));
  }
}

/**
 * Commits the sequence numbers of a batch opened with openBatchDeferred, on
 * the one thread that owns the windows, batch after batch in submission
 * order. Each authentic packet is checked again against the window as it is
 * now: a duplicate that another batch (or this one) committed first becomes
 * STATUS_REPLAY, one the window has moved past STATUS_TOO_OLD. So each number
 * is accepted at most once, whichever worker opened it.
 */
export function commitBatch(descriptors: usize, count: u32): void {
  for (let i: u32 = 0; i < count; i++) {
    const d = descriptors + <usize>i * DESCRIPTOR_SIZE;
    const status = load<u8>(d + D_STATUS);
    if (authentic(status)) recheckAndCommit(d);
  }
}

/**
 * Checks an authentic packet's number against its SA's window as it is now
 * and commits it; false (the descriptor's status set to STATUS_REPLAY or
 * STATUS_TOO_OLD) when the window no longer takes it.
 */
// @ts-ignore: decorator
@inline function recheckAndCommit(d: usize): bool {
  const sa = <usize>load<u32>(d + D_SA);
  const seq = load<u64>(d + D_SEQ);
  const replay = replayCheckFull(sa, seq);
  if (replay != STATUS_OK) {
    store<u8>(d + D_STATUS, replay);
    return false;
  }
  replayCommit(sa, seq);
  return true;
}

/**
 * Assigns each descriptor the next sequence number of its SA (0 when the SA
 * is exhausted, which sealing reports as STATUS_SEQ_EXHAUSTED). Runs on the
 * one thread that owns the outbound counters, before the batch is handed out.
 */
export function assignSeq(descriptors: usize, count: u32): void {
  for (let i: u32 = 0; i < count; i++) {
    const d = descriptors + <usize>i * DESCRIPTOR_SIZE;
    store<u64>(d + D_SEQ, nextSeq(<usize>load<u32>(d + D_SA)));
  }
}
