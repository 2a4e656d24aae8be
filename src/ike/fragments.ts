/**
 * IKE message fragmentation (RFC 7383): an encrypted message too big for one
 * datagram goes out as several, each an Encrypted Fragment (SKF) payload
 * sealed on its own, so that no IP fragment is needed (NATs and firewalls
 * that drop IP fragments would otherwise drop an IKE_AUTH with many
 * traffic selectors, or certificates, for good).
 *
 *   HDR(next SKF), SKF{next = first inner type | 0, Fragment Number, Total Fragments,
 *                      IV, sealed(chunk ‖ pad length), ICV}
 *
 * - Negotiated in IKE_SA_INIT with N(IKEV2_FRAGMENTATION_SUPPORTED) both
 *   ways (§2.3); then a message whose datagram would exceed `size` (an IP
 *   datagram's size, as strongSwan's fragment_size: IP and UDP headers and
 *   the non-ESP marker included) is sent in fragments (§2.5). The inner
 *   payload chain is cut into chunks; each fragment's associated data is
 *   the IKE header and its own SKF header (RFC 5282 §5.1 with §2.5's
 *   header), so every fragment is authenticated by itself.
 * - A fragment is verified (its ICV) before it is kept (§2.6), so only the
 *   peer can fill a reassembly; the message-ID window is checked first by
 *   the SA (ikeSa.ts), as for whole messages. Reassembly is bounded: at
 *   most `maxFragments` fragments and `maxBytes` of plaintext per message,
 *   one message per direction per SA, and a reassembly older than
 *   `timeoutMs` is thrown away when its next fragment arrives (or with the
 *   SA). A fragment number seen already is dropped (a retransmission, or
 *   an overlap), and a Total Fragments that disagrees with the first one
 *   seen follows §2.6: more fragments than before starts the reassembly
 *   anew (the sender re-fragmented smaller), fewer is dropped.
 * - Retransmissions resend the same fragments, never re-fragment; a
 *   retransmitted fragmented request is answered from the response cache
 *   on its fragment 1 only (§2.6.1), not once per fragment.
 */
import { isIP } from "node:net";
import { IKE_HEADER_BYTES, Notify, PAYLOAD_HEADER_BYTES, Payload } from "./constants.js";
import { ByteWriter, concatBytes, viewOf } from "./codec/bytes.js";
import { decodeInner, encodeChain, encodeMessage, isResponse, type DecodedMessage, type HeaderFields, type SkOpener, type SkSealer } from "./codec/message.js";
import { findNotify, notify, type IkePayload } from "./codec/payloads.js";
import type { Endpoint } from "./natDetection.js";

export interface FragmentSettings {
  /** Offer and accept RFC 7383 fragmentation (strongSwan's `fragmentation = yes`). */
  enabled: boolean;
  /** The largest IP datagram an IKE message is sent in before it is fragmented (strongSwan's fragment_size, 1280). */
  size: number;
  /** Fragments one message may have (a larger Total Fragments is dropped). */
  maxFragments: number;
  /** Plaintext bytes one reassembled message may have. */
  maxBytes: number;
  /** A reassembly not complete after this long is thrown away. */
  timeoutMs: number;
}

export const DEFAULT_FRAGMENTATION: FragmentSettings = {
  enabled: true,
  size: 1280,
  maxFragments: 32,
  maxBytes: 32 * 1024,
  timeoutMs: 30_000,
};

/** The SKF payload's header: generic header, Fragment Number, Total Fragments (RFC 7383 §2.5). */
export const SKF_HEADER_BYTES = PAYLOAD_HEADER_BYTES + 4;
const UDP_HEADER_BYTES = 8;
const NON_ESP_MARKER_BYTES = 4;

/** What fragment handling counts in core.counters.drops. */
export type FragmentDropReason =
  | "fragment-invalid" | "fragment-limit" | "fragment-too-large" | "fragment-duplicate"
  | "fragment-total-mismatch" | "fragment-reassembly-restarted" | "fragment-timeout" | "bad-icv" | "truncated";

// ---------------------------------------------------------------- negotiation (§2.3)

/** The notify IKE_SA_INIT carries when fragmentation is enabled. */
export function offerFragmentation(settings: FragmentSettings): IkePayload[] {
  return settings.enabled ? [notify(Notify.IKEV2_FRAGMENTATION_SUPPORTED)] : [];
}

/** Whether the peer's IKE_SA_INIT message offers fragmentation (and we allow it). */
export function fragmentationAgreed(settings: FragmentSettings, payloads: readonly IkePayload[]): boolean {
  return settings.enabled && findNotify(payloads, Notify.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined;
}

/**
 * The largest IKE message (from its IKE header on) that fits a datagram of
 * `settings.size` to `remote`: the IP header (20 or 40 bytes, no options),
 * UDP, and the non-ESP marker on the NAT-T port are not the message's.
 */
export function largestMessage(settings: FragmentSettings, remote: Endpoint, natT: boolean): number {
  const ip = isIP(remote.address) === 6 ? 40 : 20;
  return settings.size - ip - UDP_HEADER_BYTES - (natT ? NON_ESP_MARKER_BYTES : 0);
}

// ---------------------------------------------------------------- sending (§2.5)

/**
 * An encrypted message as datagrams: one, or when `largest` is given and the
 * message is bigger, its fragments in order.
 *
 * @example
 * ```ts
 * const datagrams = sealMessage(header, payloads, sealer, sa.fragmentation ? largestMessage(settings, sa.remote, sa.natT) : undefined);
 * ```
 */
export function sealMessage(fields: HeaderFields, payloads: readonly IkePayload[], sealer: SkSealer, largest: number | undefined): Uint8Array[] {
  const chain = new ByteWriter(256);
  const innerType = encodeChain(chain, payloads);
  const plain = chain.finish();
  const wholeLength = IKE_HEADER_BYTES + PAYLOAD_HEADER_BYTES + sealer.ivBytes + plain.length + 1 + sealer.tagBytes;
  if (largest === undefined || wholeLength <= largest) return [encodeMessage(fields, [], { payloads, sealer })];
  // Each fragment's plaintext is its chunk and a zero pad length (an AEAD needs no padding).
  const chunkBytes = Math.max(1, largest - IKE_HEADER_BYTES - SKF_HEADER_BYTES - sealer.ivBytes - sealer.tagBytes - 1);
  const total = Math.ceil(plain.length / chunkBytes);
  if (total > 0xffff) throw new RangeError(`a ${plain.length}-byte message in ${chunkBytes}-byte fragments needs ${total} fragments`);
  const datagrams: Uint8Array[] = [];
  for (let number = 1; number <= total; number++) {
    const chunk = plain.subarray((number - 1) * chunkBytes, number * chunkBytes);
    const skfLength = SKF_HEADER_BYTES + sealer.ivBytes + chunk.length + 1 + sealer.tagBytes;
    const w = new ByteWriter(IKE_HEADER_BYTES + skfLength);
    w.u64(fields.spiI).u64(fields.spiR).u8(Payload.SKF).u8(0x20).u8(fields.exchange).u8(fields.flags).u32(fields.messageId).u32(IKE_HEADER_BYTES + skfLength);
    // §2.5: only fragment 1 names the first inner payload; the others say 0.
    w.u8(number === 1 ? innerType : Payload.NONE).u8(0).u16(skfLength).u16(number).u16(total);
    const aad = w.finish();
    const padded = new Uint8Array(chunk.length + 1);
    padded.set(chunk);
    w.bytes(sealer.seal(aad, padded));
    padded.fill(0);
    datagrams.push(w.finish());
  }
  plain.fill(0);
  return datagrams;
}

// ---------------------------------------------------------------- receiving (§2.6)

interface Fragment {
  number: number;
  total: number;
  /** The SKF payload's Next Payload (meaningful in fragment 1). */
  next: number;
  chunk: Uint8Array;
}

/** Fragment Number and Total Fragments, or undefined when they are impossible. */
function numbers(message: DecodedMessage): { number: number; total: number } | undefined {
  const body = message.skf!.body;
  if (body.length < 4) return undefined;
  const view = viewOf(body);
  const number = view.getUint16(0);
  const total = view.getUint16(2);
  return number >= 1 && total >= 1 && number <= total ? { number, total } : undefined;
}

/** Verifies and decrypts one fragment; drops (counted) what fails. */
function openFragment(message: DecodedMessage, opener: SkOpener, drop: (reason: FragmentDropReason) => void): Fragment | null {
  const skf = message.skf!;
  const n = numbers(message);
  if (n === undefined) {
    drop("fragment-invalid");
    return null;
  }
  const aad = message.bytes.subarray(0, skf.headerAt + SKF_HEADER_BYTES);
  const plain = opener.open(aad, skf.body.subarray(4));
  if (plain === null) {
    drop("bad-icv");
    return null;
  }
  const padLength = plain.length > 0 ? plain[plain.length - 1]! : 0;
  if (plain.length < 1 || padLength + 1 > plain.length) {
    drop("fragment-invalid");
    return null;
  }
  return { ...n, next: skf.innerType, chunk: plain.subarray(0, plain.length - 1 - padLength) };
}

/**
 * Whether a fragment of a request answered already should make us resend
 * the cached response: its ICV verifies and it is fragment 1 (§2.6.1).
 */
export function retransmissionTrigger(message: DecodedMessage, opener: SkOpener, drop: (reason: FragmentDropReason) => void): boolean {
  const n = numbers(message);
  if (n === undefined) {
    drop("fragment-invalid");
    return false;
  }
  if (n.number !== 1) return false;
  return openFragment(message, opener, drop) !== null;
}

interface Reassembly {
  messageId: number;
  /** The message went over maxBytes: its remaining fragments are dropped without being kept. */
  refused: boolean;
  total: number;
  firstType: number;
  parts: (Uint8Array | undefined)[];
  received: number;
  bytes: number;
  startedAt: number;
}


/**
 * The fragments of one IKE SA's inbound messages: at most one request and
 * one response being put together at a time.
 */
export class Reassembler {
  #request: Reassembly | undefined;
  #response: Reassembly | undefined;

  /**
   * Takes a verified-window SKF message. Returns the message's inner
   * payloads once its last fragment is in, null otherwise (waiting for more,
   * or dropped and counted). Throws ParseError when the reassembled
   * plaintext does not parse (the caller counts it, as for SK).
   */
  take(message: DecodedMessage, opener: SkOpener, settings: FragmentSettings, now: number, drop: (reason: FragmentDropReason) => void): IkePayload[] | null {
    const n = numbers(message);
    // The cheap checks first: nothing unauthenticated costs a decryption it can be refused without.
    if (n !== undefined && n.total > settings.maxFragments) {
      drop("fragment-limit");
      return null;
    }
    const fragment = openFragment(message, opener, drop);
    if (fragment === null) return null;
    const response = isResponse(message.header);
    const messageId = message.header.messageId;
    let slot = response ? this.#response : this.#request;
    if (slot !== undefined && slot.messageId === messageId && now - slot.startedAt > settings.timeoutMs) {
      drop("fragment-timeout");
      slot = undefined;
    }
    if (slot !== undefined && slot.messageId !== messageId) slot = undefined;
    if (slot?.refused) {
      drop("fragment-too-large");
      return null;
    }
    if (slot !== undefined && fragment.total > slot.total) {
      drop("fragment-reassembly-restarted");
      slot = undefined;
    }
    if (slot !== undefined && fragment.total < slot.total) {
      drop("fragment-total-mismatch");
      return null;
    }
    if (slot === undefined) {
      slot = { messageId, refused: false, total: fragment.total, firstType: Payload.NONE, parts: new Array<Uint8Array | undefined>(fragment.total), received: 0, bytes: 0, startedAt: now };
      this.#set(response, slot);
    }
    if (slot.parts[fragment.number - 1] !== undefined) {
      drop("fragment-duplicate");
      return null;
    }
    if (slot.bytes + fragment.chunk.length > settings.maxBytes) {
      drop("fragment-too-large");
      // What was kept goes; what is left of the message is refused as it comes (a tombstone, not a new reassembly).
      this.#set(response, { ...slot, refused: true, parts: [], received: 0, bytes: 0 });
      return null;
    }
    slot.parts[fragment.number - 1] = fragment.chunk;
    slot.received++;
    slot.bytes += fragment.chunk.length;
    if (fragment.number === 1) slot.firstType = fragment.next;
    if (slot.received < slot.total) return null;
    this.#set(response, undefined);
    // decodeInner reads a trailing pad length: the chunks' own were removed, so a zero is appended.
    return decodeInner(slot.firstType, concatBytes(...(slot.parts as Uint8Array[]), new Uint8Array(1)));
  }

  /** Plaintext bytes held (for footprint checks). */
  get heldBytes(): number {
    return (this.#request?.bytes ?? 0) + (this.#response?.bytes ?? 0);
  }

  clear(): void {
    this.#request = undefined;
    this.#response = undefined;
  }

  #set(response: boolean, slot: Reassembly | undefined): void {
    if (response) this.#response = slot;
    else this.#request = slot;
  }
}
