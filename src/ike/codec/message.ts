/**
 * IKEv2 messages (RFC 7296 §3.1–§3.2, §3.14): the header, the chain of
 * payloads, and the Encrypted (SK) payload that wraps the rest of the chain.
 *
 *   decodeMessage(datagram)  header + cleartext payloads + where SK sits
 *   openSk(message, cipher)  the SK payload decrypted into inner payloads
 *   encodeMessage(...)       header + payloads, the inner ones sealed in SK
 *
 * Why decryption is a separate step: the core must find the IKE SA by the
 * header's SPIs before it has keys, and must count a message that fails the
 * ICV apart from one that does not parse. The associated data of an AEAD SK
 * payload is the message from its first byte to the end of the SK payload's
 * generic header (RFC 5282 §5.1), so the header's length field is final
 * before sealing.
 *
 * Buffer contract: decoded structures are views into the datagram (or the
 * decrypted plaintext); nothing is copied.
 */
import { Flag, IKE_HEADER_BYTES, PAYLOAD_HEADER_BYTES, Payload } from "../constants.js";
import { ByteWriter, ParseError, viewOf } from "./bytes.js";
import { decodePayload, encodePayloadBody, type IkePayload } from "./payloads.js";

/** RFC 7296 §3.1. */
export interface IkeHeader {
  spiI: bigint;
  spiR: bigint;
  nextPayload: number;
  /** Major version in the high nibble, minor in the low (0x20 for IKEv2). */
  version: number;
  exchange: number;
  flags: number;
  messageId: number;
  length: number;
}

/** The header fields a sender chooses (the rest follow from the payloads). */
export type HeaderFields = Pick<IkeHeader, "spiI" | "spiR" | "exchange" | "flags" | "messageId">;

/** An AEAD for the SK payload (sk.ts): seals to IV ‖ ciphertext ‖ tag. */
export interface SkSealer {
  readonly ivBytes: number;
  readonly tagBytes: number;
  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
}

export interface SkOpener {
  /** The plaintext of IV ‖ ciphertext ‖ tag, or null when the ICV does not verify. */
  open(aad: Uint8Array, body: Uint8Array): Uint8Array | null;
}

/** A datagram read as far as it can be without keys. */
export interface DecodedMessage {
  header: IkeHeader;
  /** The whole message (IKE header first; the NAT-T marker already stripped). */
  bytes: Uint8Array;
  /** Payloads before any SK / SKF payload (all of them in IKE_SA_INIT). */
  payloads: IkePayload[];
  /** The SK payload, when the message has one: the type of its first inner payload and where its body lies. */
  sk?: { innerType: number; headerAt: number; body: Uint8Array };
  /** An SKF payload (RFC 7383), left for the fragment reassembler. */
  skf?: { innerType: number; headerAt: number; body: Uint8Array };
}

export function isResponse(header: IkeHeader): boolean {
  return (header.flags & Flag.RESPONSE) !== 0;
}

export function fromInitiator(header: IkeHeader): boolean {
  return (header.flags & Flag.INITIATOR) !== 0;
}

/** Reads the 28-byte header; refuses versions other than 2.x and a length that does not match the datagram. */
export function decodeHeader(bytes: Uint8Array): IkeHeader {
  if (bytes.length < IKE_HEADER_BYTES) throw new ParseError("truncated", `${bytes.length} bytes, an IKE header is ${IKE_HEADER_BYTES}`);
  const view = viewOf(bytes);
  const header: IkeHeader = {
    spiI: view.getBigUint64(0),
    spiR: view.getBigUint64(8),
    nextPayload: bytes[16]!,
    version: bytes[17]!,
    exchange: bytes[18]!,
    flags: bytes[19]!,
    messageId: view.getUint32(20),
    length: view.getUint32(24),
  };
  if (header.version >> 4 !== 2) throw new ParseError("bad-version", `major version ${header.version >> 4}`);
  if (header.length !== bytes.length) throw new ParseError("bad-length", `header says ${header.length} bytes, the datagram has ${bytes.length}`);
  return header;
}

/**
 * Walks a payload chain starting with `firstType` over `bytes` from `at`.
 * Stops at an SK or SKF payload (which must be last, §3.14) and reports it.
 */
function walkChain(bytes: Uint8Array, at: number, firstType: number, payloads: IkePayload[]): DecodedMessage["sk"] & { type: number } | undefined {
  const view = viewOf(bytes);
  let type = firstType;
  while (type !== Payload.NONE) {
    if (bytes.length - at < PAYLOAD_HEADER_BYTES) throw new ParseError("truncated", `payload ${type} header past the end`);
    const next = bytes[at]!;
    const critical = (bytes[at + 1]! & 0x80) !== 0;
    const length = view.getUint16(at + 2);
    if (length < PAYLOAD_HEADER_BYTES || at + length > bytes.length) throw new ParseError("bad-length", `payload ${type} length ${length} at offset ${at}`);
    const body = bytes.subarray(at + PAYLOAD_HEADER_BYTES, at + length);
    if (type === Payload.SK || type === Payload.SKF) {
      if (at + length !== bytes.length) throw new ParseError("invalid-syntax", "the encrypted payload is not the last one");
      return { type, innerType: next, headerAt: at, body };
    }
    payloads.push(decodePayload(type, critical, body));
    at += length;
    type = next;
  }
  if (at !== bytes.length) throw new ParseError("bad-length", `${bytes.length - at} bytes after the last payload`);
  return undefined;
}

/** Header and cleartext payloads of a datagram; throws ParseError. */
export function decodeMessage(bytes: Uint8Array): DecodedMessage {
  const header = decodeHeader(bytes);
  const payloads: IkePayload[] = [];
  const encrypted = walkChain(bytes, IKE_HEADER_BYTES, header.nextPayload, payloads);
  const message: DecodedMessage = { header, bytes, payloads };
  if (encrypted?.type === Payload.SK) message.sk = { innerType: encrypted.innerType, headerAt: encrypted.headerAt, body: encrypted.body };
  if (encrypted?.type === Payload.SKF) message.skf = { innerType: encrypted.innerType, headerAt: encrypted.headerAt, body: encrypted.body };
  return message;
}

/**
 * Decrypts the SK payload and parses the chain inside (§3.14: plaintext =
 * payloads ‖ padding ‖ pad length). Returns null when the ICV does not
 * verify; throws ParseError when the plaintext does not parse.
 */
export function openSk(message: DecodedMessage, cipher: SkOpener): IkePayload[] | null {
  const sk = message.sk;
  if (sk === undefined) return [];
  const aad = message.bytes.subarray(0, sk.headerAt + PAYLOAD_HEADER_BYTES);
  const plain = cipher.open(aad, sk.body);
  if (plain === null) return null;
  return decodeInner(sk.innerType, plain);
}

/** The payload chain of a decrypted SK (or reassembled SKF) plaintext. */
export function decodeInner(innerType: number, plain: Uint8Array): IkePayload[] {
  if (plain.length < 1) throw new ParseError("truncated", "empty encrypted payload");
  const padLength = plain[plain.length - 1]!;
  if (padLength + 1 > plain.length) throw new ParseError("invalid-syntax", `pad length ${padLength} exceeds the ${plain.length}-byte plaintext`);
  const payloads: IkePayload[] = [];
  const nested = walkChain(plain.subarray(0, plain.length - 1 - padLength), 0, innerType, payloads);
  if (nested !== undefined) throw new ParseError("invalid-syntax", "an encrypted payload inside an encrypted payload");
  return payloads;
}

/** Writes a payload chain (generic headers chained); returns the first payload's type. */
export function encodeChain(w: ByteWriter, payloads: readonly IkePayload[], lastNext = Payload.NONE as number): number {
  payloads.forEach((payload, i) => {
    const start = w.length;
    const next = i + 1 < payloads.length ? payloads[i + 1]!.type : lastNext;
    w.u8(next).u8("unknown" in payload && payload.critical ? 0x80 : 0);
    const length = w.mark16();
    encodePayloadBody(w, payload);
    w.setU16(length, w.length - start);
  });
  return payloads.length > 0 ? payloads[0]!.type : lastNext;
}

function writeHeader(w: ByteWriter, fields: HeaderFields, nextPayload: number): number {
  w.u64(fields.spiI).u64(fields.spiR).u8(nextPayload).u8(0x20).u8(fields.exchange).u8(fields.flags).u32(fields.messageId);
  return w.length; // the length field follows
}

/**
 * A whole message: `clear` payloads in the open (IKE_SA_INIT), then, when a
 * sealer is given, `inner` sealed in an SK payload (every later exchange).
 */
export function encodeMessage(fields: HeaderFields, clear: readonly IkePayload[], inner?: { payloads: readonly IkePayload[]; sealer: SkSealer }): Uint8Array {
  const w = new ByteWriter(256);
  const first = clear.length > 0 ? clear[0]!.type : inner ? Payload.SK : Payload.NONE;
  const lengthAt = writeHeader(w, fields, first);
  w.u32(0);
  encodeChain(w, clear, inner ? Payload.SK : Payload.NONE);
  if (inner === undefined) {
    w.setU32(lengthAt, w.length);
    return w.finish();
  }
  const plainWriter = new ByteWriter(256);
  const innerType = encodeChain(plainWriter, inner.payloads);
  plainWriter.u8(0); // pad length: no padding (an AEAD needs none, RFC 5282 §3, RFC 7634 §2)
  const plain = plainWriter.finish();
  const skAt = w.length;
  const skLength = PAYLOAD_HEADER_BYTES + inner.sealer.ivBytes + plain.length + inner.sealer.tagBytes;
  w.u8(innerType).u8(0).u16(skLength);
  w.setU32(lengthAt, skAt + skLength);
  const aad = w.finish();
  const sealed = inner.sealer.seal(aad, plain);
  plain.fill(0);
  w.bytes(sealed);
  return w.finish();
}
