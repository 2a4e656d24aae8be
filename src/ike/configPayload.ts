/**
 * The Configuration payload (RFC 7296 §3.15) as a road warrior and its
 * gateway use it: the client asks for a virtual IP (and DNS servers) in
 * IKE_AUTH with CFG_REQUEST, the gateway answers with CFG_REPLY.
 *
 * An empty INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS attribute asks for
 * any address (§3.15.3); INTERNAL_IP6_ADDRESS carries 16 bytes and a prefix
 * length (§3.15.1). Attributes sluice does not know are skipped, as the RFC
 * asks of a responder.
 */
import { Payload } from "./constants.js";
import type { ConfigAttribute, CpPayload } from "./codec/payloads.js";
import { addressBytes } from "../endpoint/prefix.js";
import { formatAddress } from "./trafficSelectors.js";

export const CfgType = { REQUEST: 1, REPLY: 2, SET: 3, ACK: 4 } as const;

export const CfgAttribute = {
  INTERNAL_IP4_ADDRESS: 1,
  INTERNAL_IP4_NETMASK: 2,
  INTERNAL_IP4_DNS: 3,
  INTERNAL_IP6_ADDRESS: 8,
  INTERNAL_IP6_DNS: 10,
} as const;

/** What a client asks for. */
export interface VipRequest {
  ipv4: boolean;
  ipv6: boolean;
  dns: boolean;
}

/** What a gateway gives. */
export interface VipReply {
  addresses: string[];
  dns: string[];
}

const empty = new Uint8Array(0);

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

/** A client's CFG_REQUEST for addresses of the given families (and DNS servers of them). */
export function vipRequestPayload(families: readonly (4 | 6)[]): CpPayload {
  const attributes: ConfigAttribute[] = [];
  if (families.includes(4)) attributes.push({ type: CfgAttribute.INTERNAL_IP4_ADDRESS, value: empty }, { type: CfgAttribute.INTERNAL_IP4_DNS, value: empty });
  if (families.includes(6)) attributes.push({ type: CfgAttribute.INTERNAL_IP6_ADDRESS, value: empty }, { type: CfgAttribute.INTERNAL_IP6_DNS, value: empty });
  return { type: Payload.CP, cfgType: CfgType.REQUEST, attributes };
}

/** What a CFG_REQUEST asks for (undefined: not a request). */
export function readVipRequest(cp: CpPayload): VipRequest | undefined {
  if (cp.cfgType !== CfgType.REQUEST) return undefined;
  const has = (type: number): boolean => cp.attributes.some((a) => a.type === type);
  return {
    ipv4: has(CfgAttribute.INTERNAL_IP4_ADDRESS),
    ipv6: has(CfgAttribute.INTERNAL_IP6_ADDRESS),
    dns: has(CfgAttribute.INTERNAL_IP4_DNS) || has(CfgAttribute.INTERNAL_IP6_DNS),
  };
}

/** A gateway's CFG_REPLY with the addresses given (IPv6 as /128) and its DNS servers. */
export function vipReplyPayload(reply: VipReply): CpPayload {
  const attributes: ConfigAttribute[] = [];
  for (const address of [...reply.addresses, ...reply.dns.map((d) => `dns:${d}`)]) {
    const dns = address.startsWith("dns:");
    const text = dns ? address.slice(4) : address;
    if (text.includes(":")) {
      const bytes = addressBytes(text, 6);
      attributes.push(dns ? { type: CfgAttribute.INTERNAL_IP6_DNS, value: bytes } : { type: CfgAttribute.INTERNAL_IP6_ADDRESS, value: Uint8Array.of(...bytes, 128) });
    } else {
      attributes.push({ type: dns ? CfgAttribute.INTERNAL_IP4_DNS : CfgAttribute.INTERNAL_IP4_ADDRESS, value: addressBytes(text, 4) });
    }
  }
  return { type: Payload.CP, cfgType: CfgType.REPLY, attributes };
}

/** The addresses and DNS servers of a CFG_REPLY (malformed attributes skipped). */
export function readVipReply(cp: CpPayload): VipReply | undefined {
  if (cp.cfgType !== CfgType.REPLY) return undefined;
  const reply: VipReply = { addresses: [], dns: [] };
  for (const a of cp.attributes) {
    if (a.type === CfgAttribute.INTERNAL_IP4_ADDRESS && a.value.length === 4) reply.addresses.push(formatAddress(4, toBigInt(a.value)));
    else if (a.type === CfgAttribute.INTERNAL_IP6_ADDRESS && a.value.length === 17) reply.addresses.push(formatAddress(6, toBigInt(a.value.subarray(0, 16))));
    else if (a.type === CfgAttribute.INTERNAL_IP4_DNS && a.value.length === 4) reply.dns.push(formatAddress(4, toBigInt(a.value)));
    else if (a.type === CfgAttribute.INTERNAL_IP6_DNS && a.value.length === 16) reply.dns.push(formatAddress(6, toBigInt(a.value)));
  }
  return reply;
}
