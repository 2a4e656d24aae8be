/**
 * IKEv2 payloads (RFC 7296 §3.2–§3.16): their shapes in memory, and the
 * encoder and decoder of each payload's body.
 *
 * Buffer contract: decoded payloads hold subarrays of the message they were
 * read from (no copies); a caller that keeps one past the message's life
 * copies it. `body` is always the payload's bytes after the 4-byte generic
 * header, exactly as received: AUTH signs the ID payload's body as sent
 * (RFC 7296 §2.15, RestOfInitIDPayload), so it must never be re-encoded.
 *
 * The SK and SKF payloads are not here: their bodies are ciphertext, handled
 * by message.ts and sk.ts. Payload types sluice does not know are kept as
 * `unknown` and skipped, unless marked critical (§2.5): then the parser
 * refuses the message with "unsupported-critical".
 */
import { ATTRIBUTE_KEY_LENGTH, Payload, TsType } from "../constants.js";
import { ByteWriter, ParseError, viewOf } from "./bytes.js";

/** RFC 7296 §3.3.2: one transform; keyLength is the §3.3.5 Key Length attribute. */
export interface Transform {
  type: number;
  id: number;
  keyLength?: number;
  /** The transform carried an attribute sluice does not know: it cannot be accepted (§3.3.6). */
  unknownAttribute?: boolean;
}

/** RFC 7296 §3.3.1: a proposal: protocol, SPI (empty for IKE in IKE_SA_INIT), transforms. */
export interface Proposal {
  number: number;
  protocol: number;
  spi: Uint8Array;
  transforms: Transform[];
}

/** RFC 7296 §3.13.1: one traffic selector as on the wire. */
export interface WireSelector {
  tsType: number;
  /** IP protocol, 0 = any. */
  protocol: number;
  startPort: number;
  endPort: number;
  /** 4 or 16 bytes each. */
  start: Uint8Array;
  end: Uint8Array;
}

/** RFC 7296 §3.15.1: a configuration attribute. */
export interface ConfigAttribute {
  type: number;
  value: Uint8Array;
}

interface Base {
  /** The body as received (after the generic header); absent on payloads built to send. */
  body?: Uint8Array;
}

export interface SaPayload extends Base { type: typeof Payload.SA; proposals: Proposal[] }
export interface KePayload extends Base { type: typeof Payload.KE; group: number; data: Uint8Array }
export interface IdPayload extends Base { type: typeof Payload.IDi | typeof Payload.IDr; idType: number; data: Uint8Array }
export interface CertPayload extends Base { type: typeof Payload.CERT | typeof Payload.CERTREQ; encoding: number; data: Uint8Array }
export interface AuthPayload extends Base { type: typeof Payload.AUTH; method: number; data: Uint8Array }
export interface NoncePayload extends Base { type: typeof Payload.NONCE; data: Uint8Array }
export interface NotifyPayload extends Base { type: typeof Payload.NOTIFY; protocol: number; spi: Uint8Array; notifyType: number; data: Uint8Array }
export interface DeletePayload extends Base { type: typeof Payload.DELETE; protocol: number; spiSize: number; spis: Uint8Array[] }
export interface VendorPayload extends Base { type: typeof Payload.VENDOR; data: Uint8Array }
export interface TsPayload extends Base { type: typeof Payload.TSi | typeof Payload.TSr; selectors: WireSelector[] }
export interface CpPayload extends Base { type: typeof Payload.CP; cfgType: number; attributes: ConfigAttribute[] }
export interface EapPayload extends Base { type: typeof Payload.EAP; data: Uint8Array }
/** A payload type sluice does not interpret (skipped unless critical). */
export interface UnknownPayload extends Base { type: number; unknown: true; critical: boolean; data: Uint8Array }

export type IkePayload =
  | SaPayload | KePayload | IdPayload | CertPayload | AuthPayload | NoncePayload | NotifyPayload
  | DeletePayload | VendorPayload | TsPayload | CpPayload | EapPayload | UnknownPayload;

// ---------------------------------------------------------------- decoding

function need(bytes: Uint8Array, n: number, what: string): void {
  if (bytes.length < n) throw new ParseError("truncated", `${what}: ${bytes.length} bytes, at least ${n} needed`);
}

/** §3.3: proposals, each with its transforms and attributes. */
function decodeSa(body: Uint8Array): Proposal[] {
  const view = viewOf(body);
  const proposals: Proposal[] = [];
  let at = 0;
  let more = true;
  while (more) {
    need(body.subarray(at), 8, "proposal");
    const last = body[at]!;
    const length = view.getUint16(at + 2);
    if (last !== 0 && last !== 2) throw new ParseError("invalid-syntax", `proposal "last substruc" is ${last}`);
    if (length < 8 || at + length > body.length) throw new ParseError("bad-length", `proposal length ${length}`);
    const number = body[at + 4]!;
    const protocol = body[at + 5]!;
    const spiSize = body[at + 6]!;
    const count = body[at + 7]!;
    if (8 + spiSize > length) throw new ParseError("bad-length", `proposal SPI size ${spiSize} in ${length} bytes`);
    const spi = body.subarray(at + 8, at + 8 + spiSize);
    const transforms = decodeTransforms(body.subarray(at + 8 + spiSize, at + length), count);
    proposals.push({ number, protocol, spi, transforms });
    more = last === 2;
    at += length;
  }
  if (at !== body.length) throw new ParseError("bad-length", `${body.length - at} bytes after the last proposal`);
  return proposals;
}

function decodeTransforms(bytes: Uint8Array, count: number): Transform[] {
  const view = viewOf(bytes);
  const transforms: Transform[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    need(bytes.subarray(at), 8, "transform");
    const last = bytes[at]!;
    const length = view.getUint16(at + 2);
    if (length < 8 || at + length > bytes.length) throw new ParseError("bad-length", `transform length ${length}`);
    if ((last !== 0 && last !== 3) || (last === 0) !== (i === count - 1)) {
      throw new ParseError("invalid-syntax", `transform ${i + 1} of ${count} says "last" is ${last}`);
    }
    const transform: Transform = { type: bytes[at + 4]!, id: view.getUint16(at + 6) };
    decodeAttributes(bytes.subarray(at + 8, at + length), transform);
    transforms.push(transform);
    at += length;
  }
  if (at !== bytes.length) throw new ParseError("bad-length", `proposal holds ${bytes.length - at} bytes past its ${count} transforms`);
  return transforms;
}

/** §3.3.5: TV (AF=1) or TLV attributes; only Key Length is known. */
function decodeAttributes(bytes: Uint8Array, transform: Transform): void {
  const view = viewOf(bytes);
  let at = 0;
  while (at < bytes.length) {
    need(bytes.subarray(at), 4, "transform attribute");
    const word = view.getUint16(at);
    const tv = (word & 0x8000) !== 0;
    const type = word & 0x7fff;
    if (tv) {
      if (type === ATTRIBUTE_KEY_LENGTH) transform.keyLength = view.getUint16(at + 2);
      else transform.unknownAttribute = true;
      at += 4;
    } else {
      const length = view.getUint16(at + 2);
      if (at + 4 + length > bytes.length) throw new ParseError("bad-length", `attribute length ${length}`);
      transform.unknownAttribute = true;
      at += 4 + length;
    }
  }
}

/** §3.13.1. */
function decodeTs(body: Uint8Array): WireSelector[] {
  need(body, 4, "traffic selector payload");
  const count = body[0]!;
  const view = viewOf(body);
  const selectors: WireSelector[] = [];
  let at = 4;
  for (let i = 0; i < count; i++) {
    need(body.subarray(at), 8, "traffic selector");
    const tsType = body[at]!;
    const length = view.getUint16(at + 2);
    const addressBytes = tsType === TsType.IPV4_ADDR_RANGE ? 4 : tsType === TsType.IPV6_ADDR_RANGE ? 16 : -1;
    if (addressBytes < 0) {
      // Unknown TS types cannot be narrowed or enforced; the selector is refused as a whole (TS_UNACCEPTABLE upstream).
      if (length < 8 || at + length > body.length) throw new ParseError("bad-length", `traffic selector length ${length}`);
      selectors.push({ tsType, protocol: body[at + 1]!, startPort: 0, endPort: 0, start: new Uint8Array(0), end: new Uint8Array(0) });
      at += length;
      continue;
    }
    if (length !== 8 + 2 * addressBytes || at + length > body.length) throw new ParseError("bad-length", `traffic selector length ${length} for type ${tsType}`);
    selectors.push({
      tsType,
      protocol: body[at + 1]!,
      startPort: view.getUint16(at + 4),
      endPort: view.getUint16(at + 6),
      start: body.subarray(at + 8, at + 8 + addressBytes),
      end: body.subarray(at + 8 + addressBytes, at + 8 + 2 * addressBytes),
    });
    at += length;
  }
  if (at !== body.length) throw new ParseError("bad-length", `${body.length - at} bytes after the last traffic selector`);
  return selectors;
}

/** §3.15. */
function decodeCp(body: Uint8Array): { cfgType: number; attributes: ConfigAttribute[] } {
  need(body, 4, "configuration payload");
  const view = viewOf(body);
  const attributes: ConfigAttribute[] = [];
  let at = 4;
  while (at < body.length) {
    need(body.subarray(at), 4, "configuration attribute");
    const type = view.getUint16(at) & 0x7fff;
    const length = view.getUint16(at + 2);
    if (at + 4 + length > body.length) throw new ParseError("bad-length", `configuration attribute length ${length}`);
    attributes.push({ type, value: body.subarray(at + 4, at + 4 + length) });
    at += 4 + length;
  }
  return { cfgType: body[0]!, attributes };
}

/** Decodes one payload's body. `critical` is the generic header's C bit. */
export function decodePayload(type: number, critical: boolean, body: Uint8Array): IkePayload {
  const view = viewOf(body);
  switch (type) {
    case Payload.SA:
      return { type, proposals: decodeSa(body), body };
    case Payload.KE:
      need(body, 4, "KE");
      return { type, group: view.getUint16(0), data: body.subarray(4), body };
    case Payload.IDi:
    case Payload.IDr:
      need(body, 4, "ID");
      return { type, idType: body[0]!, data: body.subarray(4), body };
    case Payload.CERT:
    case Payload.CERTREQ:
      need(body, 1, "CERT");
      return { type, encoding: body[0]!, data: body.subarray(1), body };
    case Payload.AUTH:
      need(body, 4, "AUTH");
      return { type, method: body[0]!, data: body.subarray(4), body };
    case Payload.NONCE:
      // §3.9: 16 to 256 bytes.
      if (body.length < 16 || body.length > 256) throw new ParseError("bad-length", `nonce of ${body.length} bytes (16 to 256 allowed)`);
      return { type, data: body, body };
    case Payload.NOTIFY: {
      need(body, 4, "Notify");
      const spiSize = body[1]!;
      need(body, 4 + spiSize, "Notify SPI");
      return { type, protocol: body[0]!, spi: body.subarray(4, 4 + spiSize), notifyType: view.getUint16(2), data: body.subarray(4 + spiSize), body };
    }
    case Payload.DELETE: {
      need(body, 4, "Delete");
      const spiSize = body[1]!;
      const count = view.getUint16(2);
      if (body.length !== 4 + spiSize * count) throw new ParseError("bad-length", `Delete of ${count} SPIs of ${spiSize} bytes in ${body.length} bytes`);
      const spis: Uint8Array[] = [];
      for (let i = 0; i < count; i++) spis.push(body.subarray(4 + i * spiSize, 4 + (i + 1) * spiSize));
      return { type, protocol: body[0]!, spiSize, spis, body };
    }
    case Payload.VENDOR:
      return { type, data: body, body };
    case Payload.TSi:
    case Payload.TSr:
      return { type, selectors: decodeTs(body), body };
    case Payload.CP:
      return { type, ...decodeCp(body), body };
    case Payload.EAP:
      return { type, data: body, body };
    default:
      if (critical) throw new ParseError("unsupported-critical", `payload type ${type} is critical and unknown`, type);
      return { type, unknown: true, critical, data: body, body };
  }
}

// ---------------------------------------------------------------- encoding

function encodeSa(w: ByteWriter, proposals: Proposal[]): void {
  proposals.forEach((proposal, p) => {
    const start = w.length;
    w.u8(p === proposals.length - 1 ? 0 : 2).u8(0);
    const length = w.mark16();
    w.u8(proposal.number).u8(proposal.protocol).u8(proposal.spi.length).u8(proposal.transforms.length).bytes(proposal.spi);
    proposal.transforms.forEach((transform, t) => {
      const tStart = w.length;
      w.u8(t === proposal.transforms.length - 1 ? 0 : 3).u8(0);
      const tLength = w.mark16();
      w.u8(transform.type).u8(0).u16(transform.id);
      if (transform.keyLength !== undefined) w.u16(0x8000 | ATTRIBUTE_KEY_LENGTH).u16(transform.keyLength);
      w.setU16(tLength, w.length - tStart);
    });
    w.setU16(length, w.length - start);
  });
}

function encodeTs(w: ByteWriter, selectors: WireSelector[]): void {
  w.u8(selectors.length).zeros(3);
  for (const s of selectors) {
    w.u8(s.tsType).u8(s.protocol).u16(8 + s.start.length + s.end.length).u16(s.startPort).u16(s.endPort).bytes(s.start).bytes(s.end);
  }
}

/** Writes one payload's body (not its generic header). */
export function encodePayloadBody(w: ByteWriter, payload: IkePayload): void {
  if ("unknown" in payload) {
    w.bytes(payload.data);
    return;
  }
  switch (payload.type) {
    case Payload.SA:
      return encodeSa(w, payload.proposals);
    case Payload.KE:
      w.u16(payload.group).u16(0).bytes(payload.data);
      return;
    case Payload.IDi:
    case Payload.IDr:
      w.u8(payload.idType).zeros(3).bytes(payload.data);
      return;
    case Payload.CERT:
    case Payload.CERTREQ:
      w.u8(payload.encoding).bytes(payload.data);
      return;
    case Payload.AUTH:
      w.u8(payload.method).zeros(3).bytes(payload.data);
      return;
    case Payload.NONCE:
    case Payload.VENDOR:
    case Payload.EAP:
      w.bytes(payload.data);
      return;
    case Payload.NOTIFY:
      w.u8(payload.protocol).u8(payload.spi.length).u16(payload.notifyType).bytes(payload.spi).bytes(payload.data);
      return;
    case Payload.DELETE:
      w.u8(payload.protocol).u8(payload.spiSize).u16(payload.spis.length);
      for (const spi of payload.spis) w.bytes(spi);
      return;
    case Payload.TSi:
    case Payload.TSr:
      return encodeTs(w, payload.selectors);
    case Payload.CP:
      w.u8(payload.cfgType).zeros(3);
      for (const attribute of payload.attributes) w.u16(attribute.type & 0x7fff).u16(attribute.value.length).bytes(attribute.value);
      return;
  }
}

/** The body bytes of one payload as it would be sent (what AUTH signs for our own ID). */
export function payloadBody(payload: IkePayload): Uint8Array {
  const w = new ByteWriter(64);
  encodePayloadBody(w, payload);
  return w.finish();
}

// ---------------------------------------------------------------- lookups

type Known<P, T> = P extends UnknownPayload ? never : P extends { type: infer U } ? (T extends U ? P : never) : never;
/** The payload interface of a payload type (IdPayload for Payload.IDi, …). */
export type PayloadOf<T extends number> = Known<IkePayload, T>;

/** The first payload of a type. */
export function findPayload<T extends number>(payloads: readonly IkePayload[], type: T): PayloadOf<T> | undefined {
  return payloads.find((p) => p.type === type && !("unknown" in p)) as PayloadOf<T> | undefined;
}

/** The first Notify of a notify type. */
export function findNotify(payloads: readonly IkePayload[], notifyType: number): NotifyPayload | undefined {
  return payloads.find((p): p is NotifyPayload => p.type === Payload.NOTIFY && (p as NotifyPayload).notifyType === notifyType);
}

export function notifies(payloads: readonly IkePayload[]): NotifyPayload[] {
  return payloads.filter((p): p is NotifyPayload => p.type === Payload.NOTIFY && !("unknown" in p));
}

/** A Notify with no SPI, for the IKE SA or the exchange (§3.10). */
export function notify(notifyType: number, data: Uint8Array = new Uint8Array(0), protocol = 0, spi: Uint8Array = new Uint8Array(0)): NotifyPayload {
  return { type: Payload.NOTIFY, protocol, spi, notifyType, data };
}
