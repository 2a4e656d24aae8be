/**
 * Proposals: strongSwan's keyword syntax (`chacha20poly1305-prfsha256-x25519`,
 * `aes256gcm16-prfsha384-ecp384`, `chacha20poly1305-esn`) parsed into the
 * transforms of RFC 7296 §3.3, and the responder's choice among a peer's
 * proposals (§2.7).
 *
 * Why strongSwan's syntax: operators who run sluice beside strongSwan copy
 * `proposals` and `esp_proposals` lines between the two configs; one string
 * is one proposal, and naming several algorithms of a type in it offers any
 * of them (strongSwan's semantics, not a list of separate proposals).
 *
 * sluice speaks only AEAD ciphers (ChaCha20-Poly1305, AES-GCM-16), so an
 * integrity keyword is refused with a message saying so, and a proposal is
 * complete without an INTEG transform (RFC 5282 §8). The choice follows
 * strongSwan's default (prefer the configured order): our proposals in our
 * order, theirs in theirs, and within a match our first algorithm of each
 * type that they also offer.
 */
import { Encr, Esn, KeGroup, Prf, Protocol, TransformType } from "./constants.js";
import type { Proposal, Transform } from "./codec/payloads.js";
import type { AeadId } from "./crypto/aead.js";
import type { PrfId } from "./crypto/prf.js";
import type { GroupId } from "./crypto/keyExchange.js";

/** An encryption algorithm: transform ID and, for AES-GCM, key bits. */
export interface Cipher {
  id: AeadId;
  keyBits: number;
}

/** One IKE proposal (a strongSwan `proposals` entry). */
export interface IkeProposal {
  text: string;
  ciphers: Cipher[];
  prfs: PrfId[];
  groups: GroupId[];
}

/** One ESP proposal (a strongSwan `esp_proposals` entry). `groups` are for PFS in CREATE_CHILD_SA. */
export interface EspProposal {
  text: string;
  ciphers: Cipher[];
  esn: boolean[];
  groups: GroupId[];
}

/** What an IKE SA runs on once negotiated. */
export interface IkeAlgorithms {
  cipher: Cipher;
  prf: PrfId;
  group: GroupId;
}

/** What a child SA runs on once negotiated. */
export interface EspAlgorithms {
  cipher: Cipher;
  esn: boolean;
  /** The PFS group, when the exchange carried a KE (never in IKE_AUTH). */
  group?: GroupId;
}

const CIPHERS: Record<string, Cipher> = {
  chacha20poly1305: { id: Encr.CHACHA20_POLY1305, keyBits: 256 },
  aes128gcm16: { id: Encr.AES_GCM_16, keyBits: 128 },
  aes128gcm: { id: Encr.AES_GCM_16, keyBits: 128 },
  aes256gcm16: { id: Encr.AES_GCM_16, keyBits: 256 },
  aes256gcm: { id: Encr.AES_GCM_16, keyBits: 256 },
};

const PRFS: Record<string, PrfId> = {
  prfsha256: Prf.HMAC_SHA2_256,
  prfsha384: Prf.HMAC_SHA2_384,
  prfsha512: Prf.HMAC_SHA2_512,
};

const GROUPS: Record<string, GroupId> = {
  modp2048: KeGroup.MODP_2048,
  modp3072: KeGroup.MODP_3072,
  ecp256: KeGroup.ECP_256,
  ecp384: KeGroup.ECP_384,
  curve25519: KeGroup.CURVE25519,
  x25519: KeGroup.CURVE25519,
};

const INTEGRITY = /^(md5|sha1|sha|sha256|sha384|sha512|sha2_256|sha2_384|sha2_512|aesxcbc|aescmac|aes\d+gmac)(_\d+)?$/;

/** The keyword strongSwan would print for a cipher ("aes256gcm16"). */
export function cipherName(cipher: Cipher): string {
  return cipher.id === Encr.CHACHA20_POLY1305 ? "chacha20poly1305" : `aes${cipher.keyBits}gcm16`;
}

export function prfName(prf: number): string {
  return Object.entries(PRFS).find(([, id]) => id === prf)?.[0] ?? `prf${prf}`;
}

export function groupName(group: number): string {
  return group === KeGroup.CURVE25519 ? "curve25519" : Object.entries(GROUPS).find(([, id]) => id === group)?.[0] ?? `group${group}`;
}

function keywords(text: string, kind: string): string[] {
  if (typeof text !== "string" || text.trim() === "") throw new Error(`an ${kind} proposal must be a non-empty string like "chacha20poly1305-prfsha256-x25519"`);
  return text.trim().toLowerCase().split("-");
}

function unknownKeyword(word: string, text: string): Error {
  if (INTEGRITY.test(word)) return new Error(`"${word}" in "${text}": integrity algorithms are not supported (sluice speaks only the AEAD ciphers chacha20poly1305, aes128gcm16 and aes256gcm16)`);
  return new Error(`unknown algorithm "${word}" in "${text}" (known: ${[...Object.keys(CIPHERS), ...Object.keys(PRFS), ...Object.keys(GROUPS), "esn", "noesn"].join(", ")})`);
}

function pushOnce<T>(list: T[], value: T, same: (a: T, b: T) => boolean = (a, b) => a === b): void {
  if (!list.some((item) => same(item, value))) list.push(value);
}

const sameCipher = (a: Cipher, b: Cipher): boolean => a.id === b.id && a.keyBits === b.keyBits;

/**
 * An IKE proposal in strongSwan syntax. The PRF defaults to prfsha256 when
 * none is named (an AEAD proposal has no integrity algorithm to derive it from).
 * @example parseIkeProposal("aes256gcm16-prfsha384-ecp384")
 */
export function parseIkeProposal(text: string): IkeProposal {
  const proposal: IkeProposal = { text, ciphers: [], prfs: [], groups: [] };
  for (const word of keywords(text, "IKE")) {
    if (CIPHERS[word]) pushOnce(proposal.ciphers, CIPHERS[word], sameCipher);
    else if (PRFS[word] !== undefined) pushOnce(proposal.prfs, PRFS[word]);
    else if (GROUPS[word] !== undefined) pushOnce(proposal.groups, GROUPS[word]);
    else throw unknownKeyword(word, text);
  }
  if (proposal.ciphers.length === 0) throw new Error(`"${text}" names no encryption algorithm (chacha20poly1305, aes128gcm16, aes256gcm16)`);
  if (proposal.groups.length === 0) throw new Error(`"${text}" names no key exchange group (x25519, ecp256, ecp384, modp3072, modp2048)`);
  if (proposal.prfs.length === 0) proposal.prfs.push(Prf.HMAC_SHA2_256);
  return proposal;
}

/**
 * An ESP proposal in strongSwan syntax. Without esn/noesn it means noesn
 * (strongSwan's default). `dataPlaneCiphers` are the ciphers the engine can
 * run: naming another is an error here, so that a proposal is never accepted
 * that the data plane cannot carry.
 * @example parseEspProposal("chacha20poly1305-esn", [{ id: 28, keyBits: 256 }])
 */
export function parseEspProposal(text: string, dataPlaneCiphers: readonly Cipher[]): EspProposal {
  const proposal: EspProposal = { text, ciphers: [], esn: [], groups: [] };
  for (const word of keywords(text, "ESP")) {
    const cipher = CIPHERS[word];
    if (cipher) {
      if (!dataPlaneCiphers.some((c) => sameCipher(c, cipher))) {
        throw new Error(`"${word}" in "${text}": the data plane has no ${word} (it has ${dataPlaneCiphers.map(cipherName).join(", ")})`);
      }
      pushOnce(proposal.ciphers, cipher, sameCipher);
    } else if (word === "esn") pushOnce(proposal.esn, true);
    else if (word === "noesn") pushOnce(proposal.esn, false);
    else if (GROUPS[word] !== undefined) pushOnce(proposal.groups, GROUPS[word]);
    else throw unknownKeyword(word, text);
  }
  if (proposal.ciphers.length === 0) throw new Error(`"${text}" names no encryption algorithm (chacha20poly1305, aes128gcm16, aes256gcm16)`);
  if (proposal.esn.length === 0) proposal.esn.push(false);
  return proposal;
}

/** The defaults when a peer names none: every AEAD, PRF and group sluice has, strongest-first by common preference. */
export const DEFAULT_IKE_PROPOSALS = ["chacha20poly1305-aes256gcm16-aes128gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp3072-modp2048"];
export const DEFAULT_ESP_PROPOSALS = ["chacha20poly1305-aes256gcm16-aes128gcm16-esn-noesn"];

// ---------------------------------------------------------------- to the wire

function cipherTransform(cipher: Cipher): Transform {
  // RFC 7634 §2: no Key Length attribute for ChaCha20-Poly1305; RFC 5282 §8: required for AES-GCM.
  return cipher.id === Encr.CHACHA20_POLY1305 ? { type: TransformType.ENCR, id: cipher.id } : { type: TransformType.ENCR, id: cipher.id, keyLength: cipher.keyBits };
}

/** IKE proposals as SA payload proposals, numbered from 1. */
export function ikeProposalsToWire(proposals: readonly IkeProposal[]): Proposal[] {
  return proposals.map((p, i) => ({
    number: i + 1,
    protocol: Protocol.IKE,
    spi: new Uint8Array(0),
    transforms: [
      ...p.ciphers.map(cipherTransform),
      ...p.prfs.map((id) => ({ type: TransformType.PRF, id })),
      ...p.groups.map((id) => ({ type: TransformType.KE, id })),
    ],
  }));
}

/** ESP proposals with our inbound SPI; KE transforms only when `pfs` (CREATE_CHILD_SA with a KE payload). */
export function espProposalsToWire(proposals: readonly EspProposal[], spi: number, pfs: boolean): Proposal[] {
  const spiBytes = spiToBytes(spi);
  return proposals.map((p, i) => ({
    number: i + 1,
    protocol: Protocol.ESP,
    spi: spiBytes,
    transforms: [
      ...p.ciphers.map(cipherTransform),
      ...(pfs ? p.groups.map((id) => ({ type: TransformType.KE, id })) : []),
      ...p.esn.map((esn) => ({ type: TransformType.ESN, id: esn ? Esn.YES : Esn.NO })),
    ],
  }));
}

export function spiToBytes(spi: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, spi);
  return bytes;
}

export function spiFromBytes(bytes: Uint8Array): number {
  return bytes.length === 4 ? new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0) : -1;
}

// ---------------------------------------------------------------- choosing

function offered(theirs: Proposal, type: number): Transform[] {
  return theirs.transforms.filter((t) => t.type === type && !t.unknownAttribute);
}

function findCipher(ours: readonly Cipher[], theirs: Proposal): Cipher | undefined {
  const encr = offered(theirs, TransformType.ENCR);
  return ours.find((c) => encr.some((t) => t.id === c.id && (c.id === Encr.CHACHA20_POLY1305 ? t.keyLength === undefined || t.keyLength === 256 : t.keyLength === c.keyBits)));
}

function findId<T extends number>(ours: readonly T[], theirs: Proposal, type: number): T | undefined {
  const ids = offered(theirs, type);
  return ours.find((id) => ids.some((t) => t.id === id));
}

/**
 * Whether their proposal has only transform types we can answer with one
 * transform each (§3.3.6): an unknown type, or INTEG other than NONE next to
 * an AEAD, makes the whole proposal unacceptable.
 */
function onlyKnownTypes(theirs: Proposal, allowed: readonly number[]): boolean {
  return theirs.transforms.every((t) => allowed.includes(t.type) || (t.type === TransformType.INTEG && t.id === 0));
}

/** The responder's choice of an IKE proposal (§2.7), or null: NO_PROPOSAL_CHOSEN. */
export function chooseIke(ours: readonly IkeProposal[], theirs: readonly Proposal[], preferGroup?: number): { algorithms: IkeAlgorithms; number: number } | null {
  for (const mine of ours) {
    for (const p of theirs) {
      if (p.protocol !== Protocol.IKE || p.spi.length !== 0 && p.spi.length !== 8) continue;
      if (!onlyKnownTypes(p, [TransformType.ENCR, TransformType.PRF, TransformType.KE])) continue;
      const cipher = findCipher(mine.ciphers, p);
      const prf = findId(mine.prfs, p, TransformType.PRF);
      // The group of the KE payload received, when acceptable: it spares an INVALID_KE_PAYLOAD round trip.
      const group = preferGroup !== undefined && findId(mine.groups.filter((g) => g === preferGroup), p, TransformType.KE) !== undefined
        ? (preferGroup as GroupId) : findId(mine.groups, p, TransformType.KE);
      if (cipher && prf !== undefined && group !== undefined) return { algorithms: { cipher, prf, group }, number: p.number };
    }
  }
  return null;
}

/**
 * The responder's choice of an ESP proposal, or null. In IKE_AUTH (`pfs`
 * false) KE transforms are ignored (§1.2: the first child SA's keys come
 * from the IKE SA); with `pfs` the group must match `keGroup`, the group of
 * the KE payload received.
 */
export function chooseEsp(ours: readonly EspProposal[], theirs: readonly Proposal[], keGroup?: GroupId): { algorithms: EspAlgorithms; number: number; peerSpi: number } | null {
  for (const mine of ours) {
    for (const p of theirs) {
      if (p.protocol !== Protocol.ESP || p.spi.length !== 4) continue;
      if (!onlyKnownTypes(p, [TransformType.ENCR, TransformType.ESN, TransformType.KE])) continue;
      const cipher = findCipher(mine.ciphers, p);
      const esnOffered = offered(p, TransformType.ESN).map((t) => t.id);
      const esn = mine.esn.find((e) => (esnOffered.length === 0 ? !e : esnOffered.includes(e ? Esn.YES : Esn.NO)));
      if (!cipher || esn === undefined) continue;
      const algorithms: EspAlgorithms = { cipher, esn };
      if (keGroup !== undefined) {
        if (!mine.groups.includes(keGroup) || !offered(p, TransformType.KE).some((t) => t.id === keGroup)) continue;
        algorithms.group = keGroup;
      }
      return { algorithms, number: p.number, peerSpi: spiFromBytes(p.spi) };
    }
  }
  return null;
}

/** The one proposal a responder sends back: the chosen algorithms under their proposal number. */
export function chosenIkeToWire(algorithms: IkeAlgorithms, number: number, spi: Uint8Array = new Uint8Array(0)): Proposal {
  return {
    number,
    protocol: Protocol.IKE,
    spi,
    transforms: [cipherTransform(algorithms.cipher), { type: TransformType.PRF, id: algorithms.prf }, { type: TransformType.KE, id: algorithms.group }],
  };
}

export function chosenEspToWire(algorithms: EspAlgorithms, number: number, spi: number): Proposal {
  const transforms: Transform[] = [cipherTransform(algorithms.cipher)];
  if (algorithms.group !== undefined) transforms.push({ type: TransformType.KE, id: algorithms.group });
  transforms.push({ type: TransformType.ESN, id: algorithms.esn ? Esn.YES : Esn.NO });
  return { number, protocol: Protocol.ESP, spi: spiToBytes(spi), transforms };
}

/**
 * The initiator's reading of a responder's answer: exactly one proposal, one
 * transform per type, each one we offered (§2.7: anything else is a
 * protocol error and the SA must not be used).
 */
export function acceptedIke(offeredProposals: readonly IkeProposal[], answer: readonly Proposal[]): IkeAlgorithms | null {
  if (answer.length !== 1) return null;
  const p = answer[0]!;
  const mine = offeredProposals[p.number - 1];
  if (!mine || p.protocol !== Protocol.IKE) return null;
  const single = (type: number): Transform[] => p.transforms.filter((t) => t.type === type);
  if (single(TransformType.ENCR).length !== 1 || single(TransformType.PRF).length !== 1 || single(TransformType.KE).length !== 1) return null;
  if (!onlyKnownTypes(p, [TransformType.ENCR, TransformType.PRF, TransformType.KE])) return null;
  const chosen = chooseIke([mine], answer);
  return chosen?.algorithms ?? null;
}

export function acceptedEsp(offeredProposals: readonly EspProposal[], answer: readonly Proposal[], keGroup?: GroupId): { algorithms: EspAlgorithms; peerSpi: number } | null {
  if (answer.length !== 1) return null;
  const p = answer[0]!;
  const mine = offeredProposals[p.number - 1];
  if (!mine || p.protocol !== Protocol.ESP) return null;
  if (p.transforms.filter((t) => t.type === TransformType.ENCR).length !== 1 || p.transforms.filter((t) => t.type === TransformType.ESN).length > 1) return null;
  const chosen = chooseEsp([mine], answer, keGroup);
  return chosen ? { algorithms: chosen.algorithms, peerSpi: chosen.peerSpi } : null;
}

/** For logs and status: "chacha20poly1305/prfsha256/curve25519". */
export function describeIke(a: IkeAlgorithms): string {
  return `${cipherName(a.cipher)}/${prfName(a.prf)}/${groupName(a.group)}`;
}

export function describeEsp(a: EspAlgorithms): string {
  return `${cipherName(a.cipher)}${a.group !== undefined ? `/${groupName(a.group)}` : ""}/${a.esn ? "esn" : "noesn"}`;
}

const WIRE_NAMES: Record<number, Record<number, string>> = {
  [TransformType.ENCR]: { 3: "3DES", 12: "AES_CBC", 13: "AES_CTR", 18: "AES_GCM_8", 19: "AES_GCM_12", 20: "AES_GCM_16", 28: "CHACHA20_POLY1305" },
  [TransformType.PRF]: { 2: "PRF_HMAC_SHA1", 4: "PRF_AES128_XCBC", 5: "PRF_HMAC_SHA2_256", 6: "PRF_HMAC_SHA2_384", 7: "PRF_HMAC_SHA2_512" },
  [TransformType.INTEG]: { 0: "NONE", 2: "HMAC_SHA1_96", 5: "AES_XCBC_96", 12: "HMAC_SHA2_256_128", 13: "HMAC_SHA2_384_192", 14: "HMAC_SHA2_512_256" },
  [TransformType.KE]: { 0: "NONE", 2: "MODP_1024", 5: "MODP_1536", 14: "MODP_2048", 15: "MODP_3072", 16: "MODP_4096", 19: "ECP_256", 20: "ECP_384", 21: "ECP_521", 31: "CURVE_25519", 32: "CURVE_448" },
  [TransformType.ESN]: { 0: "NO_EXT_SEQ", 1: "EXT_SEQ" },
};

/** What a peer offered, as strongSwan logs it ("IKE:CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519, …"), for refusals. */
export function describeOffered(proposals: readonly Proposal[]): string {
  if (proposals.length === 0) return "(none)";
  return proposals.map((p) => {
    const protocol = p.protocol === Protocol.IKE ? "IKE" : p.protocol === Protocol.ESP ? "ESP" : `protocol${p.protocol}`;
    const names = p.transforms.map((t) => {
      const name = WIRE_NAMES[t.type]?.[t.id] ?? `${t.type}:${t.id}`;
      return t.keyLength !== undefined ? `${name}_${t.keyLength}` : name;
    });
    return `${protocol}:${names.join("/")}`;
  }).join(", ");
}
